"""What a face declares: its routes (`Route`), what a handler gets (`Incoming`) and answers
(`Reply`), how the face words an error (`Face`), and which token a route needs (`Access`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from llm_runner.core.errors import BadRequest, RunnerError, describe_validation_errors, validation_param

Body = TypeVar("Body", bound=BaseModel)


class Reply(Protocol):
    """What a handler answers with: a Starlette response, or the SSE response."""

    status_code: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def header(scope: Scope, name: bytes) -> str:
    """The request's first header `name` (lower case), or ""."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


class Incoming:
    """What a handler gets: the ASGI scope and receive, the whole body, and the rest of the path
    after a route's prefix (`/v1/models/<model id>`)."""

    __slots__ = ("body", "receive", "rest", "scope")

    def __init__(self, scope: Scope, receive: Receive, body: bytes, rest: str = "") -> None:
        self.scope, self.receive, self.body, self.rest = scope, receive, body, rest

    def header(self, name: bytes) -> str:
        """The first header `name` (lower case), or ""."""
        return header(self.scope, name)

    def query(self, name: str) -> str | None:
        """The first query parameter `name`, or None."""
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(name)
        return values[0] if values else None

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


Handler = Callable[[Incoming], Awaitable[Reply]]


@dataclass(frozen=True)
class Face:
    """How one face words what the shell refuses: a core error, and a path or method it lacks."""

    name: str
    refuse: Callable[[RunnerError], Reply]
    no_route: Callable[[str, str, list[str]], Reply]  # (method, path, the methods the path has)


class Access(Enum):
    """Which token a route needs; `llm_runner.http.access.required_token` decides, once."""

    OPEN = "open"  # health and readiness: an orchestrator polls them without a token
    RUNNER = "runner"  # the `llm` contract and the root OpenAI paths: AUTH_TOKEN
    LIVE = "live"  # a model's live-runner paths: AUTH_TOKEN unless LLM_RUNNER_LIVE_AUTH=false
    OPERATOR = "operator"  # /status, /usage, the API pages: AUTH_TOKEN
    METRICS = "metrics"  # /metrics: AUTH_TOKEN unless LLM_RUNNER_METRICS_OPEN


@dataclass(frozen=True)
class Route:
    """One path and method of the service. `handler` None: FastAPI serves it (its API pages), after
    the same token check. `rest` names a last path parameter (`model_id`): the path is then a
    prefix, and what follows it is the handler's `Incoming.rest`. `body`, `response` and `doc` only
    describe the route in the OpenAPI document."""

    path: str
    method: str
    handler: Handler | None
    face: Face
    access: Access
    body: type[BaseModel] | None = None
    rest: str = ""
    response: type[BaseModel] | None = None
    doc: dict[str, Any] | None = field(default=None, hash=False)  # add_api_route's keywords; None: undocumented

    @property
    def template(self) -> str:
        """The path as documented and labelled in metrics: `/v1/models/{model_id}`."""
        return f"{self.path}{{{self.rest}}}" if self.rest else self.path
