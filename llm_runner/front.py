"""The front door: the token routes in plain ASGI, every other path through FastAPI.

`POST /llm`, `POST /v1/chat/completions` and `POST /v1/responses` (and their `/models/<slug>/` forms) carry every
token. Through FastAPI each such request passes a dozen layers (error and exception middleware,
routing, dependency solving, request/response wrappers, and one send wrapper per layer for every
token): more CPU per request than the rest of the relay. Here each such path maps straight to its
face's handler, with the same body limit, errors in the face's shape and request metrics.
FastAPI still documents these paths (`declaration`) and serves everything else.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from llm_runner.auth import check_bearer
from llm_runner.core.errors import BadRequest, ClientGone, RunnerError, describe_validation_errors, validation_param
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.errors import log_refusal

log = logging.getLogger("llm_runner.front")
Body = TypeVar("Body", bound=BaseModel)


class Incoming:
    """What a front-door handler gets: the ASGI scope and receive, and the whole body."""

    __slots__ = ("body", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, body: bytes) -> None:
        self.scope, self.receive, self.body = scope, receive, body

    def header(self, name: bytes) -> str:
        """The first header `name` (lower case), or ""."""
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return ""

    def check_token(self, token: str | None) -> None:
        """Raise Unauthorized unless the request carries `token` (when one is set)."""
        if token:
            check_bearer(self.header(b"authorization"), token)

    def parse(self, model: type[Body]) -> Body:
        """The body validated as `model` (JSON whatever the content-type, as Ollama reads it:
        an operator's first `curl -d` sends a form type)."""
        if not self.body.strip():
            raise BadRequest("invalid request: the request body is missing (send JSON with a `messages` list)")
        try:
            return model.model_validate_json(self.body)
        except ValidationError as exc:
            problems = exc.errors()
            raise BadRequest(
                describe_validation_errors(problems, self.body), param=validation_param(problems, self.body)
            ) from exc


class Reply(Protocol):
    """What a handler answers with: a Starlette response, or the faces' SSE response."""

    status_code: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


Handler = Callable[[Incoming], Awaitable[Reply]]


@dataclass(frozen=True)
class FrontRoute:
    """One token path: its handler, and how its face words an error."""

    handler: Handler
    refuse: Callable[[RunnerError], Reply]


class FrontDoor:
    """Answers POSTs to the token paths; `RunnerApp` asks it first for every request."""

    def __init__(self, routes: dict[str, FrontRoute], metrics: RunnerMetrics, max_body: int) -> None:
        self.routes, self.metrics, self.max_body = routes, metrics, max_body

    def route(self, scope: Scope) -> FrontRoute | None:
        if scope["type"] == "http" and scope["method"] == "POST":
            return self.routes.get(scope["path"])
        return None

    async def serve(self, route: FrontRoute, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await route.handler(Incoming(scope, receive, await self._body(scope, receive)))
        except ClientGone:
            return  # nobody to answer; the core has accounted the request
        except RunnerError as exc:
            response = route.refuse(exc)
            if not exc.accounted:  # refused before the loop (body, token, model): its one line is here
                log_refusal(scope["method"], scope["path"], response.status_code, exc.msg)
        except Exception as exc:  # a bug: the face's 500, and the service goes on
            log.exception("%s %s failed", scope["method"], scope["path"])
            response = route.refuse(RunnerError(f"internal error: {type(exc).__name__}: {exc}"))
        try:
            await response(scope, receive, send)
        finally:
            self.metrics.requests.labels(scope["path"], str(response.status_code)).inc()

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
    """FastAPI, with the front door asked first (set `front_door` before serving)."""

    front_door: FrontDoor | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.front_door.route(scope) if self.front_door else None
        if route is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front_door.serve(route, scope, receive, send)  # type: ignore[union-attr]


def declaration(body: type[BaseModel]) -> Callable[..., Awaitable[None]]:
    """An endpoint for FastAPI to document a front-door path with (its body schema, its errors).
    FastAPI never runs it: the front door answers that path before FastAPI sees it."""

    async def endpoint(**_: object) -> None:
        raise AssertionError("served by the front door")

    parameter = inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body)
    endpoint.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
    return endpoint


def too_large(size: int, limit: int) -> str:
    return f"request body too large: {size} bytes > limit {limit} (LLM_RUNNER_MAX_BODY_BYTES)"
