"""A GPU with a VRAM budget for the Ollama stand-in, scheduled as Ollama's `server/sched.go` does
(ollama @fb30760, 2026-08-21), so a runner serving several models on one small card meets what it
would meet on a real one.

What is kept from sched.go:
- `getRunner`: a request for a loaded model takes it at once (`useLoadedRunner`: one more
  reference, the request's keep_alive replaces the model's) without queueing; any other request
  goes to the one pending queue, handled one at a time (`processPending` blocks the others until
  it runs).
- `processPending`: a model is loaded when nothing is loaded (partly offloaded to the CPU when it
  does not fit: `size_vram < size`), or when it fits beside the loaded ones; otherwise, and when
  OLLAMA_MAX_LOADED_MODELS is reached, `findRunnerToUnload` picks a victim (the first idle one by
  keep_alive then name, else the first), its keep_alive is set to 0, and the pending request waits
  for it to be unloaded. A victim with requests in flight is unloaded when its last one ends, unless
  a new request for it has set its keep_alive again (then the pending one waits on, as in Ollama).
- `processCompleted`: when a model's last request ends it is unloaded at once for keep_alive 0,
  after keep_alive seconds for a positive one, never for a negative one.
- Loads take `load_seconds`; a partly offloaded model generates `offload_slowdown` times slower.
- `wedged`: the GPU stops answering (vLLM #36960's case) while the process lives: generations and
  loads hang, /api/version, /api/ps and /api/show still answer.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

MB = 1 << 20
DEFAULT_MODEL_MB = 5_600  # an 8B Q4_K_M at 4k context, as Ollama's /api/ps reports it
DEFAULT_MODELS_PER_GPU = 3
DEFAULT_KEEP_ALIVE_S = 300.0  # OLLAMA_KEEP_ALIVE's default  # Ollama's default OLLAMA_MAX_LOADED_MODELS per GPU


@dataclass(eq=False)
class Loaded:
    tag: str
    size_mb: int
    vram_mb: int  # below size_mb: partly offloaded to the CPU
    keep_alive_s: float
    refs: int = 0
    expires_at: float | None = None  # wall clock; None: never (or in use)
    timer: asyncio.TimerHandle | None = None

    @property
    def offloaded(self) -> bool:
        return self.vram_mb < self.size_mb


@dataclass
class GPUStats:
    loads: dict[str, int] = field(default_factory=dict)
    unloads: dict[str, int] = field(default_factory=dict)
    evictions: int = 0  # unloads forced to make room for another model
    load_waits: list[float] = field(default_factory=list)  # seconds each queued request waited


class GPU:
    """Off (vram_mb 0) unless scripted: then every known model counts as loaded, as before."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner  # the stand-in: its script is replaced on /_reset
        self.loaded: dict[str, Loaded] = {}
        self.stats = GPUStats()
        self._pending: asyncio.Queue[tuple[str, float | None, asyncio.Future[Loaded]]] = asyncio.Queue()
        self._unloaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def script(self) -> Any:
        return self.owner.script

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    @property
    def on(self) -> bool:
        return bool(self.script.vram_mb)

    def size_mb(self, tag: str) -> int:
        return int(self.script.model_vram_mb.get(tag, DEFAULT_MODEL_MB))

    async def acquire(self, tag: str, keep_alive_s: float | None) -> Loaded:
        """A reference to the loaded model, loading it (and evicting others) first if needed."""
        while self.script.wedged:  # noqa: ASYNC110 (a knob set over HTTP, as a plain field)
            await asyncio.sleep(0.05)
        if not self.on:  # no budget: every model counts as loaded
            return Loaded(tag, 0, 0, -1, refs=1)
        runner = self.loaded.get(tag)
        if runner is not None:
            self._use(runner, keep_alive_s)
            return runner
        if self._task is None:
            self._task = asyncio.create_task(self._process_pending())
        future: asyncio.Future[Loaded] = asyncio.get_running_loop().create_future()
        queued = time.monotonic()
        self._pending.put_nowait((tag, keep_alive_s, future))
        runner = await future
        self.stats.load_waits.append(time.monotonic() - queued)
        return runner

    def release(self, runner: Loaded) -> None:
        """A request ended (processCompleted)."""
        runner.refs -= 1
        if runner.refs > 0 or self.loaded.get(runner.tag) is not runner:
            return
        if runner.keep_alive_s == 0:
            self._unload(runner)
        elif runner.keep_alive_s > 0:
            runner.expires_at = time.time() + runner.keep_alive_s
            runner.timer = asyncio.get_running_loop().call_later(runner.keep_alive_s, self._expire, runner)

    def unload_now(self, tag: str) -> None:
        """An empty chat with keep_alive 0 (`ollama stop`): unload once idle."""
        runner = self.loaded.get(tag)
        if runner is not None:
            runner.keep_alive_s = 0
            if runner.refs == 0:
                self._unload(runner)

    def ps(self) -> list[dict[str, Any]]:
        return [
            {
                "name": r.tag,
                "model": r.tag,
                "size": r.size_mb * MB,
                "size_vram": r.vram_mb * MB,
                "expires_at": _iso(r.expires_at),
            }
            for r in self.loaded.values()
        ]

    def token_rate(self, tag: str, rate: float) -> float:
        runner = self.loaded.get(tag)
        if runner is not None and runner.offloaded and rate:
            return rate / self.script.offload_slowdown
        return rate

    # -- the scheduler ---------------------------------------------------------------------------

    async def _process_pending(self) -> None:
        while True:
            tag, keep_alive_s, future = await self._pending.get()
            if future.done():  # the client went away while queued
                continue
            while True:
                runner = self.loaded.get(tag)
                if runner is not None:
                    self._use(runner, keep_alive_s)
                    future.set_result(runner)
                    break
                max_loaded = self.script.max_loaded or DEFAULT_MODELS_PER_GPU
                if self.loaded and (len(self.loaded) >= max_loaded or not self._fits(tag)):
                    victim = self._victim()
                    victim.keep_alive_s = 0
                    self._stop_timer(victim)
                    self._unloaded.clear()
                    self.stats.evictions += 1
                    if victim.refs == 0:
                        self._unload(victim)
                    await self._unloaded.wait()
                    continue
                runner = await self._load(tag, keep_alive_s)
                if not future.done():
                    self._use(runner, keep_alive_s)
                    future.set_result(runner)
                break

    def _fits(self, tag: str) -> bool:
        used = sum(r.vram_mb for r in self.loaded.values())
        return used + self.size_mb(tag) <= self.script.vram_mb

    def _victim(self) -> Loaded:
        ordered = sorted(self.loaded.values(), key=lambda r: (_duration(r.keep_alive_s), r.tag))
        return next((r for r in ordered if r.refs == 0), ordered[0])

    async def _load(self, tag: str, keep_alive_s: float | None) -> Loaded:
        await asyncio.sleep(self.script.load_seconds)
        size = self.size_mb(tag)
        free = self.script.vram_mb - sum(r.vram_mb for r in self.loaded.values())
        runner = Loaded(
            tag, size, min(size, max(free, 0)), DEFAULT_KEEP_ALIVE_S if keep_alive_s is None else keep_alive_s
        )
        self.loaded[tag] = runner
        self.stats.loads[tag] = self.stats.loads.get(tag, 0) + 1
        return runner

    def _use(self, runner: Loaded, keep_alive_s: float | None) -> None:
        """useLoadedRunner: a request's own keep_alive replaces the model's, even a victim's 0."""
        runner.refs += 1
        self._stop_timer(runner)
        if keep_alive_s is not None:
            runner.keep_alive_s = keep_alive_s

    def _expire(self, runner: Loaded) -> None:
        runner.timer = None
        if runner.refs == 0 and self.loaded.get(runner.tag) is runner:
            self._unload(runner)

    def _unload(self, runner: Loaded) -> None:
        self._stop_timer(runner)
        del self.loaded[runner.tag]
        self.stats.unloads[runner.tag] = self.stats.unloads.get(runner.tag, 0) + 1
        self._unloaded.set()

    @staticmethod
    def _stop_timer(runner: Loaded) -> None:
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        runner.expires_at = None


def keep_alive_seconds(value: Any) -> float | None:
    """Ollama's keep_alive: a number of seconds or a Go duration ("1h30m", "-1s"); negative is for
    ever; None when absent (a load then keeps OLLAMA_KEEP_ALIVE's 5m, a loaded model its own)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    if not parts:
        return float(text)
    return sign * sum(float(number) * units[unit] for number, unit in parts)


def _duration(keep_alive_s: float) -> float:
    return float("inf") if keep_alive_s < 0 else keep_alive_s


def _iso(at: float | None) -> str:
    if at is None:
        return "2318-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
