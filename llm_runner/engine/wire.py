"""Ollama's wire shapes for the engine: request bodies in, NDJSON chunks and final objects out.

Bodies are JSON whatever the Content-Type says (Ollama decodes the body without looking at it,
so `curl -d '{...}'`, sent as form-encoded, works). A body that is not JSON is a 400 with
Ollama's `{"error": ...}` shape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_runner.engine.llama import LoadedModel, Result, stream_tokens
from llm_runner.engine.options import OllamaError, Sampling

NDJSON = "application/x-ndjson"
log = logging.getLogger("llm_runner.engine")


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str = ""
    images: list[str] | None = None


class _Generation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    stream: bool = True
    options: dict[str, Any] | None = None
    keep_alive: int | float | str | None = None
    think: bool | str | None = None
    format: Any = None
    logprobs: bool = False
    top_logprobs: int = 0


class ChatBody(_Generation):
    messages: list[Message] = Field(default_factory=list)
    tools: list[Any] | None = None


class GenerateBody(_Generation):
    prompt: str = ""
    system: str | None = None
    images: list[str] | None = None
    raw: bool = False
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None


class NameBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    name: str | None = None  # older clients send `name`
    stream: bool = True

    @property
    def tag(self) -> str:
        return self.model or self.name or ""


Body = TypeVar("Body", bound=BaseModel)
_GO_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "bool", type(None): "null"}


class _NotJSON(ValueError):
    pass


def _no_constants(name: str) -> None:
    """NaN and Infinity are not JSON (Python's json reads them; Go's does not)."""
    raise _NotJSON(f"invalid character '{name[0]}' looking for beginning of value")


async def parse_body(request: Request, kind: type[Body]) -> Body:
    """The JSON body as `kind`, whatever the Content-Type; Ollama's 400 messages when it is not."""
    raw = await request.body()
    if not raw.strip():
        raise OllamaError(400, "missing request body")
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except _NotJSON as exc:
        raise OllamaError(400, str(exc)) from None
    except UnicodeDecodeError:
        raise OllamaError(400, "invalid character in request body: it is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc.rstrip()):
            raise OllamaError(400, "unexpected EOF") from None
        where = "looking for beginning of value" if exc.msg == "Expecting value" else f"({exc.msg.lower()})"
        raise OllamaError(400, f"invalid character '{exc.doc[exc.pos]}' {where}") from None
    if not isinstance(data, dict):
        go_type = {"ChatBody": "ChatRequest", "GenerateBody": "GenerateRequest"}.get(kind.__name__, "Request")
        found = _GO_KINDS.get(type(data), "value")
        raise OllamaError(400, f"json: cannot unmarshal {found} into Go value of type api.{go_type}")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise OllamaError(400, f"invalid request: {where} {first.get('msg', '')}".strip()) from None


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def piece(model: str, text: str, *, chat: bool, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if chat:
        obj = {"model": model, "created_at": now(), "message": {"role": "assistant", "content": text}, "done": False}
    else:
        obj = {"model": model, "created_at": now(), "response": text, "done": False}
    if logprobs:
        obj["logprobs"] = logprobs
    return obj


def final(model: str, result: Result, total_ns: int, *, chat: bool, text: str = "", logprobs=None) -> dict[str, Any]:
    obj = piece(model, text, chat=chat, logprobs=logprobs)
    obj.update(
        done=True,
        done_reason=result.reason,
        total_duration=total_ns,
        load_duration=result.load_ns,
        prompt_eval_count=result.prompt_tokens,
        prompt_eval_duration=result.prompt_ns,
        eval_count=result.eval_count,
        eval_duration=result.eval_ns,
    )
    return obj


def load_reply(model: str, *, chat: bool) -> dict[str, Any]:
    reply = piece(model, "", chat=chat)
    reply.update(done=True, done_reason="load")
    return reply


def single_or_stream(stream: bool, obj: dict[str, Any]) -> Response:
    if stream:
        return Response(line(obj), media_type=NDJSON)
    return JSONResponse(obj)


async def generation(
    model: str, loaded: LoadedModel, prompt: list[int], sampling: Sampling, stream: bool, *, chat: bool
) -> Response:
    started = time.perf_counter_ns()
    box: list[Result] = []

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for text, logprobs in stream_tokens(loaded, prompt, sampling, box):
                sent += 1
                yield line(piece(model, text, chat=chat, logprobs=logprobs))
            yield line(final(model, box[0], time.perf_counter_ns() - started, chat=chat))
        except ValueError as exc:  # prompt longer than the context
            yield line({"error": str(exc)})
        finally:
            if box:
                log.info("%s: %s after %d tokens", model, box[0].reason, box[0].eval_count)
            else:
                log.info("%s: cancelled after %d tokens (client gone)", model, sent)

    if stream:
        return StreamingResponse(body(), media_type=NDJSON)
    parts: list[str] = []
    scores: list[dict[str, Any]] = []
    try:
        async for text, logprobs in stream_tokens(loaded, prompt, sampling, box):
            parts.append(text)
            scores.extend(logprobs)
    except ValueError as exc:
        raise OllamaError(400, str(exc)) from exc
    elapsed = time.perf_counter_ns() - started
    return JSONResponse(final(model, box[0], elapsed, chat=chat, text="".join(parts), logprobs=scores))
