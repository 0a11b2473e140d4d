"""The SSE response both faces stream through.

A plain ASGI response rather than Starlette's StreamingResponse: that one runs the body and a
disconnect listener as two tasks in an anyio task group per request, which costs more than the
rest of the relay. Here the body runs in the request's own task under one watcher
(`until_disconnected`) that cancels it when the client leaves, and `cleanup` (slot release,
upstream close) always runs, even when the client vanished before the body started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.types import Receive, Scope, Send

from llm_runner.core.cancel import until_disconnected
from llm_runner.core.errors import ClientGone

DONE_EVENT = b"data: [DONE]\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SSEResponse:
    """An event stream: `content` yields whole `data: ...\\n\\n` events, sent as they come."""

    status_code = 200

    def __init__(
        self,
        content: AsyncIterator[bytes],
        cleanup: Callable[[], Awaitable[None]],
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.content, self.cleanup = content, cleanup
        self.headers = SSE_HEADERS + headers if headers else SSE_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            async for chunk in self.content:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await until_disconnected(receive, stream())
        except (ClientGone, OSError):
            pass  # the client left: nobody reads the rest; cleanup stops the upstream
        finally:
            await self.cleanup()
