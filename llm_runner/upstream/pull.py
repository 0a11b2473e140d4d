"""Pulling a model an Ollama lacks: once per tag at a time (upstreams sharing a models volume then
find it present), with its progress in the state's detail and in the log (bytes and rate at most
every few seconds and at each layer's end, then one line when done)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from llm_runner.upstream.base import ModelInfo, Upstream
from llm_runner.upstream.states import LOADING, PULLING, ModelState

log = logging.getLogger("llm_runner.lifecycle")
PULL_LOG_EVERY_S = 5.0  # a pull's progress line at most this often (and at each layer's end)


class Pulls:
    def __init__(self, notify: Callable[[], None]) -> None:
        self.notify = notify  # tell the lifecycle's listeners a state changed
        self._locks: dict[str, asyncio.Lock] = {}

    async def pull(self, upstream: Upstream, state: ModelState) -> ModelInfo | None:
        """Pull once per tag at a time: upstreams sharing a models volume then find it present."""
        lock = self._locks.setdefault(state.tag, asyncio.Lock())
        async with lock:
            info = await upstream.show(state.tag)
            if info is not None:
                return info
            state.set(LOADING, PULLING, f"pulling {state.tag}")
            self.notify()
            began = layer_began = logged_at = time.monotonic()
            layer = ""
            async for progress in upstream.pull(state.tag):
                now = state.progress_at = time.monotonic()
                if progress.digest != layer:  # each layer counts from 0 again
                    layer, layer_began = progress.digest, now
                if progress.total:
                    percent = int(progress.completed * 100 / progress.total)
                    state.detail = f"pulling {state.tag}: {progress.status} {percent}%"
                    if now - logged_at >= PULL_LOG_EVERY_S or progress.completed == progress.total:
                        logged_at = now
                        rate = progress.completed / max(now - layer_began, 1e-3)
                        log.info(
                            "%s on %s: %s (%s of %s, %s/s)",
                            state.model_id,
                            upstream.name,
                            state.detail,
                            size_text(progress.completed),
                            size_text(progress.total),
                            size_text(rate),
                        )
                else:
                    state.detail = f"pulling {state.tag}: {progress.status}"
            log.info(
                "%s on %s: pulled %s in %.1f s", state.model_id, upstream.name, state.tag, time.monotonic() - began
            )
            return await upstream.show(state.tag)


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
