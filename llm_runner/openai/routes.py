"""OpenAI-compatible routes: `/v1/chat/completions`, `/v1/responses`, `/v1/models`, `/v1/models/{id}`.

Served at the root (any served model may be named) and under each model's prefix
`/models/<slug>/v1/...`, the path a live runner registers: there the path pins the model, so a
request naming another one is refused and `/v1/models` lists exactly it.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llm_runner.core.errors import BadRequest, NotReady, RunnerError, UnknownModel
from llm_runner.core.events import End, Event
from llm_runner.core.generation import Generation
from llm_runner.core.request import ServedModel
from llm_runner.http.receipts import receipt_headers, request_id_headers
from llm_runner.http.route import Access, Handler, Incoming, Reply, Route
from llm_runner.http.sse import SSEResponse
from llm_runner.openai.errors import OPENAI
from llm_runner.openai.protocol import ChatCompletionRequest, forced_tool, to_generation
from llm_runner.openai.responses import ResponseRequest
from llm_runner.openai.responses import to_generation as responses_generation
from llm_runner.openai.responses_out import ResponseShape, ResponsesStream, response_json
from llm_runner.openai.sse import OpenAIStream, completion_json
from llm_runner.runtime import Runtime


def model_card(model: ServedModel) -> dict[str, object]:
    return {"id": model.model_id, "object": "model", "created": 0, "owned_by": "llm-runner"}


def openai_routes(runtime: Runtime, pinned: ServedModel | None = None) -> list[Route]:
    """The root routes (pinned=None: any served model may be named) or one model's live-runner
    routes under `/models/<slug>` (the path pins the model)."""
    served = [pinned] if pinned else runtime.models
    prefix, scope = (f"/models/{pinned.slug}", pinned.slug) if pinned else ("", "root")
    access = Access.LIVE if pinned else Access.RUNNER

    async def models(_: Incoming) -> Reply:
        return JSONResponse({"object": "list", "data": [model_card(m) for m in served]})

    async def model(incoming: Incoming) -> Reply:
        for m in served:
            if m.model_id == incoming.rest:
                return JSONResponse(model_card(m))
        raise UnknownModel(f"model {incoming.rest!r} not found", param="model")

    def doc(name: str) -> dict:
        return {"operation_id": f"{name}_{scope}", "tags": ["openai"]}

    chat, responses = chat_handler(runtime, served, pinned), responses_handler(runtime, served, pinned)
    v1 = f"{prefix}/v1"
    return [
        Route(f"{v1}/models", "GET", models, OPENAI, access, doc=doc("models")),
        Route(f"{v1}/models/", "GET", model, OPENAI, access, rest="model_id", doc=doc("model")),
        Route(f"{v1}/chat/completions", "POST", chat, OPENAI, access, ChatCompletionRequest, doc=doc("chat")),
        Route(f"{v1}/responses", "POST", responses, OPENAI, access, ResponseRequest, doc=doc("responses")),
    ]


def chat_handler(runtime: Runtime, served: list[ServedModel], pinned: ServedModel | None) -> Handler:
    """`POST /v1/chat/completions`: at the root any served model may be named; under a model's
    prefix (pinned) only that one."""
    max_queue = runtime.settings.openai_max_queue

    async def chat_completions(incoming: Incoming) -> Reply:
        chat = incoming.parse(ChatCompletionRequest)
        target = served_model(served, pinned, chat.model)
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


def responses_handler(runtime: Runtime, served: list[ServedModel], pinned: ServedModel | None) -> Handler:
    """`POST /v1/responses`, stateless, on the same core and the same model rules as chat."""

    async def responses(incoming: Incoming) -> Reply:
        req = incoming.parse(ResponseRequest)
        target = served_model(served, pinned, req.model)
        job = responses_generation(req, target.model_id)
        job.session = incoming.header(b"livepeer-session-id")
        generation = await runtime.loop.start(job, incoming.receive, runtime.settings.openai_max_queue)
        shape = ResponseShape(req, target.model_id)
        if job.stream:
            body = ResponsesStream(generation, shape).body()
            return SSEResponse(body, generation.close, request_id_headers(generation))
        events, end = await collected(generation, incoming)
        return JSONResponse(response_json(shape, events, end), headers=receipt_headers(generation))

    return responses


def served_model(served: list[ServedModel], pinned: ServedModel | None, model: str) -> ServedModel:
    """The model a request names: at the root any served one (else 404), under a prefix only it."""
    target = next((m for m in served if m.model_id == model), None)
    if target is not None:
        return target
    names = ", ".join(repr(m.model_id) for m in served)
    if pinned is not None:
        raise BadRequest(f"this path serves only {names}, not {model!r}", param="model")
    raise UnknownModel(f"model {model!r} not found; served: {names}")


async def collected(generation: Generation, incoming: Incoming) -> tuple[list[Event], End]:
    """A non-streamed answer's events; a failure is the face's error, not a half answer."""
    events, end = await generation.collect(incoming.receive)
    if end.error:
        failed = NotReady(end.error) if end.reason == "drained" else RunnerError(end.error)
        failed.accounted = True  # the generation's summary line says it already
        raise failed
    return events, end
