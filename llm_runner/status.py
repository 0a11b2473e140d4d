"""Operator routes: `GET /status` (what /health cannot say: go-livepeer reads only `status`) and
`GET /metrics` (Prometheus). Both need AUTH_TOKEN when it is set (see middleware.OperatorAuth)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from llm_runner.runtime import Runtime
from llm_runner.upstream.states import OK


def model_status(runtime: Runtime, model_id: str, tag: str, advertised: dict[str, int]) -> dict:
    """One model across its upstreams: the best state's facts, every upstream's detail, where it is
    loaded, what its registration advertises and how fast it has been."""
    lifecycle = runtime.lifecycle
    states = sorted(lifecycle.states(model_id), key=lambda s: s.status != OK)
    best = states[0] if states else None
    speed = runtime.loop.speed.of(model_id)
    return {
        "model_id": model_id,
        "tag": tag,
        "status": lifecycle.status(model_id),
        "detail": lifecycle.why_not(model_id) if len(states) > 1 else (best.detail if best else ""),
        "ready_slots": lifecycle.capacity(model_id),
        "advertised_capacity": advertised.get(model_id, 0),
        "resident_on": [s.upstream for s in states if s.resident],
        "in_flight": lifecycle.in_flight(model_id),
        "tokens_per_s": round(speed.tokens_per_s, 2) if speed.tokens_per_s is not None else None,
        "ttft_p50_s": round(speed.ttft_p50_s, 4) if speed.ttft_p50_s is not None else None,
        "measured_requests": speed.samples,
        "quantization": best.quantization if best else "",
        "capabilities": list(best.capabilities) if best else [],
    }


def status_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/status")
    async def status() -> dict:
        lifecycle = runtime.lifecycle
        advertised = runtime.advertised()
        kinds = {u.name: u.kind for u in runtime.upstreams}  # ollama, embedded or openai
        return {
            "status": lifecycle.status(),
            "backend": runtime.backend_description,
            "draining": runtime.loop.draining,
            "in_flight": runtime.admission.in_flight,
            "queued": runtime.admission.waiting,
            "capacity": lifecycle.capacity(),
            "models": [model_status(runtime, model.model_id, model.tag, advertised) for model in runtime.models],
            "upstreams": [
                {
                    "url": health.name,
                    "kind": kinds.get(health.name, "ollama"),
                    "version": health.version,
                    "slots": health.slots,
                    "in_flight": health.in_flight,
                    "down_since": health.down_since,
                    "down_for_s": round(health.down_for_s(), 1),
                    "last_error": health.last_error if health.down_since else "",
                    "vram_mb": health.vram_mb,
                    "vram_source": health.vram_source,
                    "swapping": health.swapping,
                    "swaps": health.swaps,
                    "unplanned_unloads": health.unplanned_unloads,
                    "models": [
                        {
                            "model_id": state.model_id,
                            "tag": state.tag,
                            "status": state.status,
                            "phase": state.phase,
                            "detail": state.detail,
                            "quantization": state.quantization,
                            "capabilities": list(state.capabilities),
                            "resident": state.resident,
                            "offload": round(state.offload, 3),
                            "size_mb": state.size_mb,
                            "in_flight": state.in_flight,
                            "evicting": state.evicting,
                            "load_s": round(state.load_s, 2) if state.load_s is not None else None,
                        }
                        for state in health.models.values()
                    ],
                }
                for health in lifecycle.health.values()
            ],
        }

    if runtime.settings.metrics:

        @router.get("/metrics")
        async def metrics() -> Response:
            return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    return router
