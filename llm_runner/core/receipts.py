"""Receipts: what each call was served, kept so that paid can be reconciled with served.

go-livepeer bills a live runner per second (`hour`) or per call (`fixed`) while gateways bill
their users per token from `usage`; neither side sees the other's numbers. The runner is the one
place where a call's tokens and its Livepeer session meet, so it keeps, per `Livepeer-Session-Id`,
the sums of what it served (requests, refusals, prompt and completion tokens, first and last
time), and each recent call's own receipt for a lookup by request id.

Memory is bounded on purpose (a runner lives for months): a session idle longer than the window is
dropped, at most `max_sessions` are kept (the longest idle goes first) and at most `max_receipts`
single receipts; what was dropped is counted, so a reader knows when sums are incomplete.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from llm_runner.core.events import End
from llm_runner.core.request import GenerationRequest

NO_SESSION = ""  # calls that carried no Livepeer-Session-Id (not proxied by an orchestrator)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One call, as its summary line says it."""

    request_id: str
    model_id: str
    face: str
    session: str
    reason: str  # stop | length | error | cancelled | drained, or a refusal: busy | unavailable | invalid
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    total_s: float
    at: float  # wall-clock time it ended (seconds since the epoch)
    served: bool  # False: refused before any work (no tokens, nothing to pay for)

    @classmethod
    def of(cls, request: GenerationRequest, end: End, ttft_s: float, total_s: float, *, served: bool) -> Receipt:
        return cls(
            request.request_id,
            request.model_id,
            request.face,
            request.session,
            end.reason,
            end.prompt_tokens,
            end.completion_tokens,
            ttft_s,
            total_s,
            time.time(),
            served,
        )

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ttft_s"], out["total_s"] = round(self.ttft_s, 4), round(self.total_s, 4)
        return out

    def header(self) -> str:
        """The `LLM-Runner-Receipt` header of a non-stream answer: the numbers, no secret."""
        return (
            f"id={self.request_id}; model={self.model_id}; prompt_tokens={self.prompt_tokens}; "
            f"completion_tokens={self.completion_tokens}; ttft_ms={self.ttft_s * 1e3:.0f}; "
            f"total_ms={self.total_s * 1e3:.0f}"
        )


@dataclass(slots=True)
class SessionUsage:
    """The sums of one session over its life in the window."""

    requests: int = 0  # calls that reached an upstream (served, however they ended)
    refused: int = 0  # calls refused before any work (busy, unavailable, invalid)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_at: float = 0.0
    last_at: float = 0.0

    def add(self, receipt: Receipt) -> None:
        if not self.first_at:
            self.first_at = receipt.at
        self.last_at = receipt.at
        if not receipt.served:
            self.refused += 1
            return
        self.requests += 1
        self.prompt_tokens += receipt.prompt_tokens
        self.completion_tokens += receipt.completion_tokens


class Receipts:
    """Per-session sums and recent receipts, bounded by a window and counts."""

    def __init__(self, window_s: float = 3600.0, max_sessions: int = 10_000, max_receipts: int = 10_000) -> None:
        self.window_s, self.max_sessions, self.max_receipts = window_s, max_sessions, max_receipts
        self.sessions: OrderedDict[str, SessionUsage] = OrderedDict()  # least recently active first
        self.recent: OrderedDict[str, Receipt] = OrderedDict()  # by request id, oldest first
        self.dropped_sessions = 0

    def record(self, receipt: Receipt) -> None:
        """Add one call. O(1) but for the sessions that expire now (each expires once)."""
        usage = self.sessions.get(receipt.session)
        if usage is None:
            usage = self.sessions[receipt.session] = SessionUsage()
        else:
            self.sessions.move_to_end(receipt.session)
        usage.add(receipt)
        if receipt.request_id:
            self.recent[receipt.request_id] = receipt
            if len(self.recent) > self.max_receipts:
                self.recent.popitem(last=False)
        self._expire(receipt.at)

    def _expire(self, now: float) -> None:
        sessions = self.sessions
        while sessions:
            oldest = next(iter(sessions.values()))
            if len(sessions) <= self.max_sessions and now - oldest.last_at <= self.window_s:
                return
            sessions.popitem(last=False)
            self.dropped_sessions += 1

    def find(self, request_id: str) -> Receipt | None:
        return self.recent.get(request_id)

    def usage(self, session: str | None = None, now: float | None = None) -> dict[str, Any]:
        """The sums per session active within the window (one session when `session` is given),
        as `/usage` answers them."""
        self._expire(time.time() if now is None else now)
        chosen = self.sessions.items() if session is None else [(session, self.sessions.get(session))]
        rows = [{"session": name or None, **asdict(usage)} for name, usage in chosen if usage is not None]
        return {
            "window_s": self.window_s,
            "sessions": rows,
            "totals": {
                key: sum(row[key] for row in rows)
                for key in ("requests", "refused", "prompt_tokens", "completion_tokens")
            },
            "dropped_sessions": self.dropped_sessions,
        }
