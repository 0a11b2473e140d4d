"""Dynamic registration of each served model as a live runner, fed by the runner's own state:
status `ready` only while the model can be served, capacity = its share of the slots ready now,
public metadata = its measured speed and residency, unregistered on shutdown. This is what no
static runners.json can do: capacity that follows upstreams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from llm_runner.core.hardware import gpu_info
from llm_runner.core.request import ServedModel
from llm_runner.live.registration import Registration, RegistrationConfig, RunnerSnapshot
from llm_runner.live.runners_json import APP_PREFIX, gpu_entry
from llm_runner.settings import Settings


def price_info(settings: Settings) -> dict[str, Any] | None:
    if settings.live_price is None:
        return None
    return {"price": settings.live_price, "currency": "usd", "unit": settings.live_unit}


def registrations(
    settings: Settings,
    models: list[ServedModel],
    state: Callable[[str], tuple[bool, int, str]],
    sent: Callable[[str, RunnerSnapshot, bool], None] | None = None,
) -> list[Registration]:
    """One registration per served model; `state(model_id)` → (ready, capacity, metadata). They
    heartbeat one at a time, and `sent(model_id, snapshot, accepted)` learns what each told."""
    if not settings.live_orchestrator_url:
        return []
    if settings.live_orch_secret is None:
        raise ValueError("LLM_RUNNER_LIVE_ORCHESTRATOR_URL needs LLM_RUNNER_LIVE_ORCH_SECRET (its -orchSecret)")
    if settings.live_unit == "fixed" and settings.live_price is not None and settings.max_tokens_cap is None:
        raise ValueError(
            "LLM_RUNNER_LIVE_UNIT=fixed is one payment per call: set LLM_RUNNER_MAX_TOKENS_CAP to the output "
            "tokens that price covers (`llm-runner price --unit fixed` computes both)"
        )
    gpus = gpu_info()
    gpu = gpu_entry(gpus["0"]) if "0" in gpus else None
    gate = asyncio.Lock()
    out = []
    for model in models:
        config = RegistrationConfig(
            orchestrator_url=settings.live_orchestrator_url,
            orch_secret=settings.live_orch_secret.get_secret_value(),
            runner_url=f"{settings.live_public_url.rstrip('/')}/models/{model.slug}",
            app=APP_PREFIX + model.model_id,
            version=settings.version,
            gpu=gpu,
            price=price_info(settings),
            label=model.slug,
            verify=settings.live_verify_tls,
        )

        def snapshot(config: RegistrationConfig = config, model_id: str = model.model_id) -> RunnerSnapshot:
            return config.snapshot(*state(model_id))

        def told(snap: RunnerSnapshot, accepted: bool, model_id: str = model.model_id) -> None:
            if sent is not None:
                sent(model_id, snap, accepted)

        out.append(Registration(config, snapshot, gate=gate, sent=told))
    return out
