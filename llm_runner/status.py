"""Operator routes: `GET /status` (what /health cannot say: go-livepeer reads only `status`) and
`GET /metrics` (Prometheus). Both need AUTH_TOKEN when it is set (see middleware.OperatorAuth)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from llm_runner.runtime import Runtime
from llm_runner.upstream.lifecycle import Lifecycle
from llm_runner.upstream.states import OK


def model_status(lifecycle: Lifecycle, model_id: str, tag: str) -> dict:
    """One model across its upstreams: the best state's facts, every upstream's detail."""
    states = sorted(lifecycle.states(model_id), key=lambda s: s.status != OK)
    best = states[0] if states else None
    return {
        "model_id": model_id,
        "tag": tag,
        "status": lifecycle.status(model_id),
        "detail": lifecycle.why_not(model_id) if len(states) > 1 else (best.detail if best else ""),
        "ready_slots": lifecycle.capacity(model_id),
        "quantization": best.quantization if best else "",
        "capabilities": list(best.capabilities) if best else [],
    }


def status_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/status")
    async def status() -> dict:
        lifecycle = runtime.lifecycle
        return {
            "status": lifecycle.status(),
            "backend": runtime.backend_description,
            "draining": runtime.loop.draining,
            "in_flight": runtime.admission.in_flight,
            "queued": runtime.admission.waiting,
            "capacity": lifecycle.capacity(),
            "models": [model_status(lifecycle, model.model_id, model.tag) for model in runtime.models],
            "upstreams": [
                {
                    "url": health.name,
                    "version": health.version,
                    "slots": health.slots,
                    "in_flight": health.in_flight,
                    "down_since": health.down_since,
                    "down_for_s": round(health.down_for_s(), 1),
                    "last_error": health.last_error if health.down_since else "",
                    "models": [
                        {
                            "model_id": state.model_id,
                            "tag": state.tag,
                            "status": state.status,
                            "phase": state.phase,
                            "detail": state.detail,
                            "quantization": state.quantization,
                            "capabilities": list(state.capabilities),
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
