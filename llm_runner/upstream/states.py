"""Readiness facts, per upstream × model: what /health, the readiness URL, /status, the router and
the fail-fast rule all read. Kept by the lifecycle; nothing here talks to an upstream."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("llm_runner.lifecycle")

LOADING, OK, ERROR = "LOADING", "OK", "ERROR"
# Phases that are making progress toward serving (worth waiting for), and those that are not.
WAITING, DOWN, CHECKING, PULLING, WARMING, READY, MISSING, FAILED, CANARY = (
    "waiting",
    "down",
    "checking",
    "pulling",
    "warming",
    "ready",
    "missing",
    "failed",
    "canary",  # the process answers but its GPU does not generate
)
PULL_STALL_S = 60.0  # a pull whose bytes have not moved for this long is not progress


@dataclass
class ModelState:
    """One model on one upstream."""

    model_id: str
    tag: str
    upstream: str
    status: str = LOADING
    phase: str = WAITING
    detail: str = "waiting for the upstream"
    capabilities: tuple[str, ...] = ()
    quantization: str = ""
    progress_at: float = field(default_factory=time.monotonic)
    # residency (see residency.py): in the upstream's memory now, and how much of it on the CPU
    resident: bool = False
    offload: float = 0.0
    size_mb: int = 0  # what /api/ps said it takes once loaded (0: not seen loaded yet)
    in_flight: int = 0  # generations of this model running on this upstream
    evicting: bool = False  # being drained to make room for another model: no new generations
    load_s: float | None = None  # the last load's seconds, as measured
    last_used: float = field(default_factory=time.monotonic)  # its last generation (or canary) started
    canary_failures: int = 0

    def set(self, status: str, phase: str, detail: str) -> bool:
        """Change state; True when the status changed."""
        changed = status != self.status
        if changed or detail != self.detail:
            level = logging.ERROR if status == ERROR else logging.INFO
            log.log(level, "%s (%s) on %s: %s %s", self.model_id, self.tag, self.upstream, status, detail)
        self.status, self.phase, self.detail = status, phase, detail
        self.progress_at = time.monotonic()
        return changed

    @property
    def progressing(self) -> bool:
        if self.phase in (CHECKING, WARMING):
            return True
        return self.phase == PULLING and time.monotonic() - self.progress_at < PULL_STALL_S


@dataclass
class UpstreamHealth:
    """One upstream: reachable or down since when, and its in-flight generations."""

    name: str
    slots: int
    version: str | None = None
    down_since: float | None = None  # wall-clock time it was found down
    last_error: str = ""
    in_flight: int = 0
    models: dict[str, ModelState] = field(default_factory=dict)
    vram_mb: int | None = None  # the memory the served models share (None: not known)
    vram_source: str = ""  # setting, NVML or observed
    swapping: bool = False  # the served models do not all fit: the runner decides which are loaded
    swaps: int = 0
    unplanned_unloads: int = 0  # models the upstream unloaded that the runner did not ask it to

    def mark_down(self, error: str) -> bool:
        """True when it was up (or unknown) until now. A model that is an ERROR because the
        upstream lacked it waits for the upstream's return with the others: it may come back
        serving it (an engine restarted with the right model)."""
        was_up = self.down_since is None
        if was_up:
            self.down_since = time.time()
            log.warning("upstream %s is down: %s", self.name, error)
        self.version, self.last_error = None, error
        for state in self.models.values():
            state.resident = False
            if state.status != ERROR or state.phase == MISSING:
                state.set(LOADING, DOWN, f"upstream down: {error}")
        return was_up

    def down_for_s(self) -> float:
        return 0.0 if self.down_since is None else time.time() - self.down_since

    def describe_down(self) -> str:
        since = time.strftime("%H:%M:%S", time.gmtime(self.down_since or time.time()))
        return f"{self.name} down since {since} UTC ({self.down_for_s():.0f}s: {self.last_error})"
