"""OpenAI-compatible routes: `/v1/chat/completions`, `/v1/responses`, `/v1/models`, `/v1/models/{id}`.

Served at the root (any served model may be named) and under each model's prefix
`/models/<slug>/v1/...`, the path a live runner registers: there the path pins the model, so a
request naming another one is refused and `/v1/models` lists exactly it. The prefix also has the
readiness URL an orchestrator polls, `/models/<slug>/ready` (and `/ready` for the whole runner).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llm_runner.auth import check_bearer
from llm_runner.core.errors import BadRequest, NotReady, RunnerError
from llm_runner.core.events import End, Event
from llm_runner.core.loop import Generation
from llm_runner.core.request import ServedModel
from llm_runner.errors import log_refusal
from llm_runner.front import Handler, Incoming, Reply, declaration
from llm_runner.openai.errors import openai_error
from llm_runner.openai.protocol import ChatCompletionRequest, forced_tool, to_generation
from llm_runner.openai.responses import ResponseRequest
from llm_runner.openai.responses import to_generation as responses_generation
from llm_runner.openai.responses_out import ResponseShape, ResponsesStream, response_json
from llm_runner.openai.sse import OpenAIStream, completion_json
from llm_runner.runtime import Runtime
from llm_runner.sse import SSEResponse
from llm_runner.usage import receipt_headers, request_id_headers


def model_card(model: ServedModel) -> dict[str, object]:
    return {"id": model.model_id, "object": "model", "created": 0, "owned_by": "llm-runner"}


def openai_router(runtime: Runtime, pinned: ServedModel | None = None) -> APIRouter:
    """Root routes (pinned=None, guarded by AUTH_TOKEN) or one model's live-runner routes
    (guarded only when LLM_RUNNER_LIVE_AUTH is on: an orchestrator forwards the client's header)."""
    router = APIRouter(tags=["openai"])
    served, token = scope(runtime, pinned)

    @router.get("/ready", include_in_schema=False)
    async def ready() -> Response:
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

    @router.get("/v1/models")
    async def models(request: Request) -> Response:
        check_bearer(request.headers.get("authorization", ""), token)
        return JSONResponse({"object": "list", "data": [model_card(m) for m in served]})

    @router.get("/v1/models/{model_id:path}")
    async def model(request: Request, model_id: str) -> Response:
        check_bearer(request.headers.get("authorization", ""), token)
        for m in served:
            if m.model_id == model_id:
                return JSONResponse(model_card(m))
        return openai_error(404, f"model {model_id!r} not found", "not_found_error", "model")

    router.add_api_route("/v1/chat/completions", declaration(ChatCompletionRequest), methods=["POST"])
    router.add_api_route("/v1/responses", declaration(ResponseRequest), methods=["POST"])
    return router


def chat_handler(runtime: Runtime, pinned: ServedModel | None = None) -> Handler:
    """`POST /v1/chat/completions` on the front door: at the root any served model may be named;
    under a model's prefix (pinned) only that one."""
    served, token = scope(runtime, pinned)
    max_queue = runtime.settings.openai_max_queue

    async def chat_completions(incoming: Incoming) -> Reply:
        incoming.check_token(token)
        chat = incoming.parse(ChatCompletionRequest)
        target = served_model(served, pinned, chat.model, incoming.scope["path"])
        if not isinstance(target, ServedModel):
            return target
        job = to_generation(chat, target.model_id)
        job.session = incoming.header(b"livepeer-session-id")
        forced = forced_tool(chat)
        forced_name = forced.function.name if forced else None
        try:
            generation = await runtime.loop.start(job, incoming.receive, max_queue)
        except BadRequest as exc:
            if exc.param == "max_tokens" and chat.max_completion_tokens is not None:
                exc.param = "max_completion_tokens"  # the field this client sent (the core knows one)
            raise
        one_call = chat.parallel_tool_calls is False
        if job.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            stream = OpenAIStream(generation, include_usage, forced_name, one_call)
            return SSEResponse(stream.body(), generation.close, request_id_headers(generation))
        events, end = await collected(generation, incoming)
        return JSONResponse(
            completion_json(generation, events, end, forced_name, one_call), headers=receipt_headers(generation)
        )

    return chat_completions


def responses_handler(runtime: Runtime, pinned: ServedModel | None = None) -> Handler:
    """`POST /v1/responses`, stateless, on the same core and the same model rules as chat."""
    served, token = scope(runtime, pinned)

    async def responses(incoming: Incoming) -> Reply:
        incoming.check_token(token)
        req = incoming.parse(ResponseRequest)
        target = served_model(served, pinned, req.model, incoming.scope["path"])
        if not isinstance(target, ServedModel):
            return target
        job = responses_generation(req, target.model_id)
        job.session = incoming.header(b"livepeer-session-id")
        generation = await runtime.loop.start(job, incoming.receive, runtime.settings.openai_max_queue)
        shape = ResponseShape(req, target.model_id)
        if job.stream:
            return SSEResponse(ResponsesStream(generation, shape).body(), generation.close)
        events, end = await collected(generation, incoming)
        return JSONResponse(response_json(shape, events, end))

    return responses


def scope(runtime: Runtime, pinned: ServedModel | None) -> tuple[list[ServedModel], str | None]:
    """The models a path serves, and the token that guards it: the root (pinned=None) serves
    all, guarded by AUTH_TOKEN; a model's prefix serves it, guarded only with LLM_RUNNER_LIVE_AUTH."""
    served = [pinned] if pinned else runtime.models
    return served, runtime.settings.auth_token if pinned is None or runtime.settings.live_auth else None


def served_model(served: list[ServedModel], pinned: ServedModel | None, model: str, path: str) -> ServedModel | Reply:
    """The model a request names: at the root any served one (else 404), under a prefix only it."""
    target = next((m for m in served if m.model_id == model), None)
    if target is not None:
        return target
    names = ", ".join(repr(m.model_id) for m in served)
    if pinned is not None:
        raise BadRequest(f"this path serves only {names}, not {model!r}", param="model")
    message = f"model {model!r} not found; served: {names}"
    log_refusal("POST", path, 404, message)
    return openai_error(404, message, "not_found_error")


async def collected(generation: Generation, incoming: Incoming) -> tuple[list[Event], End]:
    """A non-streamed answer's events; a failure is the face's error, not a half answer."""
    events, end = await generation.collect(incoming.receive)
    if end.error:
        failed = NotReady(end.error) if end.reason == "drained" else RunnerError(end.error)
        failed.accounted = True  # the generation's summary line says it already
        raise failed
    return events, end
