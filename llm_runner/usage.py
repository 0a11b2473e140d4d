"""Receipts over HTTP: the headers each answer carries, and `GET /usage` for reconciliation.

Every answer carries `LLM-Runner-Request-Id` (also in the body's `id`, `chatcmpl-<id>`, and in the
summary log line). A non-stream answer also carries `LLM-Runner-Receipt` with its tokens and times.
A stream's headers leave before its tokens exist, and HTTP trailers are dropped by most clients
and proxies, so a stream's receipt is its last chunk's `usage`, and `GET /usage?request_id=<id>`
afterwards. `GET /usage` sums per Livepeer session (`?session=` for one) over the window: what a
gateway or operator compares with what the orchestrator was paid. It needs AUTH_TOKEN, as /status.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from llm_runner.core.loop import Generation
from llm_runner.core.receipts import Receipts

REQUEST_ID_HEADER = "LLM-Runner-Request-Id"
RECEIPT_HEADER = "LLM-Runner-Receipt"


def request_id_headers(generation: Generation) -> list[tuple[bytes, bytes]]:
    """A stream's extra header (raw, for the SSE response): its request id."""
    return [(REQUEST_ID_HEADER.lower().encode(), generation.request.request_id.encode())]


def receipt_headers(generation: Generation) -> dict[str, str]:
    """A non-stream answer's headers: its request id and its receipt."""
    headers = {REQUEST_ID_HEADER: generation.request.request_id}
    if generation.receipt is not None:
        headers[RECEIPT_HEADER] = generation.receipt.header()
    return headers


def usage_router(receipts: Receipts) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/usage")
    async def usage(session: str | None = None, request_id: str | None = None) -> JSONResponse:
        if request_id is not None:
            receipt = receipts.find(request_id.removeprefix("chatcmpl-"))
            if receipt is None:
                return JSONResponse({"detail": {"msg": f"no receipt for request {request_id!r} (expired?)"}}, 404)
            return JSONResponse(receipt.as_json())
        return JSONResponse(receipts.usage(session))

    return router
