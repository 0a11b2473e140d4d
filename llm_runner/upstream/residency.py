"""Which served models are in an upstream's memory, and the runner (not Ollama) deciding to swap them.

Ollama swaps behind its clients' backs (server/sched.go): when VRAM or OLLAMA_MAX_LOADED_MODELS is
short it unloads a loaded model whatever its keep_alive, waits for that model's requests to end, and
the request that wanted the other model waits through the drain and the load. A request for a
loaded model skips that queue, so under steady demand the other model can wait for ever. A runner
that lets it happen reports ready a model that is not in memory, and the next paid request for it
waits through a swap nobody chose.

So where the served models do not all fit an upstream's VRAM (known from the operator, NVML, or
learned when Ollama unloads one of them to load another), the runner keeps the residency itself:
- the router gives slots only to models that are resident and not being drained;
- a model that is not resident is loaded on demand: once nobody waits for the models it would
  evict, or its oldest request has waited `swap_wait_s`, and only `max_swaps_per_minute` times a
  minute (no thrash);
- the models to evict stop taking new requests and are unloaded only once their last generation
  has ended: a swap never cuts a stream;
- what is loaded is read from `/api/ps` after every load and on each probe, with the share of
  each model on the CPU; a partly offloaded model is refused unless the operator allows it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llm_runner.core.errors import UpstreamError
from llm_runner.upstream.base import Upstream
from llm_runner.upstream.states import ERROR, FAILED, OK, ModelState, UpstreamHealth

log = logging.getLogger("llm_runner.residency")
DEFAULT_LOAD_S = 30.0  # a load's length before one has been measured on that upstream
SWAP_TICK_S = 0.25  # how often a pending swap's conditions are looked at again


async def nap(wake: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, less when woken; the wake is used up."""
    try:
        async with asyncio.timeout(seconds):
            await wake.wait()
    except TimeoutError:
        pass
    wake.clear()


class Demand(Protocol):
    def waiting_since(self, model_id: str) -> float | None:
        """When the oldest request still waiting for this model arrived (monotonic), or None."""
        ...


@dataclass(frozen=True)
class ResidencyPolicy:
    need_mb: dict[str, int | None] = field(default_factory=dict)  # per model, from the catalog
    vram_mb: dict[str, tuple[int | None, str]] = field(default_factory=dict)  # per upstream: MB, source
    allow_offload: bool = False
    swap_wait_s: float = 10.0
    max_swaps_per_minute: int = 4


