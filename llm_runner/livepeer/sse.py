"""Stream adapter: backend events → Livepeer chunks → SSE bytes, and the generation's lifetime.

Rules from go-livepeer's reader that shape this module:
- every event is `data: <one-line JSON>\\n\\n`; no comments, no `event:` lines, no pings;
- every chunk has exactly one choice with a `delta`; `usage` is cumulative on every chunk;
- exactly one last chunk has a non-empty finish_reason (stop, length, or error when Ollama failed
  mid-way), then `data: [DONE]`, then the body ends.
Chunks are framed by hand from pre-encoded constant parts: this is the hot path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from llm_runner.core.errors import BadRequest, UpstreamError
from llm_runner.upstream.ollama import Finish

log = logging.getLogger("llm_runner.stream")

DONE_EVENT = b"data: [DONE]\n\n"
T = TypeVar("T")


class ClientGone(BadRequest):
    """The client disconnected before we answered; nobody will read this error."""


def completion_id() -> str:
    """One per request, shaped like the official runner's (and OpenAI's)."""
    return f"chatcmpl-{uuid.uuid4()}"


class LivepeerChunks:
    """Encodes Livepeer `LLMResponse` chunks for one request (same id on every chunk)."""

    def __init__(self, model_id: str) -> None:
        self.id = completion_id()
        self._head = f'{{"id":"{self.id}","model":{json.dumps(model_id)},"created":'

    def event(self, content: str, finish_reason: str, prompt: int, completion: int) -> bytes:
        return (
            f'data: {self._head}{int(time.time())},"usage":{{"prompt_tokens":{prompt},'
            f'"completion_tokens":{completion},"total_tokens":{prompt + completion}}},'
            f'"choices":[{{"index":0,"finish_reason":"{finish_reason}","delta":{{"role":"assistant",'
            f'"content":{json.dumps(content)}}},"message":null}}]}}\n\n'
        ).encode()


async def livepeer_events(
    events: AsyncIterator[str | Finish],
    chunks: LivepeerChunks,
    *,
    first: str | Finish,
    on_finish: Callable[[str, int, int, UpstreamError | None], None],
    shutdown: anyio.Event | None = None,
    drain_s: float = 0.0,
) -> AsyncIterator[bytes]:
    """The SSE body of a Livepeer stream. Always ends with a finish chunk and [DONE]."""
    completion = 0
    event: str | Finish = first
    deadline: float | None = None
    loop = asyncio.get_running_loop()
    try:
        while True:
            if isinstance(event, Finish):
                on_finish(event.reason, event.prompt_tokens, event.completion_tokens, None)
                yield chunks.event("", event.reason, event.prompt_tokens, event.completion_tokens)
                yield DONE_EVENT
                return
            completion += 1
            if event:
                yield chunks.event(event, "", 0, completion)
            if shutdown is not None and shutdown.is_set() and deadline is None:
                deadline = loop.time() + drain_s
            if deadline is not None and loop.time() >= deadline:
                raise UpstreamError("shutdown", "runner shutting down: stream cut after the drain period")
            event = await anext(events)
    except UpstreamError as exc:
        log.warning("stream %s ended with an error after %d tokens: %s", chunks.id, completion, exc.msg)
        on_finish("error", 0, completion, exc)
        yield chunks.event("", "error", 0, completion)
        yield DONE_EVENT
    finally:
        await events.aclose()  # closes the upstream connection: Ollama stops generating


class GenerationResponse(EventSourceResponse):
    """SSE response that always runs `cleanup` (slot release, upstream close), even when the
    client vanished before the body iterator ever started."""

    def __init__(self, content: AsyncIterator[bytes], cleanup: Callable[[], Awaitable[None]], **kw: Any):
        super().__init__(content, ping=0, sep="\n", **kw)
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._cleanup()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # Hot path, once per token: with no send timeout, skip the per-send cancel scope
        # (anyio's scope costs about a sixth of the relay's CPU).
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


async def until_disconnected(request: Request, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, but cancel it when the client goes away (vLLM's `with_cancellation`).

    Starlette does not cancel a handler whose client left, and before an SSE response exists
    nobody listens for `http.disconnect`, so the first-token wait and the non-stream path need this.
    One watcher task; the work itself runs in the caller's task (cheaper than racing two tasks).
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _wait_for_disconnect(request.receive)
        gone = True
        current.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await awaitable
    except asyncio.CancelledError:
        if gone and current.uncancel() == 0:
            raise ClientGone("client disconnected") from None
        raise
    finally:
        watcher.cancel()


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
