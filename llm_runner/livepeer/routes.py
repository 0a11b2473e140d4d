"""HTTP routes of the Livepeer runner contract: /health, /version, /hardware/info, /llm.

The root paths serve the first model (and /health speaks for all of them); each model is also
served under `/models/<slug>/`, so that every aiModels.json entry can have its own url and
go-livepeer's `/version` check sees the right model_id.
"""

from __future__ import annotations

import hmac
import time

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from llm_runner.core.errors import BadRequest, Unauthorized
from llm_runner.core.loop import open_generation
from llm_runner.hardware import gpu_info
from llm_runner.livepeer.contract import (
    HardwareInformation,
    HealthCheck,
    HTTPError,
    LLMChoice,
    LLMMessage,
    LLMRequest,
    LLMResponse,
    LLMTokenUsage,
    Version,
)
from llm_runner.livepeer.sse import GenerationResponse, LivepeerChunks, completion_id, livepeer_events
from llm_runner.runtime import Runtime, ServedModel

ERROR_RESPONSES = {
    400: {"model": HTTPError, "description": "Bad request"},
    401: {"model": HTTPError, "description": "Unauthorized"},
    500: {"model": HTTPError, "description": "Internal error"},
}


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def require_token(request: Request) -> None:
    """Bearer check (constant-time) when AUTH_TOKEN is set; go-livepeer sends it on every call."""
    expected = runtime_of(request).settings.auth_token
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("Invalid bearer token")


def livepeer_router(runtime: Runtime, model: ServedModel, *, root: bool) -> APIRouter:
    """The four contract endpoints for one model (root=True: the service's root paths)."""
    router = APIRouter(responses=ERROR_RESPONSES)
    authed = [Depends(require_token)]
    scope = "root" if root else model.slug

    @router.get("/health", response_model=HealthCheck, operation_id=f"health_{scope}")
    @router.get("/health/", include_in_schema=False)
    async def health() -> HealthCheck:
        return HealthCheck(status=runtime.lifecycle.status(None if root else model.model_id))

    @router.get("/version", response_model=Version, dependencies=authed, operation_id=f"version_{scope}")
    async def version() -> Version:
        return Version(model_id=model.model_id, version=runtime.settings.version)

    @router.get(
        "/hardware/info",
        response_model=HardwareInformation,
        dependencies=authed,
        operation_id=f"hardware_info_{scope}",
    )
    async def hardware_info() -> HardwareInformation:
        return HardwareInformation(model_id=model.model_id, gpu_info=gpu_info(), backend=runtime.backend_description)

    @router.post(
        "/llm",
        response_model=LLMResponse,
        dependencies=authed,
        operation_id=f"llm_{scope}",
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    @router.post("/llm/", dependencies=authed, include_in_schema=False)
    async def llm(request: Request, body: LLMRequest) -> Response:
        served = pick_model(runtime, model, body.model, root=root)
        return await run_llm(request, runtime, served, body)

    return router


def status_router(runtime: Runtime) -> APIRouter:
    """`GET /status`: what /health cannot say (go-livepeer reads only `status`), for operators."""
    router = APIRouter()

    @router.get("/status", dependencies=[Depends(require_token)], include_in_schema=False)
    async def status() -> dict:
        lifecycle = runtime.lifecycle
        return {
            "status": lifecycle.status(),
            "backend": runtime.backend_description,
            "ollama_version": lifecycle.ollama_version,
            "in_flight": runtime.admission.in_flight,
            "queued": runtime.admission.waiting,
            "concurrency": runtime.admission.limit,
            "models": [
                {
                    "model_id": state.model_id,
                    "tag": state.tag,
                    "status": state.status,
                    "detail": state.detail,
                    "quantization": state.quantization,
                    "capabilities": list(state.capabilities),
                }
                for state in lifecycle.states.values()
            ],
        }

    return router


def pick_model(runtime: Runtime, path_model: ServedModel, requested: str, *, root: bool) -> ServedModel:
    """Empty `model` → this path's model; at the root any served id may be named."""
    if not requested or requested == path_model.model_id:
        return path_model
    if root and requested in runtime.by_id:
        return runtime.by_id[requested]
    served = ", ".join(repr(m.model_id) for m in ([path_model] if not root else runtime.models))
    raise BadRequest(f"model {requested!r} is not served here; this runner serves {served}")


async def run_llm(request: Request, runtime: Runtime, model: ServedModel, body: LLMRequest) -> Response:
    """Start the generation, then answer as JSON or as a Livepeer SSE stream."""
    generation = await open_generation(request, runtime, model, body)
    if body.stream:
        shutdown = anyio.Event()
        drain_s = runtime.settings.drain_timeout_s
        events = livepeer_events(
            generation.events,
            LivepeerChunks(model.model_id),
            first=generation.first,
            on_finish=generation.finish,
            shutdown=shutdown,
            drain_s=drain_s,
        )
        return GenerationResponse(events, generation.close, shutdown_event=shutdown, shutdown_grace_period=drain_s + 5)
    text, finish = await generation.collect(request)
    response = LLMResponse(
        id=completion_id(),
        model=model.model_id,
        created=int(time.time()),
        usage=LLMTokenUsage(
            prompt_tokens=finish.prompt_tokens,
            completion_tokens=finish.completion_tokens,
            total_tokens=finish.prompt_tokens + finish.completion_tokens,
        ),
        choices=[LLMChoice(index=0, finish_reason=finish.reason, message=LLMMessage(role="assistant", content=text))],
    )
    return JSONResponse(response.model_dump())