class Residency:
    def __init__(
        self,
        upstreams: Sequence[Upstream],
        health: dict[str, UpstreamHealth],
        policy: ResidencyPolicy,
        *,
        notify: Callable[[], None],
        think_off: Callable[[str], bool],
    ) -> None:
        self.upstreams, self.health, self.policy = list(upstreams), health, policy
        self.notify, self.think_off = notify, think_off
        self.demand: Demand | None = None
        self._wakes = {u.name: asyncio.Event() for u in self.upstreams}
        self._swap_times: dict[str, collections.deque[float]] = {u.name: collections.deque() for u in self.upstreams}
        self._planned: dict[str, set[str]] = {}
        for name, h in health.items():
            h.vram_mb, h.vram_source = policy.vram_mb.get(name, (None, ""))
            served = list(h.models)
            h.swapping = h.vram_mb is not None and not self._fits(h, served)
            self._planned[name] = set(self._first_fit(h, served))
            if h.swapping:
                log.warning(
                    "%s: the served models need %s but %d MB of VRAM is there (%s): the runner keeps %s loaded "
                    "and swaps the others in on demand",
                    name,
                    " + ".join(f"{m} {self._need(h.models[m]) or '?'} MB" for m in served),
                    h.vram_mb,
                    h.vram_source,
                    ", ".join(sorted(self._planned[name])) or "none",
                )

    # -- what the router and admission ask ----------------------------------------------------------

    def servable_now(self, upstream: str, state: ModelState) -> bool:
        return not self.health[upstream].swapping or (state.resident and not state.evicting)

    def wait_estimate(self, model_id: str) -> float | None:
        """None when a ready upstream can run the model now; else the seconds until one can at the
        soonest (the swap budget, then a load), the lowest over the upstreams that serve it."""
        best: float | None = None
        now = time.monotonic()
        for name, h in self.health.items():
            state = h.models.get(model_id)
            if state is None or state.status != OK:
                continue
            if self.servable_now(name, state):
                return None
            estimate = self._budget_wait(name, now) + (state.load_s or self._typical_load(h))
            best = estimate if best is None else min(best, estimate)
        return best

    def should_warm(self, upstream: str, model_id: str) -> bool:
        """At (re)start: load what fits; on a swapping upstream the rest loads on demand."""
        h = self.health[upstream]
        return not h.swapping or model_id in self._planned[upstream] or not any(s.resident for s in h.models.values())

    def used(self, upstream: str, state: ModelState, delta: int) -> None:
        """A generation of `state`'s model started (+1) or ended (-1) on `upstream`."""
        state.in_flight += delta
        if delta > 0:
            state.last_used = time.monotonic()
        elif state.evicting:
            self._wakes[upstream].set()

    def wanted(self) -> None:
        """A request is waiting: look at the swaps now rather than at the next tick."""
        for wake in self._wakes.values():
            wake.set()

    # -- observing --------------------------------------------------------------------------------

    async def observe(self, upstream: Upstream) -> None:
        """Read /api/ps into the states: resident, size, offload; count unloads the runner did not ask
        for, and learn from them that the served models do not fit together."""
        loaded = {r.tag: r for r in await upstream.ps()}
        h = self.health[upstream.name]
        evicted, arrived = [], []
        for state in h.models.values():
            found = loaded.get(state.tag)
            if found is None:
                if state.resident:
                    evicted.append(state)
                state.resident = False
                continue
            if not state.resident:
                arrived.append(state)
            state.resident, state.size_mb = True, found.size // (1 << 20)
            state.offload = found.offload_fraction if found.size_vram > 0 else 0.0
        for state in evicted:
            h.unplanned_unloads += 1
            log.warning(
                "%s: %s (%s) was unloaded by the upstream, not by the runner (another client's model, a "
                "keep_alive, or VRAM short)",
                upstream.name,
                state.model_id,
                state.tag,
            )
        if evicted and arrived and not h.swapping:
            h.swapping, h.vram_source = True, "observed"
            self._planned[upstream.name] = {s.model_id for s in arrived}
            log.warning(
                "%s: loading %s unloaded %s: they do not fit together; from now on the runner swaps them itself",
                upstream.name,
                ", ".join(s.model_id for s in arrived),
                ", ".join(s.model_id for s in evicted),
            )
        self.notify()

    def offload_problem(self, upstream: str, state: ModelState) -> str | None:
        """Why a partly offloaded model is not served (None: all on the GPU, or allowed)."""
        if not state.resident or state.offload <= 0 or self.policy.allow_offload:
            return None
        h = self.health[upstream]
        on_cpu = state.size_mb * state.offload / 1024
        room = f"{h.vram_mb / 1024:.1f} GB of VRAM" if h.vram_mb else "the free VRAM"
        return (
            f"{state.tag} is {state.offload:.0%} on the CPU ({on_cpu:.1f} of {state.size_mb / 1024:.1f} GB), "
            f"which generates several times slower: it does not fit {room}. Serve a smaller quantisation or "
            "model, lower LLM_RUNNER_NUM_CTX or the slots, or set LLM_RUNNER_ALLOW_OFFLOAD=true to serve it anyway"
        )

    # -- swapping ---------------------------------------------------------------------------------

    async def run(self, upstream: Upstream) -> None:
        """One upstream's swap loop (idle while its models fit)."""
        h, wake = self.health[upstream.name], self._wakes[upstream.name]
        while True:
            await nap(wake, SWAP_TICK_S)
            if not h.swapping or h.down_since is not None or self.demand is None:
                continue
            chosen = self._next_swap(h)
            if chosen is not None:
                await self._swap(upstream, h, *chosen)

    def _next_swap(self, h: UpstreamHealth) -> tuple[ModelState, list[ModelState]] | None:
        assert self.demand is not None
        now = time.monotonic()
        wanted = []
        for state in h.models.values():
            since = self.demand.waiting_since(state.model_id)
            if state.status == OK and not state.resident and since is not None:
                wanted.append((since, state.model_id, state))
        if not wanted:
            return None
        since, _, target = min(wanted)
        victims = self._victims(h, target)
        queued = [v for v in victims if self.demand.waiting_since(v.model_id) is not None]
        if queued and now - since < self.policy.swap_wait_s:
            return None  # serve what is loaded first while it has a queue, for a bounded time
        if self._budget_wait(h.name, now) > 0:
            return None
        return target, victims

    def _victims(self, h: UpstreamHealth, target: ModelState) -> list[ModelState]:
        """The resident models to unload so `target` fits: idle ones first, the least recently used first."""
        assert self.demand is not None
        demand = self.demand
        residents = sorted(
            (s for s in h.models.values() if s.resident),
            key=lambda s: (demand.waiting_since(s.model_id) is not None or s.in_flight > 0, s.last_used),
        )
        victims: list[ModelState] = []
        while residents and not self._fits(h, [s.model_id for s in residents] + [target.model_id]):
            victims.append(residents.pop(0))
        return victims

    async def _swap(self, upstream: Upstream, h: UpstreamHealth, target: ModelState, victims: list[ModelState]) -> None:
        name = upstream.name
        log.info(
            "%s: swapping %s out for %s",
            name,
            ", ".join(v.model_id for v in victims) or "nothing",
            target.model_id,
        )
        self._swap_times[name].append(time.monotonic())
        for victim in victims:
            victim.evicting = True
        self.notify()
        try:
            while any(v.in_flight for v in victims):  # never unload under a stream: let them end
                await nap(self._wakes[name], SWAP_TICK_S)
            for victim in victims:
                victim.resident = False  # before the call: a probe meanwhile must not count it as unplanned
                await upstream.unload(victim.tag)
            started = time.monotonic()
            await upstream.warm(target.tag, self.think_off(target.model_id))
            target.load_s = time.monotonic() - started
            h.swaps += 1
            await self.observe(upstream)
            problem = self.offload_problem(name, target)
            if problem:
                target.set(ERROR, FAILED, problem)
                await upstream.unload(target.tag)
                target.resident = False
        except UpstreamError as exc:
            log.error("%s: swapping in %s failed: %s", name, target.model_id, exc.msg)
        finally:
            for victim in victims:
                victim.evicting = False
            self.notify()

    # -- arithmetic -------------------------------------------------------------------------------

    def _need(self, state: ModelState) -> int | None:
        return state.size_mb or self.policy.need_mb.get(state.model_id)

    def _fits(self, h: UpstreamHealth, model_ids: Sequence[str]) -> bool:
        if h.vram_mb is None:  # not known: one at a time once they were seen not to fit together
            return not h.swapping or len(model_ids) <= 1
        return sum(self._need(h.models[m]) or 0 for m in model_ids) <= h.vram_mb

    def _first_fit(self, h: UpstreamHealth, model_ids: Sequence[str]) -> list[str]:
        chosen: list[str] = []
        for model_id in model_ids:
            if self._fits(h, [*chosen, model_id]) or not chosen:
                chosen.append(model_id)
        return chosen

    def _budget_wait(self, name: str, now: float) -> float:
        """Seconds until another swap is allowed on this upstream."""
        times = self._swap_times[name]
        while times and now - times[0] >= 60:
            times.popleft()
        if len(times) < self.policy.max_swaps_per_minute:
            return 0.0
        return 60 - (now - times[0])

    @staticmethod
    def _typical_load(h: UpstreamHealth) -> float:
        measured = [s.load_s for s in h.models.values() if s.load_s]
        return max(measured) if measured else DEFAULT_LOAD_S
