"""Errors that escape the routes, each in the shape of the face whose path it is: OpenAI's for
`/v1/...` (404 and 405 included, as the `openai` client expects), Livepeer's 400/401/500 for
everything else (go-livepeer reads any other status as a silent success)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_runner.core.errors import RunnerError
from llm_runner.livepeer.errors import error_response, livepeer_error
from llm_runner.openai.errors import as_openai, openai_error

log = logging.getLogger("llm_runner.refused")
_MAX_REASON = 300


def log_refusal(method: str, path: str, status: int, reason: str) -> None:
    """The one log line of a request refused before any generation (a bad body, a wrong token, an unknown
    path), as the summary line is for the rest: the operator sees why a client got 4xx. Method, path
    (never the query), status and our own message only: no header, so no token, ever."""
    if len(reason) > _MAX_REASON:
        reason = reason[:_MAX_REASON] + "…"
    log.info("refused %s %s: %d %s", method, path, status, reason)


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1" or "/v1/" in path


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RunnerError)
    async def _runner_error(request: Request, exc: RunnerError) -> JSONResponse:
        response = as_openai(exc) if is_openai_path(request.url.path) else livepeer_error(exc)
        if not exc.accounted:
            log_refusal(request.method, request.url.path, response.status_code, exc.msg)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _http_error_response(request, exc)
        log_refusal(request.method, request.url.path, response.status_code, str(exc.detail))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        message = f"internal error: {type(exc).__name__}: {exc}"
        return (
            openai_error(500, message, "api_error")
            if is_openai_path(request.url.path)
            else error_response(500, message)
        )


def _http_error_response(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """A routing or framework error (404, 405...) in the shape of the face whose path it is."""
    path = request.url.path
    if is_openai_path(path):
        if exc.status_code == 404:
            return openai_error(404, f"no such endpoint: {request.method} {path}", "not_found_error")
        if exc.status_code == 405:
            return openai_error(405, f"method {request.method} not allowed on {path}", "invalid_request_error")
        return openai_error(exc.status_code, str(exc.detail), "invalid_request_error")
    # 404/405 from routing and friends: keep them in the contract's vocabulary.
    if exc.status_code in (404, 405):
        return error_response(
            400,
            f"no {request.method} {path} here ({exc.detail}); the runner serves GET /health, "
            "/version, /hardware/info and POST /llm, also under /models/<slug>/",
        )
    if exc.status_code in (400, 401):
        return error_response(exc.status_code, str(exc.detail))
    status = 400 if exc.status_code < 500 else 500
    return error_response(status, f"{exc.detail} ({exc.status_code})")
