"""One runner in the stand-in orchestrator's registry (go-livepeer's liveRunner), and the Go helpers for
its ids, secrets and durations (live_runner.go, v0.9.1).

This module does not import llm_runner (see tests/orchestrator_rules.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any


def go_duration(seconds: float) -> str:
    """time.Duration.String(): 5s, 20s, 200ms, 1m30s, 1h0m0s."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)

    def frac(value: int, unit: int) -> str:
        whole, rest = divmod(value, unit)
        digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{frac(ns, 1000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{frac(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = frac(rest, 10**9) + "s"
    if hours:
        text = f"{hours}h{minutes}m{text}"
    elif minutes:
        text = f"{minutes}m{text}"
    return sign + text


def b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def random_id(prefix: str) -> str:
    return prefix + b32(secrets.token_bytes(5))  # live_runner.go:37, 1678-1680


def derive_secret(seed: bytes, label: str) -> str:
    return b32(hmac.new(seed, label.encode(), hashlib.sha256).digest())  # live_runner.go:1697-1705


def valid_secret(got: str, want: str) -> bool:
    return hmac.compare_digest(got.encode(), want.encode())


@dataclass
class Runner:
    runner_id: str
    static: bool
    route: str
    req: dict[str, Any]
    seed: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    heartbeat_secret: str = field(default="", repr=False)
    health_url: str = ""
    healthy_status_code: int = 200
    last_heartbeat: float = field(default_factory=time.monotonic)
    removed: bool = False
    removed_reason: str = ""
    stale: bool = False  # /_forget: the next heartbeat gets 404
    sessions: dict[str, float] = field(default_factory=dict)
    # counters for /_stats
    checks: int = 0
    failed_checks: int = 0
    sessions_reserved: int = 0
    sessions_completed: int = 0
    sessions_released: int = 0  # released by the orchestrator: failed health, expiry, unregister, forget
    rejected_full: int = 0
    registrations: int = 0
    heartbeats: int = 0
    last_payload: dict[str, Any] | None = None
    registered_at: float = field(default_factory=time.time)

    @property
    def status(self) -> str:
        return self.req.get("status", "")

    def ready(self) -> bool:
        return self.status in ("", "ready")  # isReadyStatus, live_runner.go:1819-1821

    def release_all(self) -> None:
        self.sessions_released += len(self.sessions)
        self.sessions.clear()

    def stats(self, ttl: float, now: float) -> dict[str, Any]:
        expired = not self.static and (self.stale or now - self.last_heartbeat > ttl)
        return {
            "runner_id": self.runner_id,
            "route": self.route,
            "label": self.req.get("label", ""),
            "static": self.static,
            "registered": not self.removed and not expired,
            "removed": self.removed,
            "removed_reason": self.removed_reason,
            "expired": expired,
            "status": self.status,
            "ready": self.ready() and not self.removed and not expired,
            "app": self.req.get("app"),
            "mode": self.req.get("mode"),
            "runner_url": self.req.get("runner_url"),
            "health_url": self.health_url,
            "capacity": self.req.get("capacity"),
            "in_use": len(self.sessions),
            "session_ids": sorted(self.sessions, key=lambda s: self.sessions[s]),
            "checks": self.checks,
            "failed_checks": self.failed_checks,
            "sessions_reserved": self.sessions_reserved,
            "sessions_completed": self.sessions_completed,
            "sessions_released": self.sessions_released,
            "rejected_full": self.rejected_full,
            "registrations": self.registrations,
            "heartbeats": self.heartbeats,
            "last_heartbeat_age_s": round(now - self.last_heartbeat, 3),
            "last_heartbeat": self.last_payload,
        }
