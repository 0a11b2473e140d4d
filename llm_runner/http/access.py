"""Which token a route needs, decided here once for every face, and the constant-time check.

go-livepeer sends AUTH_TOKEN on every `llm` call. A live runner's clients reach its paths through
the orchestrator, which forwards their own `Authorization` header and sends no token of its own:
with AUTH_TOKEN set those paths need it too (secure by default) unless LLM_RUNNER_LIVE_AUTH=false.
Health and readiness stay open: an orchestrator polls them without a token.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from llm_runner.http.route import Access


class TokenSettings(Protocol):
    auth_token: str | None
    live_auth: bool | None
    metrics_open: bool


def required_token(access: Access, settings: TokenSettings) -> str | None:
    """The token a route with this access needs, or None when it is open."""
    token = settings.auth_token or None
    if access is Access.OPEN:
        return None
    if access is Access.LIVE and settings.live_auth is False:
        return None
    if access is Access.METRICS and settings.metrics_open:
        return None
    return token


def bearer_matches(header: str, expected: str) -> bool:
    """True when `header` is `Bearer <expected>`."""
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())
