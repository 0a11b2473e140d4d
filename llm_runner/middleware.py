"""Pure ASGI middleware (BaseHTTPMiddleware would hide client disconnects from the routes)."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_runner.auth import bearer_matches
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.livepeer.errors import error_body, error_response


class JSONByDefault:
    """Read POST bodies as JSON whatever their content-type, as Ollama does: `curl -d` sends
    `application/x-www-form-urlencoded`, and an operator's first curl must just work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope["headers"] = [*headers, (b"content-type", b"application/json")]
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuse bodies over the limit with 400 before they are buffered (pure ASGI)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        max_bytes = self.max_bytes
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise HTTPException(400, _too_large_message(seen, max_bytes))
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, size: int) -> None:
        body = json.dumps(error_body(_too_large_message(size, self.max_bytes))).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large_message(size: int, limit: int) -> str:
    return f"request body too large: {size} bytes > limit {limit} (LLM_RUNNER_MAX_BODY_BYTES)"


class RequestMetricsMiddleware:
    """Counts requests by route template and status."""

    def __init__(self, app: ASGIApp, metrics: RunnerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = "500"

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = _endpoint_label(scope)
            self.metrics.requests.labels(endpoint, status).inc()


def _endpoint_label(scope: Scope) -> str:
    """The route's path template, so that per-model prefixes do not explode label cardinality."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class OperatorAuth:
    """With AUTH_TOKEN set, the operator pages (/status, /metrics, /docs, /redoc, /openapi.json)
    need it too; only the health and readiness URLs stay open. LLM_RUNNER_METRICS_OPEN lets an
    in-network Prometheus scrape /metrics without it."""

    def __init__(self, app: ASGIApp, token: str | None, metrics_open: bool) -> None:
        self.app, self.token = app, token
        self.guarded = {"/status", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
        if not metrics_open:
            self.guarded.add("/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token and scope["type"] == "http" and scope["path"] in self.guarded:
            header = dict(scope["headers"]).get(b"authorization", b"").decode(errors="replace")
            if not bearer_matches(header, self.token):
                response = error_response(401, "Invalid bearer token")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
