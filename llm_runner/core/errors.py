"""Typed errors the core raises; each face turns them into its own status codes and shapes
(Livepeer: 400/401/500 `{"detail": {"msg"}}`; OpenAI: `{"error": {...}}` with 400/401/404/429/503)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class RunnerError(Exception):
    """Base of every error we raise on purpose; `status` is the Livepeer status (400, 401 or 500)."""

    status = 500
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
    status = 400


class Unsupported(BadRequest):
    """A parameter the runner cannot honour: refused rather than silently dropped."""


class Unauthorized(RunnerError):
    status = 401


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
        if kind == "upstream_4xx":  # the upstream refused what was asked: the client's to fix, not a retry
            self.status = 400

    @property
    def retryable(self) -> bool:
        """Worth trying another upstream, when nothing has been sent to the client yet."""
        return self.kind in ("unreachable", "truncated", "upstream_5xx", "oom", "not_found", "timeout")


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One readable line per problem, e.g. `messages.0.role: Input should be 'system', ...`."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        if err.get("type") == "json_invalid":
            parts.append("request body is not valid JSON")
            continue
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def validation_param(errors: Sequence[Any]) -> str | None:
    """The field a validation error is about, as OpenAI names it in `error.param` (`temperature`,
    `messages.0.role`): the path all errors share (one union field fails once per alternative),
    else the first error's."""
    locs = [[str(p) for p in err.get("loc", ())] for err in errors]
    if not locs:
        return None
    common = locs[0]
    for loc in locs[1:]:
        n = 0
        while n < min(len(common), len(loc)) and common[n] == loc[n]:
            n += 1
        common = common[:n]
    return ".".join(common or locs[0]) or None
