"""HTTP routes of the Livepeer runner contract: /health, /version, /hardware/info, /llm.

The root paths serve the first model (and /health speaks for all of them); each model is also
served under `/models/<slug>/`, so that every aiModels.json entry can have its own url and
go-livepeer's `/version` check sees the right model_id.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from llm_runner.auth import require_token
from llm_runner.core.errors import BadRequest, RunnerError
from llm_runner.core.events import DRAINED, ERROR, text_of
from llm_runner.core.request import GenerationRequest, Message, ServedModel
from llm_runner.front import Handler, Incoming, Reply, declaration
from llm_runner.hardware import gpu_info
from llm_runner.livepeer.contract import (
    GPUComputeInfo,
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
from llm_runner.livepeer.errors import livepeer_error
from llm_runner.livepeer.sse import completion_id, livepeer_finish, livepeer_stream
from llm_runner.runtime import Runtime
from llm_runner.sse import SSEResponse
from llm_runner.usage import receipt_headers, request_id_headers

ERROR_RESPONSES = {
    400: {"model": HTTPError, "description": "Bad request"},
    401: {"model": HTTPError, "description": "Unauthorized"},
    500: {"model": HTTPError, "description": "Internal error"},
}


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
        gpus = {index: GPUComputeInfo(**facts) for index, facts in gpu_info().items()}
        return HardwareInformation(model_id=model.model_id, gpu_info=gpus, backend=runtime.backend_description)

    router.add_api_route(
        "/llm",
        declaration(LLMRequest),
        methods=["POST"],
        response_model=LLMResponse,
        operation_id=f"llm_{scope}",
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    return router


def llm_handler(runtime: Runtime, model: ServedModel, *, root: bool) -> Handler:
    """`POST /llm` for one model (root=True: any served model may be named), on the front door."""
    token = runtime.settings.auth_token

    async def llm(incoming: Incoming) -> Reply:
        incoming.check_token(token)
        body = incoming.parse(LLMRequest)
        served = pick_model(runtime, model, body.model, root=root)
        return await run_llm(incoming, runtime, to_generation(body, served, incoming.header(b"livepeer-session-id")))

    return llm


def pick_model(runtime: Runtime, path_model: ServedModel, requested: str, *, root: bool) -> ServedModel:
    """Empty `model` → this path's model; at the root any served id may be named."""
    if not requested or requested == path_model.model_id:
        return path_model
    if root and requested in runtime.by_id:
        return runtime.by_id[requested]
    served = ", ".join(repr(m.model_id) for m in ([path_model] if not root else runtime.models))
    raise BadRequest(f"model {requested!r} is not served here; this runner serves {served}")


def to_generation(body: LLMRequest, model: ServedModel, session: str) -> GenerationRequest:
    """The contract's fields, with its defaults sent explicitly (as the official runner does)."""
    return GenerationRequest(
        model_id=model.model_id,
        messages=[Message(m.role, m.content) for m in body.messages],
        stream=body.stream,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k if body.top_k > 0 else None,
        face="livepeer",
        session=session,
    )


async def run_llm(incoming: Incoming, runtime: Runtime, job: GenerationRequest) -> Reply:
    """Start the generation, then answer as JSON or as a Livepeer SSE stream."""
    generation = await runtime.loop.start(job, incoming.receive)
    if job.stream:
        return SSEResponse(livepeer_stream(generation), generation.close, request_id_headers(generation))
    events, end = await generation.collect(incoming.receive)
    if end.reason in (ERROR, DRAINED):  # a JSON answer cannot carry a partial failure: 500
        return livepeer_error(RunnerError(end.error))
    response = LLMResponse(
        id=completion_id(job.request_id),
        model=job.model_id,
        created=int(time.time()),
        usage=LLMTokenUsage(
            prompt_tokens=end.prompt_tokens,
            completion_tokens=end.completion_tokens,
            total_tokens=end.total_tokens,
        ),
        choices=[
            LLMChoice(
                index=0,
                finish_reason=livepeer_finish(end),
                message=LLMMessage(role="assistant", content=text_of(events)),
            )
        ],
    )
    return JSONResponse(response.model_dump(), headers=receipt_headers(generation))
