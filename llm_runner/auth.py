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


def token_ok(request: Request, expected: str | None) -> bool:
    return bearer_matches(request.headers.get("authorization", ""), expected)


async def require_token(request: Request) -> None:
    """FastAPI dependency: the runner's AUTH_TOKEN, when set."""
    if not token_ok(request, request.app.state.runtime.settings.auth_token):
        raise Unauthorized("Invalid bearer token")
