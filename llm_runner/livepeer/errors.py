"""Livepeer's error shape and the only three statuses go-livepeer understands: 400, 401 and 500.

Anything else (FastAPI's 422, a 404, a 503) reaches a Livepeer gateway as a silent `null` success,
so every error on a Livepeer path leaves as `{"detail": {"msg": ...}}` with one of those three.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llm_runner.core.errors import Busy, NotReady, RunnerError, Unauthorized
from llm_runner.http.route import Face


def error_response(status: int, msg: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse({"detail": {"msg": msg}}, status_code=status, headers=headers)


def refuse(exc: RunnerError) -> JSONResponse:
    """A core error in Livepeer's shape; busy and not-ready say when to come back."""
    status = 401 if isinstance(exc, Unauthorized) else 400 if exc.client_fault else 500
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Busy | NotReady) else None
    return error_response(status, exc.msg, headers)


def no_route(method: str, path: str, allowed: list[str]) -> JSONResponse:
    """A path or method the runner lacks: 400 (a 404 or 405 would read as a silent success)."""
    why = f"only {', '.join(allowed)} there" if allowed else "no such path"
    return error_response(
        400,
        f"no {method} {path} here ({why}); the runner serves GET /health, /version, /hardware/info "
        "and POST /llm, also under /models/<slug>/",
    )


LIVEPEER = Face("livepeer", refuse, no_route)
