"""Model lifecycle: wait for Ollama, pull what is missing, warm it, and keep /health honest.

State per model: LOADING (Ollama unreachable, pulling, warming, or a transient failure being
retried), OK (pulled and warm), ERROR (cannot heal without the operator: the tag does not exist,
the model cannot chat). A supervisor keeps checking Ollama; when it goes away every model goes
back to LOADING, and when it returns the models are checked and warmed again, with no restart.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from llm_runner.core.errors import NotReady, UpstreamError
from llm_runner.upstream.ollama import OllamaBackend

log = logging.getLogger("llm_runner.upstream.lifecycle")

LOADING, OK, ERROR = "LOADING", "OK", "ERROR"
_PERMANENT_PULL_ERRORS = ("file does not exist", "not found", "invalid model name", "invalid reference")


@dataclass
class ModelState:
    model_id: str
    tag: str
    status: str = LOADING
    detail: str = "waiting for Ollama"
    capabilities: tuple[str, ...] = ()
    quantization: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, status: str, detail: str) -> None:
        if (status, detail) != (self.status, self.detail):
            level = logging.ERROR if status == ERROR else logging.INFO
            log.log(level, "%s (%s): %s %s", self.model_id, self.tag, status, detail)
        self.status, self.detail = status, detail
        if status == OK:
            self.ready.set()
        else:
            self.ready.clear()


class ModelLifecycle:
    """Owns the per-model states and the background task that drives them."""

    def __init__(
        self,
        backend: OllamaBackend,
        models: dict[str, str],
        *,
        pull: bool,
        warm: bool,
        think_off: bool,
        interval_s: float,
    ) -> None:
        self.backend = backend
        self.states = {model_id: ModelState(model_id, tag) for model_id, tag in models.items()}
        self.pull_enabled, self.warm_enabled, self.think_off_wanted = pull, warm, think_off
        self.interval_s = interval_s
        self.ollama_version: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what routes ask -------------------------------------------------------------------------

    def status(self, model_id: str | None = None) -> str:
        """One model's status, or the aggregate: ERROR beats LOADING beats OK."""
        states = [self.states[model_id]] if model_id else list(self.states.values())
        if any(s.status == ERROR for s in states):
            return ERROR
        return OK if all(s.status == OK for s in states) else LOADING

    def think_off(self, model_id: str) -> bool:
        """Send `think: false` only to models that can think (others answer 400 to it)."""
        return self.think_off_wanted and "thinking" in self.states[model_id].capabilities

    def is_ready(self, model_id: str) -> bool:
        return self.states[model_id].status == OK

    async def wait_ready(self, model_id: str, timeout_s: float) -> None:
        state = self.states[model_id]
        if state.status == OK:
            return
        if state.status == ERROR:
            raise NotReady(f"model {model_id} cannot be served: {state.detail}")
        try:
            async with asyncio.timeout(timeout_s):
                await state.ready.wait()
        except TimeoutError:
            raise NotReady(
                f"model {model_id} is still loading ({state.detail}) after {timeout_s:g}s; retry shortly"
            ) from None

    def report_missing(self, model_id: str) -> None:
        """A generation got 404: Ollama lost the model (deleted, or a new empty volume)."""
        self.states[model_id].set(LOADING, "model vanished from Ollama; checking again")
        self._wake.set()

    # -- the supervisor --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="model-lifecycle")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = self.interval_s
        while True:
            try:
                version = await self.backend.version()
            except UpstreamError as exc:
                if self.ollama_version is not None:
                    log.warning("Ollama went away: %s", exc.msg)
                self.ollama_version = None
                for state in self.states.values():
                    if state.status != ERROR:
                        state.set(LOADING, exc.msg)
                await self._sleep(self.interval_s)
                continue
            if self.ollama_version is None:
                log.info("Ollama %s reachable at %s", version, self.backend.base_url)
            self.ollama_version = version
            retry = False
            for state in self.states.values():
                if state.status == LOADING:
                    retry |= not await self._prepare(state)
            if retry:
                await self._sleep(backoff)
                backoff = min(backoff * 2, 60.0)
            else:
                backoff = self.interval_s
                await self._sleep(self.interval_s)

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _prepare(self, state: ModelState) -> bool:
        """Check, pull and warm one model. False means: try again later."""
        try:
            info = await self.backend.show(state.tag)
            if info is None:
                if not self.pull_enabled:
                    state.set(
                        LOADING,
                        f"{state.tag} is not in Ollama and pulling is off: run `ollama pull {state.tag}`",
                    )
                    return False
                await self._pull(state)
                info = await self.backend.show(state.tag)
                if info is None:
                    state.set(LOADING, f"{state.tag} still missing after pull")
                    return False
            state.capabilities, state.quantization = info.capabilities, info.quantization
            if info.capabilities and "completion" not in info.capabilities:
                state.set(ERROR, f"{state.tag} cannot generate text (capabilities: {', '.join(info.capabilities)})")
                return True
            if self.warm_enabled:
                state.set(LOADING, f"loading {state.tag} into memory")
                await self.backend.warm(state.tag, self.think_off(state.model_id))
            state.set(OK, f"ready ({state.tag}{', ' + info.quantization if info.quantization else ''})")
            return True
        except UpstreamError as exc:
            if exc.kind == "pull_failed" and any(p in exc.msg.lower() for p in _PERMANENT_PULL_ERRORS):
                state.set(ERROR, f"{exc.msg}; check the tag in the model map")
                return True
            state.set(LOADING, exc.msg)
            return False

    async def _pull(self, state: ModelState) -> None:
        state.set(LOADING, f"pulling {state.tag}")
        layer, last_logged = None, -10
        async for progress in self.backend.pull(state.tag):
            total, done = progress.total or 0, progress.completed or 0
            if progress.digest != layer:  # each layer counts from 0 % again
                layer, last_logged = progress.digest, -10
            if total:
                percent = int(done * 100 / total)
                state.detail = f"pulling {state.tag}: {progress.status} {percent}%"
                if percent >= last_logged + 10:  # a log line every 10 %
                    last_logged = percent - percent % 10
                    log.info("%s: %s", state.model_id, state.detail)
            else:
                state.detail = f"pulling {state.tag}: {progress.status}"
