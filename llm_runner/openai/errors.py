"""OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`, with the statuses the
`openai` client and gateways act on (429/503 carry Retry-After: try again, or elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from llm_runner.core.errors import Busy, NotReady, RunnerError, Unauthorized


def openai_error(
    status: int, message: str, kind: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status, headers=headers)


def as_openai(exc: RunnerError) -> JSONResponse:
    if isinstance(exc, Unauthorized):
        return openai_error(401, exc.msg, "authentication_error")
    if exc.status == 400:  # bad input, or an upstream refusing what was asked (tools on a model without)
        return openai_error(400, exc.msg, "invalid_request_error", exc.param)
    if isinstance(exc, Busy):
        return openai_error(429, exc.msg, "rate_limit_error", headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, NotReady):
        return openai_error(503, exc.msg, "service_unavailable", headers={"Retry-After": str(exc.retry_after_s)})
    return openai_error(500, exc.msg, "api_error")


def validation_param(errors: Sequence[Any]) -> str | None:
    """The field a validation error is about, as OpenAI names it in `error.param` (`temperature`,
    `messages.0.role`): the path all errors share (one union field fails once per alternative),
    else the first error's."""
    locs = [[str(p) for p in err.get("loc", ()) if p != "body"] for err in errors]
    if not locs:
        return None
    common = locs[0]
    for loc in locs[1:]:
        n = 0
        while n < min(len(common), len(loc)) and common[n] == loc[n]:
            n += 1
        common = common[:n]
    return ".".join(common or locs[0]) or None
