"""Pure ASGI middleware (BaseHTTPMiddleware would hide client disconnects from the routes)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_runner.auth import bearer_matches
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.errors import log_refusal
from llm_runner.livepeer.errors import error_response


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
    """With AUTH_TOKEN set, the operator pages (/status, /usage, /metrics, /docs, /redoc, /openapi.json)
    need it too; only the health and readiness URLs stay open. LLM_RUNNER_METRICS_OPEN lets an
    in-network Prometheus scrape /metrics without it."""

    def __init__(self, app: ASGIApp, token: str | None, metrics_open: bool) -> None:
        self.app, self.token = app, token
        self.guarded = {"/status", "/usage", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
        if not metrics_open:
            self.guarded.add("/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token and scope["type"] == "http" and scope["path"] in self.guarded:
            header = dict(scope["headers"]).get(b"authorization", b"").decode(errors="replace")
            if not bearer_matches(header, self.token):
                response = error_response(401, "Invalid bearer token")
                log_refusal(scope["method"], scope["path"], 401, "Invalid bearer token")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
