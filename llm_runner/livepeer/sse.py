"""Livepeer SSE framing: core events → `LLMResponse` chunks → bytes.

Rules from go-livepeer's reader that shape this module:
- every event is `data: <one-line JSON>\\n\\n`; no comments, no `event:` lines, no pings;
- every chunk has exactly one choice with a `delta`; `usage` is cumulative on every chunk;
- exactly one last chunk has a non-empty finish_reason (stop, length, or error when the upstream
  failed mid-way or the runner shut down), then `data: [DONE]`, then the body ends.
Chunks are framed by hand from pre-encoded constant parts: this is the hot path.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from llm_runner.core import fastjson
from llm_runner.core.events import LENGTH, STOP, End, Scored
from llm_runner.core.generation import Generation
from llm_runner.http.sse import DONE_EVENT


def completion_id(request_id: str) -> str:
    """One per request, shaped like the official runner's (and OpenAI's): the receipt's id."""
    return f"chatcmpl-{request_id}"


def livepeer_finish(end: End) -> str:
    """The contract knows stop, length and error; a drained or failed stream is an error."""
    return end.reason if end.reason in (STOP, LENGTH) else "error"


class LivepeerChunks:
    """Encodes Livepeer `LLMResponse` chunks for one request (same id on every chunk)."""

    def __init__(self, model_id: str, request_id: str) -> None:
        self.id = completion_id(request_id)
        self._head = f'data: {{"id":"{self.id}","model":{json.dumps(model_id)},"created":'.encode()

    def event(self, content: str, finish_reason: str, prompt: int, completion: int) -> bytes:
        return CHUNK % (
            self._head,
            int(time.time()),
            prompt,
            completion,
            prompt + completion,
            finish_reason.encode(),
            fastjson.dumps(content),
        )


CHUNK = (
    b'%b%d,"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d},'
    b'"choices":[{"index":0,"finish_reason":"%b","delta":{"role":"assistant","content":%b},"message":null}]}\n\n'
)


async def livepeer_stream(generation: Generation) -> AsyncIterator[bytes]:
    """The SSE body of a Livepeer stream. Always ends with a finish chunk and [DONE]."""
    chunks = LivepeerChunks(generation.model_id, generation.request.request_id)
    async for event in generation.events():
        if type(event) is str:
            if event:
                yield chunks.event(event, "", 0, generation.completion)
        elif type(event) is End:
            yield chunks.event("", livepeer_finish(event), event.prompt_tokens, event.completion_tokens)
            yield DONE_EVENT
        elif type(event) is Scored and event.text:
            yield chunks.event(event.text, "", 0, generation.completion)
