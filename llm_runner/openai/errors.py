"""OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`, with the statuses the
`openai` client and gateways act on (429/503 carry Retry-After: try again, or elsewhere)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llm_runner.core.errors import Busy, NotReady, RunnerError, Unauthorized, UnknownModel
from llm_runner.http.route import Face


def openai_error(
    status: int, message: str, kind: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status, headers=headers)


def refuse(exc: RunnerError) -> JSONResponse:
    """A core error in OpenAI's shape and status."""
    if isinstance(exc, Unauthorized):
        return openai_error(401, exc.msg, "authentication_error")
    if isinstance(exc, UnknownModel):
        return openai_error(404, exc.msg, "not_found_error", exc.param)
    if exc.client_fault:  # bad input, or an upstream refusing what was asked (tools on a model without)
        return openai_error(400, exc.msg, "invalid_request_error", exc.param)
    if isinstance(exc, Busy):
        return openai_error(429, exc.msg, "rate_limit_error", headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, NotReady):
        return openai_error(503, exc.msg, "service_unavailable", headers={"Retry-After": str(exc.retry_after_s)})
    return openai_error(500, exc.msg, "api_error")


def no_route(method: str, path: str, allowed: list[str]) -> JSONResponse:
    """404 for a path the API lacks, 405 for a method (what the `openai` client expects)."""
    if allowed:
        return openai_error(405, f"method {method} not allowed on {path}", "invalid_request_error")
    return openai_error(404, f"no such endpoint: {method} {path}", "not_found_error")


OPENAI = Face("openai", refuse, no_route)
