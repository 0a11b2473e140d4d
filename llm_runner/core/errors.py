"""Typed errors and the only three statuses go-livepeer understands: 400, 401 and 500.

Anything else (FastAPI's 422, a 404, a 503) reaches a Livepeer gateway as a silent `null` success,
so every error that leaves the service is mapped here to `{"detail": {"msg": ...}}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class RunnerError(Exception):
    """Base of every error we raise on purpose; `status` is 400, 401 or 500."""

    status = 500

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class BadRequest(RunnerError):
    status = 400


class Unauthorized(RunnerError):
    status = 401


class Busy(RunnerError):
    """All generation slots are taken and the wait queue is full (or the wait timed out)."""


class NotReady(RunnerError):
    """The model is still loading, or Ollama is unreachable, after the bounded wait."""


class UpstreamError(RunnerError):
    """Ollama failed; `kind` feeds metrics (unreachable, not_found, oom, timeout, truncated, ...)."""

    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind


def error_body(msg: str) -> dict[str, dict[str, str]]:
    return {"detail": {"msg": msg}}


def error_response(status: int, msg: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(msg), status_code=status, headers=headers)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One readable line per problem, e.g. `messages.0.role: Input should be 'system', ...`."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        if err.get("type") == "json_invalid":
            parts.append("request body is not valid JSON")
            continue
        if err.get("type") == "missing" and not loc:
            parts.append("request body is missing (send JSON with a `messages` list)")
            continue
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RunnerError)
    async def _runner_error(_: Request, exc: RunnerError) -> JSONResponse:
        return error_response(exc.status, exc.msg)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, describe_validation_errors(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 404/405 from routing and friends: keep them in the contract's vocabulary.
        if exc.status_code in (404, 405):
            return error_response(
                400,
                f"no {request.method} {request.url.path} here ({exc.detail}); the runner serves GET /health, "
                "/version, /hardware/info and POST /llm, also under /models/<slug>/",
            )
        if exc.status_code in (400, 401):
            return error_response(exc.status_code, str(exc.detail))
        status = 400 if exc.status_code < 500 else 500
        return error_response(status, f"{exc.detail} ({exc.status_code})")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
