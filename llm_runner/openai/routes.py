"""OpenAI-compatible `/v1/chat/completions` and `/v1/models` over the same backend.

For apps and tools built on the `openai` client. Errors here follow OpenAI's conventions
(`{"error": {...}}`, 429 when busy, 404 for an unknown model), not Livepeer's: go-livepeer never
calls these paths. A request is translated into the Livepeer `LLMRequest` and served exactly
like `/llm`, with the same admission, cancellation and usage counting.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_runner.core.errors import (
    BadRequest,
    Busy,
    NotReady,
    RunnerError,
    Unauthorized,
    UpstreamError,
    describe_validation_errors,
)
from llm_runner.core.loop import Generation, open_generation
from llm_runner.livepeer.contract import LLMMessage, LLMRequest
from llm_runner.livepeer.routes import require_token
from llm_runner.livepeer.sse import DONE_EVENT, GenerationResponse, completion_id
from llm_runner.runtime import Runtime
from llm_runner.upstream.ollama import Finish


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    def to_livepeer(self) -> LLMRequest:
        fields: dict[str, Any] = {
            "model": self.model,
            "messages": [
                LLMMessage(role="system" if m.role == "developer" else m.role, content=m.text()) for m in self.messages
            ],
            "stream": self.stream,
        }
        max_tokens = self.max_completion_tokens or self.max_tokens
        for name, value in (
            ("max_tokens", max_tokens),
            ("temperature", self.temperature),
            ("top_p", self.top_p),
        ):
            if value is not None:
                fields[name] = value
        return LLMRequest(**fields)


def openai_error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


def _as_openai(exc: RunnerError) -> JSONResponse:
    if isinstance(exc, Unauthorized):
        return openai_error(401, exc.msg, "authentication_error")
    if isinstance(exc, BadRequest):
        return openai_error(400, exc.msg, "invalid_request_error")
    if isinstance(exc, Busy):
        return openai_error(429, exc.msg, "rate_limit_error")
    if isinstance(exc, NotReady):
        return openai_error(503, exc.msg, "service_unavailable")
    return openai_error(500, exc.msg, "api_error")


def openai_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"])

    @router.get("/models")
    async def models(request: Request) -> Response:
        try:
            await require_token(request)
        except Unauthorized as exc:
            return _as_openai(exc)
        data = [{"id": m.model_id, "object": "model", "created": 0, "owned_by": "llm-runner"} for m in runtime.models]
        return JSONResponse({"object": "list", "data": data})

    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            await require_token(request)
            try:
                chat = ChatCompletionRequest.model_validate_json(await request.body())
                body = chat.to_livepeer()
            except ValidationError as exc:
                raise BadRequest(describe_validation_errors(exc.errors())) from exc
            model = runtime.by_id.get(chat.model)
            if model is None:
                served = ", ".join(runtime.by_id)
                return openai_error(404, f"model {chat.model!r} not found; served: {served}", "not_found_error")
            generation = await open_generation(request, runtime, model, body)
        except RunnerError as exc:
            return _as_openai(exc)
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return GenerationResponse(
                _openai_events(generation, completion_id(), include_usage),
                generation.close,
                shutdown_event=anyio.Event(),
                shutdown_grace_period=runtime.settings.drain_timeout_s + 5,
            )
        try:
            text, finish = await generation.collect(request)
        except RunnerError as exc:
            return _as_openai(exc)
        return JSONResponse(
            {
                "id": completion_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model.model_id,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish.reason,
                    }
                ],
                "usage": _usage(finish),
            }
        )

    return router


def _usage(finish: Finish) -> dict[str, int]:
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }


async def _openai_events(generation: Generation, chunk_id: str, include_usage: bool) -> AsyncIterator[bytes]:
    model_id = generation.model.model_id
    created = int(time.time())

    def chunk(delta: dict, finish_reason: str | None, **extra: Any) -> bytes:
        payload = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if delta is not None else [],
            **extra,
        }
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    completion = 0
    event = generation.first
    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        while not isinstance(event, Finish):
            completion += 1
            if event:
                yield chunk({"content": event}, None)
            event = await anext(generation.events)
        generation.finish(event.reason, event.prompt_tokens, event.completion_tokens, None)
        yield chunk({}, event.reason)
        if include_usage:
            yield chunk(None, None, usage=_usage(event))  # type: ignore[arg-type]
        yield DONE_EVENT
    except UpstreamError as exc:
        generation.finish("error", 0, completion, exc)
        payload = {"error": {"message": exc.msg, "type": "api_error", "param": None, "code": None}}
        yield b"data: " + json.dumps(payload).encode() + b"\n\n"
    finally:
        await generation.close()
