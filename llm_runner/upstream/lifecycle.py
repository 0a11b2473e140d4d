"""Model lifecycle per upstream × model: wait for each upstream, check, pull and warm what it
serves, keep probing it, and answer readiness questions honestly.

A model is ready when at least one upstream has it warm. When an upstream goes away only its own
states change (the others keep serving); when it returns it is checked and warmed again, alone.
A request waits for a model only while something makes progress toward serving it (a pull whose
bytes move, a warm-up, the service's first start within its grace period); otherwise it is told
at once which upstreams are down and since when.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from llm_runner.core.errors import NotReady, UpstreamError
from llm_runner.upstream.base import ModelInfo, Upstream
from llm_runner.upstream.canary import CanaryPolicy, check_idle
from llm_runner.upstream.pull import Pulls
from llm_runner.upstream.residency import Residency, ResidencyPolicy, nap
from llm_runner.upstream.states import (
    CANARY,
    CHECKING,
    ERROR,
    FAILED,
    LOADING,
    MISSING,
    OK,
    READY,
    WARMING,
    ModelState,
    UpstreamHealth,
)

log = logging.getLogger("llm_runner.lifecycle")
_PERMANENT_PULL_ERRORS = ("file does not exist", "not found", "invalid model name", "invalid reference")
# (model_id, what the upstream reports) → None if it is the model paid for, else why not
IdentityCheck = Callable[[str, ModelInfo], str | None]


class Lifecycle:
    def __init__(
        self,
        upstreams: Sequence[Upstream],
        models: dict[str, str],
        *,
        pull: bool,
        warm: bool,
        think_off: bool,
        interval_s: float,
        startup_grace_s: float,
        identity: IdentityCheck | None = None,
        residency: ResidencyPolicy | None = None,
        canary: CanaryPolicy | None = None,
    ) -> None:
        self.upstreams = list(upstreams)
        self.tags = dict(models)
        self.health: dict[str, UpstreamHealth] = {}
        for upstream in self.upstreams:
            health = UpstreamHealth(upstream.name, upstream.slots)
            health.models = {m: ModelState(m, t, upstream.name) for m, t in models.items() if upstream.serves(m)}
            self.health[upstream.name] = health
        self.pull_enabled, self.warm_enabled, self.think_off_wanted = pull, warm, think_off
        self.interval_s, self.identity = interval_s, identity
        self.grace_until = time.monotonic() + startup_grace_s
        self.ever_ready: set[str] = set()
        self.flips: dict[str, int] = dict.fromkeys(models, 0)
        self._ready: dict[str, bool] = dict.fromkeys(models, False)
        self._changed = asyncio.Event()
        self._wakes = {u.name: asyncio.Event() for u in self.upstreams}
        self._pulls = Pulls(self._notify)
        self._tasks: list[asyncio.Task[None]] = []
        self.listeners: list[Callable[[], None]] = []  # told after every state change
        self.residency = Residency(
            self.upstreams, self.health, residency or ResidencyPolicy(), notify=self._notify, think_off=self.think_off
        )
        self.canary = canary or CanaryPolicy(idle_s=0)

    # -- what the routes, the router and the loop ask -------------------------------------------

    def states(self, model_id: str) -> list[ModelState]:
        return [h.models[model_id] for h in self.health.values() if model_id in h.models]

    def is_ready(self, model_id: str) -> bool:
        return self._ready[model_id]

    def ready_on(self, upstream: str, model_id: str) -> bool:
        state = self.health[upstream].models.get(model_id)
        return state is not None and state.status == OK

    def status(self, model_id: str | None = None) -> str:
        """Livepeer's view: OK when every (or this) model is ready somewhere, ERROR when one can
        never be served without the operator or every upstream of it is unreachable past the
        start's grace (Docker's HEALTHCHECK must not count that healthy), else LOADING."""
        ids = [model_id] if model_id else list(self.tags)
        if all(self._ready[m] for m in ids):
            return OK
        if any(
            all(s.status == ERROR for s in self.states(m)) or self._unreachable(m) for m in ids if not self._ready[m]
        ):
            return ERROR
        return LOADING

    def _unreachable(self, model_id: str) -> bool:
        if model_id not in self.ever_ready and time.monotonic() < self.grace_until:
            return False  # the service's first start: upstreams may still be coming up
        return all(self.health[s.upstream].down_since is not None for s in self.states(model_id))

    def why_not(self, model_id: str) -> str:
        """Why the model cannot be served now (for 503 bodies and error messages)."""
        return "; ".join(f"{s.upstream}: {s.detail}" for s in self.states(model_id)) or "no upstream serves it"

    def unservable(self, model_id: str) -> str | None:
        """None while the model is ready or something makes progress toward it; else the reason
        to refuse at once."""
        if self._ready[model_id]:
            return None
        states = self.states(model_id)
        if all(s.status == ERROR for s in states):
            return f"model {model_id} cannot be served: {self.why_not(model_id)}"
        if any(s.progressing for s in states):
            return None
        if model_id not in self.ever_ready and time.monotonic() < self.grace_until:
            return None  # the service's first start: upstreams may still be coming up
        down = [h.describe_down() for h in self.health.values() if model_id in h.models and h.down_since]
        if down:
            return f"no upstream can serve {model_id}: " + "; ".join(down)
        return f"model {model_id} is not ready: {self.why_not(model_id)}"

    async def wait_ready(self, model_id: str, timeout_s: float) -> None:
        """Return once the model is ready; wait (bounded) only while that is making progress."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._ready[model_id]:
            reason = self.unservable(model_id)
            if reason is not None:
                raise NotReady(reason)
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                raise NotReady(
                    f"model {model_id} is still loading ({self.why_not(model_id)}) after {timeout_s:g}s; retry shortly"
                ) from None

    def think_off(self, model_id: str) -> bool:
        """Send `think: false` only to models that can think (others answer 400 to it)."""
        return self.think_off_wanted and any("thinking" in s.capabilities for s in self.states(model_id))

    def in_flight(self, model_id: str) -> int:
        return sum(s.in_flight for s in self.states(model_id))

    def capacity(self, model_id: str | None = None) -> int:
        """Slots on upstreams where the model (any model) is ready now."""
        return sum(
            h.slots
            for h in self.health.values()
            if any(s.status == OK for m, s in h.models.items() if model_id is None or m == model_id)
        )

    def report_failure(self, upstream: str, model_id: str, error: UpstreamError) -> None:
        """A generation failed: believe an unreachable upstream or a vanished model now, and probe
        at once after anything else (a cut stream may be a dying server) rather than at the next tick."""
        health = self.health[upstream]
        if error.kind == "unreachable":
            health.mark_down(error.msg)
            self._notify()
        elif error.kind == "not_found" and model_id in health.models:
            health.models[model_id].set(LOADING, CHECKING, "model vanished from the upstream; checking again")
            self._notify()
        self._wakes[upstream].set()

    # -- the supervisors, one per upstream ------------------------------------------------------

    def start(self) -> None:
        for upstream in self.upstreams:
            upstream.watch(lambda alive, u=upstream: self._on_process(u, alive))
            self._tasks.append(asyncio.create_task(self._supervise(upstream), name=f"lifecycle {upstream.name}"))
            self._tasks.append(asyncio.create_task(self.residency.run(upstream), name=f"residency {upstream.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_process(self, upstream: Upstream, alive: bool) -> None:
        if not alive:
            self.health[upstream.name].mark_down("its process exited")
            self._notify()
        self._wakes[upstream.name].set()

    def _notify(self) -> None:
        for model_id in self.tags:
            ready = any(s.status == OK for s in self.states(model_id))
            if ready != self._ready[model_id]:
                self._ready[model_id] = ready
                self.flips[model_id] += 1
                if ready:
                    self.ever_ready.add(model_id)
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self.listeners:
            listener()

    async def _supervise(self, upstream: Upstream) -> None:
        health = self.health[upstream.name]
        retry_s = 0.1  # while down: probe soon, then back off to the interval
        while True:
            try:
                version = await upstream.version()
            except UpstreamError as exc:
                health.mark_down(exc.msg)
                self._notify()
                await self._sleep(upstream.name, retry_s)
                retry_s = min(retry_s * 2, self.interval_s)
                continue
            retry_s = 0.1
            if health.down_since is not None or health.version is None:
                log.info("upstream %s reachable (version %s)", upstream.name, version)
            health.version, health.down_since = version, None
            pending = False
            serving = any(s.status == OK for s in health.models.values())
            for state in health.models.values():
                if state.status == ERROR and state.phase == MISSING and not serving:
                    await self._recheck_missing(upstream, state)
                if state.status == LOADING and state.phase != CANARY:
                    pending |= not await self._prepare(upstream, state)
                    self._notify()
            try:
                await self.residency.observe(upstream)
            except UpstreamError as exc:
                log.debug("%s: reading what is loaded failed: %s", upstream.name, exc.msg)
            await check_idle(upstream, health, self.canary, self.think_off, self._notify)
            await self._sleep(upstream.name, self.interval_s * (2 if pending else 1))

    async def _sleep(self, name: str, seconds: float) -> None:
        await nap(self._wakes[name], seconds)

    async def _recheck_missing(self, upstream: Upstream, state: ModelState) -> None:
        """A model the upstream could not get (an engine not started with it) is asked for again,
        quietly, on an upstream that serves nothing else (an engine may interrupt generations to
        list its models): restarted with it, it is checked and warmed. An upstream that went down
        meanwhile is re-checked on its return (UpstreamHealth.mark_down)."""
        try:
            if await upstream.show(state.tag) is None:
                return
        except UpstreamError:
            return
        state.set(LOADING, CHECKING, f"{upstream.name} now has {state.tag}")

    async def _prepare(self, upstream: Upstream, state: ModelState) -> bool:
        """Check, pull and warm one model on one upstream. False means: try again later."""
        try:
            state.set(LOADING, CHECKING, f"checking {state.tag}")
            self._notify()
            info = await upstream.show(state.tag)
            if info is None:
                if not self.pull_enabled:
                    state.set(
                        LOADING, MISSING, f"{state.tag} is not there and pulling is off: run `ollama pull {state.tag}`"
                    )
                    return False
                info = await self._pulls.pull(upstream, state)
                if info is None:
                    state.set(LOADING, MISSING, f"{state.tag} still missing after pull")
                    return False
            state.capabilities, state.quantization = info.capabilities, info.quantization
            if info.capabilities and "completion" not in info.capabilities:
                caps = ", ".join(info.capabilities)
                state.set(ERROR, FAILED, f"{state.tag} cannot generate text (capabilities: {caps})")
                return True
            mismatch = self.identity(state.model_id, info) if self.identity else None
            if mismatch:
                state.set(ERROR, FAILED, mismatch)
                return True
            ready = f"ready ({state.tag}{', ' + info.quantization if info.quantization else ''})"
            if self.warm_enabled and self.residency.should_warm(upstream.name, state.model_id):
                state.set(LOADING, WARMING, f"loading {state.tag} into memory")
                self._notify()
                started = time.monotonic()
                await upstream.warm(state.tag, self.think_off(state.model_id))
                state.load_s = time.monotonic() - started
                ready += f" in {state.load_s:.1f} s"
                await self.residency.observe(upstream)
                problem = self.residency.offload_problem(upstream.name, state)
                if problem:
                    state.set(ERROR, FAILED, problem)
                    await upstream.unload(state.tag)
                    state.resident = False
                    return True
            elif self.health[upstream.name].swapping:
                ready += ": not loaded, loads when asked for (the served models do not fit together)"
            state.set(OK, READY, ready)
            return True
        except UpstreamError as exc:
            if exc.kind == "no_such_model":  # the message says what to install; asked again later
                state.set(ERROR, MISSING, exc.msg)
                return True
            if exc.kind == "pull_failed" and any(p in exc.msg.lower() for p in _PERMANENT_PULL_ERRORS):
                state.set(ERROR, FAILED, f"{exc.msg}; check the tag in the model map")
                return True
            state.set(LOADING, FAILED, exc.msg)
            if exc.kind == "unreachable":
                self.health[upstream.name].mark_down(exc.msg)
            return False
        except Exception as exc:  # an answer we did not expect: keep the supervisor alive, retry later
            log.exception("%s on %s: checking %s failed", state.model_id, upstream.name, state.tag)
            state.set(LOADING, FAILED, f"checking {state.tag} failed: {type(exc).__name__}: {exc}")
            return False
