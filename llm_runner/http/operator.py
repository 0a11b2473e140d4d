"""The runner's own routes, beside the faces': `GET /ready` (the readiness URL a live runner's
orchestrator polls, also per model), `GET /status` (what /health cannot say: go-livepeer reads only
`status`), `GET /usage` (receipts, for reconciliation) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

from fastapi.responses import JSONResponse, Response

from llm_runner.core.request import ServedModel
from llm_runner.http.route import Access, Handler, Incoming, Reply, Route
from llm_runner.livepeer.errors import LIVEPEER
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


def operator_routes(runtime: Runtime) -> list[Route]:
    """/status, /usage, /metrics (when on), and /ready for the runner and under each model's prefix."""

    async def status(_: Incoming) -> Reply:
        return JSONResponse(runner_status(runtime))

    async def usage(incoming: Incoming) -> Reply:
        receipts = runtime.loop.receipts
        request_id = incoming.query("request_id")
        if request_id is not None:
            receipt = receipts.find(request_id.removeprefix("chatcmpl-"))
            if receipt is None:
                return JSONResponse({"detail": {"msg": f"no receipt for request {request_id!r} (expired?)"}}, 404)
            return JSONResponse(receipt.as_json())
        return JSONResponse(receipts.usage(incoming.query("session")))

    async def metrics(_: Incoming) -> Reply:
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/status", "GET", status, LIVEPEER, Access.OPERATOR),
        Route("/usage", "GET", usage, LIVEPEER, Access.OPERATOR),
        Route("/ready", "GET", ready_handler(runtime, runtime.models), LIVEPEER, Access.OPEN),
    ]
    if runtime.settings.metrics:
        routes.append(Route("/metrics", "GET", metrics, LIVEPEER, Access.METRICS))
    for model in runtime.models:
        ready = ready_handler(runtime, [model])
        routes.append(Route(f"/models/{model.slug}/ready", "GET", ready, LIVEPEER, Access.OPEN))
    return routes


def ready_handler(runtime: Runtime, served: list[ServedModel]) -> Handler:
    async def ready(_: Incoming) -> Reply:
        """200 only when a request would be served now (or once a swap loads it: see README); cheap,
        no upstream call. Shutting down, it stays 200 while the model still streams: one failed
        check would make the orchestrator release those sessions."""
        lifecycle = runtime.lifecycle
        waiting = [m.model_id for m in served if not lifecycle.is_ready(m.model_id)]
        if runtime.loop.draining:
            streaming = sum(lifecycle.in_flight(m.model_id) for m in served)
            body = {"status": "draining", "reason": "runner is shutting down", "streaming": streaming}
            return JSONResponse(body, 200 if streaming else 503)
        if waiting:
            reasons = {m: lifecycle.why_not(m) for m in waiting}
            return JSONResponse({"status": "not_ready", "reason": reasons}, 503)
        shares = runtime.advertised()
        return JSONResponse({"status": "ready", "capacity": sum(shares.get(m.model_id, 0) for m in served)})

    return ready


def runner_status(runtime: Runtime) -> dict:
    """Everything /status shows: the runner, each model, each upstream and what it holds."""
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
