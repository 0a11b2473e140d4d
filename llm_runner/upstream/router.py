"""The router: which upstream runs a generation. The ready upstream serving the model with the
most free slots wins; ties go round robin. It also counts each upstream's slots in use, and each
model's there. Where the served models do not fit one upstream's memory together, only a model
that is loaded (and not being drained for a swap) is given a slot there (see residency.py)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from llm_runner.core.admission import Lease
from llm_runner.upstream.base import Upstream
from llm_runner.upstream.lifecycle import Lifecycle


class UpstreamRouter:
    def __init__(self, upstreams: Sequence[Upstream], lifecycle: Lifecycle) -> None:
        self.upstreams = list(upstreams)
        self.lifecycle = lifecycle
        self._turn = itertools.count()

    @property
    def in_flight(self) -> int:
        return sum(h.in_flight for h in self.lifecycle.health.values())

    @property
    def capacity(self) -> int:
        return self.lifecycle.capacity()

    def unservable(self, model_id: str) -> str | None:
        return self.lifecycle.unservable(model_id)

    def wait_estimate(self, model_id: str) -> float | None:
        return self.lifecycle.residency.wait_estimate(model_id)

    def wanted(self, model_id: str) -> None:
        self.lifecycle.residency.wanted()

    def others_ready(self, model_id: str, exclude: frozenset[str]) -> bool:
        return any(u.name not in exclude and self.lifecycle.ready_on(u.name, model_id) for u in self.upstreams)

    def pick(self, model_id: str, exclude: frozenset[str]) -> Lease | None:
        health, residency = self.lifecycle.health, self.lifecycle.residency
        best: list[Upstream] = []
        most = 0
        for upstream in self.upstreams:
            if upstream.name in exclude or not self.lifecycle.ready_on(upstream.name, model_id):
                continue
            if not residency.servable_now(upstream.name, health[upstream.name].models[model_id]):
                continue
            free = upstream.slots - health[upstream.name].in_flight
            if free > most:
                best, most = [upstream], free
            elif free == most and free > 0:
                best.append(upstream)
        if not best:
            return None
        chosen = best[next(self._turn) % len(best)]
        state = health[chosen.name]
        model = state.models[model_id]
        state.in_flight += 1
        residency.used(chosen.name, model, +1)

        def free_slot() -> None:
            state.in_flight -= 1
            residency.used(chosen.name, model, -1)

        return Lease(chosen, free_slot)
