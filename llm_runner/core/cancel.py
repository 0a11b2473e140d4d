"""Cancel work when the HTTP client goes away (vLLM's `with_cancellation`, for raw ASGI)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

from llm_runner.core.errors import ClientGone

T = TypeVar("T")


async def until_disconnected(receive: Receive, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, but cancel it when the client disconnects.

    Starlette does not cancel a handler whose client left, and before a streaming response exists
    nobody listens for `http.disconnect`, so the readiness wait, the queue, the first-token wait and
    the non-stream answer need this. One watcher task; the work runs in the caller's task.
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
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
