"""Bearer-token checks (constant-time). Which paths need the token is decided here, once:
go-livepeer sends AUTH_TOKEN on every `llm` call; health and readiness URLs stay open."""

from __future__ import annotations

import hmac

from fastapi import Request

from llm_runner.core.errors import Unauthorized


def bearer_matches(header: str, expected: str | None) -> bool:
    """True when no token is expected, or `header` is `Bearer <expected>`."""
    if not expected:
        return True
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


def check_bearer(header: str, expected: str | None) -> None:
    """Raise Unauthorized unless `header` carries the expected token (or none is expected)."""
    if not bearer_matches(header, expected):
        raise Unauthorized("Invalid bearer token")


async def require_token(request: Request) -> None:
    """FastAPI dependency: the runner's AUTH_TOKEN, when set."""
    check_bearer(request.headers.get("authorization", ""), request.app.state.runtime.settings.auth_token)
