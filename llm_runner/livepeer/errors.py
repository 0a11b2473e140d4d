"""Livepeer's error shape and the only three statuses go-livepeer understands: 400, 401 and 500.

Anything else (FastAPI's 422, a 404, a 503) reaches a Livepeer gateway as a silent `null` success,
so every error on a Livepeer path leaves as `{"detail": {"msg": ...}}` with one of those three.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llm_runner.core.errors import Busy, NotReady, RunnerError


def error_body(msg: str) -> dict[str, dict[str, str]]:
    return {"detail": {"msg": msg}}


def error_response(status: int, msg: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(error_body(msg), status_code=status, headers=headers)


def livepeer_error(exc: RunnerError) -> JSONResponse:
    """A core error in Livepeer's shape; busy and not-ready say when to come back."""
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Busy | NotReady) else None
    return error_response(exc.status, exc.msg, headers)
