"""The receipt headers every answer carries.

Every answer carries `LLM-Runner-Request-Id` (also in the body's `id`, `chatcmpl-<id>`, and in the
summary log line). A non-stream answer also carries `LLM-Runner-Receipt` with its tokens and times.
A stream's headers leave before its tokens exist, and HTTP trailers are dropped by most clients
and proxies, so a stream's receipt is its last chunk's `usage`, and `GET /usage?request_id=<id>`
afterwards (`operator.py`).
"""

from __future__ import annotations

from llm_runner.core.generation import Generation

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
