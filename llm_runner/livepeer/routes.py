"""The Livepeer runner contract's routes: /health, /version, /hardware/info, /llm.

The root paths serve the first model (and /health speaks for all of them); each model is also
served under `/models/<slug>/`, so that every aiModels.json entry can have its own url and
go-livepeer's `/version` check sees the right model_id.
"""

from __future__ import annotations

import time

from fastapi.responses import JSONResponse

from llm_runner.core.errors import BadRequest, RunnerError
from llm_runner.core.events import DRAINED, ERROR, text_of
from llm_runner.core.hardware import gpu_info
from llm_runner.core.request import GenerationRequest, Message, ServedModel
from llm_runner.http.receipts import receipt_headers, request_id_headers
from llm_runner.http.route import Access, Incoming, Reply, Route
from llm_runner.http.sse import SSEResponse
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
from llm_runner.livepeer.errors import LIVEPEER, refuse
from llm_runner.livepeer.sse import completion_id, livepeer_finish, livepeer_stream
from llm_runner.runtime import Runtime

ERROR_RESPONSES = {
    400: {"model": HTTPError, "description": "Bad request"},
    401: {"model": HTTPError, "description": "Unauthorized"},
    500: {"model": HTTPError, "description": "Internal error"},
}


def livepeer_routes(runtime: Runtime, model: ServedModel, *, root: bool) -> list[Route]:
    """The four contract endpoints for one model: at the root (root=True, /health speaks for every
    model and /llm takes any served one) or under `/models/<slug>`."""
    prefix, scope = ("", "root") if root else (f"/models/{model.slug}", model.slug)

    async def health(_: Incoming) -> Reply:
        return JSONResponse({"status": runtime.lifecycle.status(None if root else model.model_id)})

    async def version(_: Incoming) -> Reply:
        return JSONResponse(Version(model_id=model.model_id, version=runtime.settings.version).model_dump())

    async def hardware_info(_: Incoming) -> Reply:
        gpus = {index: GPUComputeInfo(**facts) for index, facts in gpu_info().items()}
        info = HardwareInformation(model_id=model.model_id, gpu_info=gpus, backend=runtime.backend_description)
        return JSONResponse(info.model_dump())

    async def llm(incoming: Incoming) -> Reply:
        body = incoming.parse(LLMRequest)
        served = pick_model(runtime, model, body.model, root=root)
        return await run_llm(incoming, runtime, to_generation(body, served, incoming.header(b"livepeer-session-id")))

    def doc(name: str, **extra: object) -> dict:
        return {"operation_id": f"{name}_{scope}", "responses": {**ERROR_RESPONSES, **extra.pop("responses", {})}}

    stream = {200: {"content": {"text/event-stream": {}}}}
    return [
        Route(f"{prefix}/health", "GET", health, LIVEPEER, Access.OPEN, response=HealthCheck, doc=doc("health")),
        Route(f"{prefix}/health/", "GET", health, LIVEPEER, Access.OPEN),
        Route(f"{prefix}/version", "GET", version, LIVEPEER, Access.RUNNER, response=Version, doc=doc("version")),
        Route(
            f"{prefix}/hardware/info",
            "GET",
            hardware_info,
            LIVEPEER,
            Access.RUNNER,
            response=HardwareInformation,
            doc=doc("hardware_info"),
        ),
        Route(
            f"{prefix}/llm",
            "POST",
            llm,
            LIVEPEER,
            Access.RUNNER,
            body=LLMRequest,
            response=LLMResponse,
            doc=doc("llm", responses=stream),
        ),
        Route(f"{prefix}/llm/", "POST", llm, LIVEPEER, Access.RUNNER, body=LLMRequest),
    ]


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
        return refuse(RunnerError(end.error))
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
