"""Responses API framing: core events → one `response` object, or its typed event stream
(`event: response.output_text.delta` ...) in the order OpenAI documents: created, in_progress,
output_item.added, content_part.added, the text deltas, then the matching `.done` events and
`response.completed` (`response.incomplete` when cut by `max_output_tokens`, `error` then
`response.failed` when the upstream failed). Usage is exact on the final response.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from llm_runner.core import fastjson
from llm_runner.core.events import ERROR, STOP, End, Scored, text_of
from llm_runner.core.generation import Generation
from llm_runner.openai.responses import ResponseRequest


class ResponseShape:
    """One response's fixed fields (ids, the request's echo) and its object at each stage."""

    def __init__(self, req: ResponseRequest, model_id: str) -> None:
        self.req, self.model_id = req, model_id
        self.id, self.message_id = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}"
        self.created_at = int(time.time())

    def status(self, end: End | None) -> str:
        if end is None:
            return "in_progress"
        return "completed" if end.reason == STOP else "failed" if end.reason == ERROR else "incomplete"

    def message(self, text: str, end: End | None) -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        status = "in_progress" if end is None else "completed" if end.reason == STOP else "incomplete"
        return {"id": self.message_id, "type": "message", "status": status, "role": "assistant", "content": [part]}

    def response(self, output: list[dict[str, Any]], end: End | None) -> dict[str, Any]:
        req, status = self.req, self.status(end)
        fmt = req.text.format if req.text is not None else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": {"code": "server_error", "message": end.error} if end and status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens,
            "metadata": req.metadata or {},
            "model": self.model_id,
            "output": output,
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": False,
            "temperature": req.temperature,
            "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
            "tool_choice": req.tool_choice or "auto",
            "tools": [],
            "top_p": req.top_p,
            "truncation": "disabled",
            "usage": _usage(end) if end is not None else None,
            "user": req.user,
        }


def response_json(shape: ResponseShape, events: list[Any], end: End) -> dict[str, Any]:
    """One non-streamed `response`."""
    return shape.response([shape.message(text_of(events), end)], end)


class ResponsesStream:
    """The SSE body of one streamed response: `event: <type>` and `data: {..., sequence_number}`."""

    def __init__(self, generation: Generation, shape: ResponseShape) -> None:
        self.generation, self.shape = generation, shape
        self.sequence = 0

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + fastjson.dumps(payload) + b"\n\n"

    async def body(self) -> AsyncIterator[bytes]:
        """The opening events leave in one write with the first delta, as chat's role chunk does."""
        shape, where = self.shape, {"item_id": self.shape.message_id, "output_index": 0}
        opening = self.event("response.created", response=shape.response([], None))
        opening += self.event("response.in_progress", response=shape.response([], None))
        opening += self.event(
            "response.output_item.added", output_index=0, item={**shape.message("", None), "content": []}
        )
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        opening += self.event("response.content_part.added", **where, content_index=0, part=part)
        texts: list[str] = []
        async for event in self.generation.events():
            kind = type(event)
            if kind is str or kind is Scored:
                delta = event if kind is str else event.text  # type: ignore[union-attr]
                if delta:
                    texts.append(delta)  # type: ignore[arg-type]
                    yield opening + self.event(
                        "response.output_text.delta", **where, content_index=0, delta=delta, logprobs=[]
                    )
                    opening = b""
            elif kind is End:
                yield opening + self._end(event, "".join(texts))  # type: ignore[arg-type]

    def _end(self, end: End, text: str) -> bytes:
        shape, where = self.shape, {"item_id": self.shape.message_id, "output_index": 0, "content_index": 0}
        message = shape.message(text, end)
        out = b""
        if end.reason == ERROR:
            out += self.event("error", code="server_error", message=end.error, param=None)
            return out + self.event("response.failed", response=shape.response([], end))
        out += self.event("response.output_text.done", **where, text=text, logprobs=[])
        out += self.event("response.content_part.done", **where, part=message["content"][0])
        out += self.event("response.output_item.done", output_index=0, item=message)
        final = "response.completed" if end.reason == STOP else "response.incomplete"
        return out + self.event(final, response=shape.response([message], end))


def _usage(end: End) -> dict[str, Any]:
    return {
        "input_tokens": end.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": end.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": end.total_tokens,
    }
