"""OpenAI framing: core events → `chat.completion.chunk` SSE bytes, or one `chat.completion`.

Text chunks are framed by hand from a pre-encoded head (the hot path). `usage` is exact on the
last chunk: with `stream_options.include_usage` in OpenAI's own extra chunk (empty `choices`),
otherwise on the chunk that carries `finish_reason`, so gateways can always bill from it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from llm_runner.core import fastjson
from llm_runner.core.events import DRAINED, ERROR, LENGTH, End, Event, Scored, ToolCallEvent, text_of
from llm_runner.core.generation import Generation
from llm_runner.core.request import ToolCall
from llm_runner.http.sse import DONE_EVENT


def completion_id(generation: Generation) -> str:
    """The receipt's id, as OpenAI shapes completion ids."""
    return f"chatcmpl-{generation.request.request_id}"


def finish_reason(end: End, called_tools: bool) -> str:
    """OpenAI has no word for a stream cut by shutdown; `length` tells clients it was cut short."""
    if called_tools and end.reason != LENGTH:
        return "tool_calls"
    return LENGTH if end.reason == DRAINED else end.reason


def usage(end: End) -> dict[str, int]:
    return {
        "prompt_tokens": end.prompt_tokens,
        "completion_tokens": end.completion_tokens,
        "total_tokens": end.total_tokens,
    }


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def logprobs_json(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama's per-token entries already follow OpenAI's field names."""
    return [
        {
            "token": e.get("token", ""),
            "logprob": e.get("logprob", 0.0),
            "bytes": e.get("bytes"),
            "top_logprobs": [
                {"token": t.get("token", ""), "logprob": t.get("logprob", 0.0), "bytes": t.get("bytes")}
                for t in e.get("top_logprobs") or ()
            ],
        }
        for e in entries
    ]


def logprobs_object(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A choice's `logprobs`: OpenAI's spec requires `refusal` beside `content` (this runner
    never refuses in words, so it is null)."""
    return {"content": logprobs_json(entries), "refusal": None}


class OpenAIStream:
    """The SSE body of one streamed chat completion."""

    def __init__(
        self, generation: Generation, include_usage: bool, forced_tool: str | None, one_call: bool = False
    ) -> None:
        self.generation, self.include_usage, self.forced_tool = generation, include_usage, forced_tool
        self.one_call = one_call  # parallel_tool_calls: false: pass on the first call only
        self.id, self.created = completion_id(generation), int(time.time())
        model = json.dumps(generation.model_id)
        self._head = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},"model":{model},'
        )
        self._text_head = (self._head + '"choices":[{"index":0,"delta":{"content":').encode()

    def chunk(self, delta: dict[str, Any] | None, reason: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": reason, **extra}]
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.generation.model_id,
            "choices": choices,
        }
        if "usage" in extra:
            payload["usage"] = extra.pop("usage")
            if choices:
                choices[0].pop("usage")
        return b"data: " + fastjson.dumps(payload) + b"\n\n"

    async def body(self) -> AsyncIterator[bytes]:
        """The stream's events. OpenAI's first chunk (the role) leaves in one write with the
        first content: one send less before the first token, the same events for the client."""
        role = self.chunk({"role": "assistant", "content": ""})
        async for part in self._parts():
            yield role + part if role else part
            role = b""

    async def _parts(self) -> AsyncIterator[bytes]:
        calls = 0
        forced_text: list[str] = []
        async for event in self.generation.events():
            kind = type(event)
            if kind is str:
                if self.forced_tool is not None:
                    forced_text.append(event)  # type: ignore[arg-type]
                elif event:
                    yield self._text_head + fastjson.dumps(event) + b'},"finish_reason":null}]}\n\n'
            elif kind is Scored:
                if self.forced_tool is not None:
                    forced_text.append(event.text)  # type: ignore[union-attr]
                    continue
                delta = {"content": event.text}  # type: ignore[union-attr]
                yield self.chunk(delta, None, logprobs=logprobs_object(event.logprobs))  # type: ignore[union-attr]
            elif kind is ToolCallEvent:
                if self.one_call and calls:
                    continue
                call = {"index": event.index, **tool_call_json(event.call)}  # type: ignore[union-attr]
                calls += 1
                yield self.chunk({"tool_calls": [call]})
            elif kind is End:
                async for part in self._end(event, calls, "".join(forced_text)):  # type: ignore[arg-type]
                    yield part

    async def _end(self, end: End, calls: int, forced_text: str) -> AsyncIterator[bytes]:
        if end.reason == ERROR:
            error = {"error": {"message": end.error, "type": "api_error", "param": None, "code": None}}
            yield b"data: " + json.dumps(error).encode() + b"\n\n"
            yield DONE_EVENT
            return
        if self.forced_tool is not None and end.reason != DRAINED:
            call = ToolCall(f"call_{uuid.uuid4().hex[:24]}", self.forced_tool, forced_text)
            yield self.chunk({"tool_calls": [{"index": 0, **tool_call_json(call)}]})
            calls += 1
        reason = finish_reason(end, calls > 0)
        if self.include_usage:
            yield self.chunk({}, reason)
            yield self.chunk(None, usage=usage(end))
        else:
            yield self.chunk({}, reason, usage=usage(end))
        yield DONE_EVENT


def completion_json(
    generation: Generation, events: list[Event], end: End, forced_tool: str | None, one_call: bool = False
) -> dict[str, Any]:
    """One non-streamed `chat.completion`."""
    text = text_of(events)
    calls = [tool_call_json(e.call) for e in events if type(e) is ToolCallEvent]  # type: ignore[union-attr]
    calls = calls[:1] if one_call else calls
    if forced_tool is not None and end.reason != DRAINED:
        calls.append(tool_call_json(ToolCall(f"call_{uuid.uuid4().hex[:24]}", forced_tool, text)))
        text = ""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason(end, bool(calls))}
    scored = [entry for e in events if type(e) is Scored for entry in e.logprobs]  # type: ignore[union-attr]
    choice["logprobs"] = logprobs_object(scored) if generation.request.top_logprobs is not None else None
    return {
        "id": completion_id(generation),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": generation.model_id,
        "choices": [choice],
        "usage": usage(end),
    }
