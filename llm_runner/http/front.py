"""The front door: every request in plain ASGI, straight from the route table to its handler.

Through FastAPI each token-carrying request passes a dozen layers (error and exception middleware,
routing, dependency solving, request/response wrappers, one send wrapper per layer for every
token): more CPU per request than the rest of the relay. Here one lookup finds the route, one check
enforces its token (`access.required_token`), the body is read within its limit, and the handler's
errors leave in its face's shape, with one log line for a refusal and the request counted. FastAPI
only serves its API pages (a route without handler) and the lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_runner.core.errors import BadRequest, ClientGone, RunnerError, Unauthorized
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.http.access import TokenSettings, bearer_matches, required_token
from llm_runner.http.route import Face, Incoming, Reply, Route, header

log = logging.getLogger("llm_runner.front")
refusals = logging.getLogger("llm_runner.refused")
_MAX_REASON = 300


def log_refusal(method: str, path: str, status: int, reason: str) -> None:
    """The one log line of a request refused before any generation (a bad body, a wrong token, an unknown
    path), as the summary line is for the rest: the operator sees why a client got 4xx. Method, path
    (never the query), status and our own message only: no header, so no token, ever."""
    if len(reason) > _MAX_REASON:
        reason = reason[:_MAX_REASON] + "…"
    refusals.info("refused %s %s: %d %s", method, path, status, reason)


class RouteTable:
    """Every route of the service, found by path and method. A path the table lacks is answered by
    the face of the routes it shares the most leading segments with (`/v1/nope` by OpenAI's)."""

    def __init__(self, routes: Iterable[Route], default: Face) -> None:
        self.routes = list(routes)
        self.default = default
        self.exact: dict[str, dict[str, Route]] = {}
        self.prefixed: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            methods = (self.prefixed if route.rest else self.exact).setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"route declared twice: {route.method} {route.path}")
            methods[route.method] = route

    def find(self, path: str) -> tuple[dict[str, Route], str]:
        """The routes of `path` by method, and the rest of the path after a prefix route's."""
        methods = self.exact.get(path)
        if methods is not None:
            return methods, ""
        for prefix, methods in self.prefixed.items():
            if path.startswith(prefix) and len(path) > len(prefix):
                return methods, path[len(prefix) :]
        return {}, ""

    def face_of(self, path: str) -> Face:
        """The face of a path no route has."""
        segments = path.split("/")
        best, face = 0, self.default
        for route in self.routes:
            shared = 0
            for mine, theirs in zip(segments, route.path.split("/"), strict=False):
                if mine != theirs:
                    break
                shared += 1
            if shared > best:
                best, face = shared, route.face
        return face


class FrontDoor:
    """Answers every HTTP request from the table; `fallback` (FastAPI) serves the API pages."""

    def __init__(
        self, table: RouteTable, fallback: ASGIApp, settings: TokenSettings, metrics: RunnerMetrics, max_body: int
    ) -> None:
        self.table, self.fallback, self.settings = table, fallback, settings
        self.metrics, self.max_body = metrics, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan
            await self.fallback(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        methods, rest = self.table.find(path)
        route = methods.get(method)
        if route is None:
            face = next(iter(methods.values())).face if methods else self.table.face_of(path)
            response = face.no_route(method, path, sorted(methods))
            why = f"method not allowed (only {', '.join(sorted(methods))})" if methods else "no such path"
            log_refusal(method, path, response.status_code, why)
            await self._answer(response, "unmatched", scope, receive, send)
            return
        label = route.template
        try:
            self._check_token(route, scope)
            if route.handler is None:
                await self._fallback(label, scope, receive, send)
                return
            body = await self._body(scope, receive) if method == "POST" else b""
            response = await route.handler(Incoming(scope, receive, body, rest))
        except ClientGone:
            return  # nobody to answer; the core has accounted the request
        except RunnerError as exc:
            response = route.face.refuse(exc)
            if not exc.accounted:  # refused before the loop (body, token, model): its one line is here
                log_refusal(method, path, response.status_code, exc.msg)
        except Exception as exc:  # a bug: the face's 500, and the service goes on
            log.exception("%s %s failed", method, path)
            response = route.face.refuse(RunnerError(f"internal error: {type(exc).__name__}: {exc}"))
        await self._answer(response, label, scope, receive, send)

    def _check_token(self, route: Route, scope: Scope) -> None:
        token = required_token(route.access, self.settings)
        if token is None:
            return
        if not bearer_matches(header(scope, b"authorization"), token):
            raise Unauthorized("Invalid bearer token")

    async def _answer(self, response: Reply, label: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await response(scope, receive, send)
        finally:
            self.metrics.requests.labels(label, str(response.status_code)).inc()

    async def _fallback(self, label: str, scope: Scope, receive: Receive, send: Send) -> None:
        status = "500"

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.fallback(scope, receive, counted)
        finally:
            self.metrics.requests.labels(label, status).inc()

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, refused past the limit before it is all buffered."""
        limit = self.max_body
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise BadRequest(too_large(int(value), limit))
        parts: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone("client disconnected while sending the request")
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise BadRequest(too_large(size, limit))
            parts.append(part)
            more = message.get("more_body", False)
        return parts[0] if len(parts) == 1 else b"".join(parts)


class RunnerApp(FastAPI):
    """FastAPI (its OpenAPI document, API pages and lifespan) behind the front door."""

    front_door: FrontDoor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front_door is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front_door(scope, receive, send)

    async def fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI itself: the front door's fallback."""
        await super().__call__(scope, receive, send)


def too_large(size: int, limit: int) -> str:
    return f"request body too large: {size} bytes > limit {limit} (LLM_RUNNER_MAX_BODY_BYTES)"
