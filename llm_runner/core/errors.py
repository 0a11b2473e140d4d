"""Typed errors the core raises, face-neutral: no HTTP status here. Each face maps them to its own
statuses and shape (`livepeer/errors.py`: 400/401/500 `{"detail": {"msg"}}`; `openai/errors.py`:
`{"error": {...}}` with 400/401/404/429/503), with the same verb, `refuse`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any


class ConfigurationError(ValueError):
    """Settings that cannot work; raised before the service starts listening."""


class RunnerError(Exception):
    """Base of every error we raise on purpose: a failure of ours or of an upstream, unless a
    subclass says the client is at fault."""

    client_fault = False  # the request is wrong: the client's to fix, not worth a retry
    retry_after_s = 0  # what Busy and NotReady put in Retry-After
    # Set once the generation loop has written this request's summary line: the HTTP layer then logs
    # nothing more, and logs one line itself for a refusal that never reached the loop (a bad body...).
    accounted = False

    def __init__(self, msg: str, *, param: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.param = param  # the request field at fault, when there is one
        if retry_after_s is not None:
            self.retry_after_s = max(1, math.ceil(retry_after_s))


class BadRequest(RunnerError):
    client_fault = True


class Unsupported(BadRequest):
    """A parameter the runner cannot honour: refused rather than silently dropped."""


class Unauthorized(RunnerError):
    """The request lacks the token its route needs."""

    client_fault = True


class UnknownModel(BadRequest):
    """The request names a model this path does not serve."""


class ClientGone(BadRequest):
    """The client disconnected before we answered; nobody will read this error."""


class Busy(RunnerError):
    """Every slot is taken and the wait queue is full (or the wait timed out)."""

    retry_after_s = 1


class NotReady(RunnerError):
    """No upstream can serve the model now: loading, down, or the runner is shutting down."""

    retry_after_s = 5


class UpstreamError(RunnerError):
    """An upstream failed; `kind` feeds metrics (unreachable, not_found, oom, timeout, truncated, ...)."""

    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind
        # The upstream refused what was asked (tools on a model without): the client's to fix.
        self.client_fault = kind == "upstream_4xx"

    @property
    def retryable(self) -> bool:
        """Worth trying another upstream, when nothing has been sent to the client yet."""
        return self.kind in ("unreachable", "truncated", "upstream_5xx", "oom", "not_found", "timeout")


def describe_validation_errors(errors: Sequence[Any], raw: bytes | None = None) -> str:
    """One readable line per problem, e.g. `messages.0.role: Input should be 'system', ...`;
    `raw` (the request body) lets each be named by the path the request holds."""
    if any(err.get("type") == "json_invalid" for err in errors):
        return "invalid request: request body is not valid JSON"
    parts = [f"{_dotted(path) or 'body'}: {err.get('msg', 'invalid')}" for err, path in _deepest(errors, raw)]
    return "invalid request: " + "; ".join(parts)


def validation_param(errors: Sequence[Any], raw: bytes | None = None) -> str | None:
    """The field a validation error is about, as OpenAI names it in `error.param` (`temperature`,
    `messages.0.role`), always a path the request holds: the path all errors share (one union
    field fails once per alternative), else the first error's."""
    paths = [path for _, path in _deepest(errors, raw)]
    if not paths:
        return None
    common = paths[0]
    for path in paths[1:]:
        n = 0
        while n < min(len(common), len(path)) and common[n] == path[n]:
            n += 1
        common = common[:n]
    path = common or paths[0]
    return _dotted(path) if path else None


_UNREAD = object()


def _deepest(errors: Sequence[Any], raw: bytes | None) -> list[tuple[Any, list[str | int]]]:
    """Each error with its path through the request, less those about a field another error
    looks inside: of a union's alternatives, the one that got furthest tells what is wrong
    (the unknown key in a content part, not "content is not a string")."""
    try:
        body = _UNREAD if raw is None else json.loads(raw)
    except ValueError:
        body = _UNREAD
    held = [(err, _held_path(err, body)) for err in errors]
    paths = [path for _, path in held]
    return [(err, p) for err, p in held if not any(len(q) > len(p) and q[: len(p)] == p for q in paths)]


def _held_path(err: Any, body: Any) -> list[str | int]:
    """The error's location as a path through the request body. pydantic puts a union
    alternative's name in `loc` (`content`, `list[ContentPart]`, `0`, `bogus`); the request has no
    such key, so steps the body does not hold are left out, except the missing field itself."""
    loc = list(err.get("loc", ()))
    if body is _UNREAD:
        return loc
    path: list[str | int] = []
    node = body
    for i, step in enumerate(loc):
        key = isinstance(node, dict) and isinstance(step, str) and step in node
        index = isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        if key or index:
            node = node[step]
        elif not (err.get("type") == "missing" and i == len(loc) - 1):
            continue
        path.append(step)
    return path


def _dotted(path: list[str | int]) -> str:
    """`messages.0.content`; a key that is empty or holds a dot is written as JSON (`""`,
    `stream_options."a.b"`), so the path names it unambiguously."""
    return ".".join(json.dumps(s) if isinstance(s, str) and (not s or "." in s) else str(s) for s in path)
