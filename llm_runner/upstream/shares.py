"""How many requests at once each served model may be given, so that what every registration
advertises never adds up to more than the slots of the upstreams behind them.

go-livepeer counts capacity per registration (go-livepeer #4015): two models on one Ollama with two
slots, each registered with capacity 2, let the orchestrator admit four paid requests where two
fit. So the slots of an upstream are split between the models it serves (an equal share each, the
remainder to the first ones), or the operator gives each model its own capacity and it is checked
to fit: for every group of models, their capacities together at most the slots of the upstreams
that serve any of them (Hall's condition: then the requests can always be placed).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from llm_runner.settings import Settings


class SharesError(ValueError):
    """Capacities that would advertise more than the slots."""


def split_slots(slots: Mapping[str, int], serves: Mapping[str, Sequence[str]], strict: bool = True) -> dict[str, int]:
    """Each model's capacity: the sum of its shares of the upstreams that serve it. With fewer slots
    than models on an upstream, `strict` refuses; otherwise the first models get one slot each."""
    capacity: dict[str, int] = {}
    for upstream, models in serves.items():
        count = slots.get(upstream, 0)
        if not models:
            continue
        if count < len(models) and strict:
            raise SharesError(
                f"{upstream} has {count} slot(s) for {len(models)} models ({', '.join(models)}): every model "
                f"needs one. Give it ?parallel={len(models)} or more in OLLAMA_HOST, serve fewer models there, "
                "or name each model's --capacity"
            )
        for index, model_id in enumerate(models):
            share = count // len(models) + (1 if index < count % len(models) else 0)
            capacity[model_id] = capacity.get(model_id, 0) + share
    return capacity


def check_capacities(
    capacities: Mapping[str, int], slots: Mapping[str, int], serves: Mapping[str, Sequence[str]]
) -> None:
    """Refuse capacities some group of models could not get at once from the upstreams serving them."""
    for model_id, wanted in capacities.items():
        if wanted < 1:
            raise SharesError(f"capacity of {model_id} must be at least 1, got {wanted}")
    models = list(capacities)
    for size in range(1, len(models) + 1):
        for group in itertools.combinations(models, size):
            behind = [u for u, served in serves.items() if any(m in served for m in group)]
            available = sum(slots.get(u, 0) for u in behind)
            asked = sum(capacities[m] for m in group)
            if asked > available:
                names = " + ".join(f"{m} {capacities[m]}" for m in group)
                raise SharesError(
                    f"capacity {names} = {asked} is more than the {available} slot(s) of {', '.join(behind)}: "
                    "the orchestrator would admit requests that cannot run. Lower --capacity or add slots "
                    "(?parallel=N in OLLAMA_HOST)"
                )


def configured(settings: Settings, model_ids: Sequence[str]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Slots per upstream and the served models per upstream, from OLLAMA_HOST and the parallelism."""
    specs = settings.upstreams
    slots = {s.url: s.parallel or settings.default_slots for s in specs}
    serves = {s.url: [m for m in model_ids if s.models is None or m in s.models] for s in specs}
    return slots, serves


def capacities_for(
    settings: Settings, model_ids: Sequence[str], given: Mapping[str, int] | None = None
) -> dict[str, int]:
    """What runners-json and ai-models write: the operator's capacities, checked, or the split."""
    slots, serves = configured(settings, model_ids)
    if given:
        full = {m: given.get(m, 0) for m in model_ids}
        check_capacities(full, slots, serves)
        return full
    return split_slots(slots, serves)
