"""What a dynamic Live Runner tells a go-livepeer orchestrator (`-useLiveRunners -orchSecret S`), and the
wire protocol it says it in: the runner registers itself and keeps its entry fresh with heartbeats.

Wire protocol, as go-livepeer v0.9.1 implements it (ai/runner/live_runner.go, server/ai_http.go):

- `POST /runners/heartbeat`, JSON body `LiveRunnerHeartbeatRequest` (live_runner.go:127-141), header
  `Authorization: <secret>`: the raw secret, no "Bearer" (ai_http.go:150; compared with hmac.Equal,
  live_runner.go:1707-1709).
- A `runner_id` the orchestrator does not know is a registration: the secret must be `-orchSecret`
  (live_runner.go:392-404). Without one, the runner gets a fresh `runner_<base32>` id (:372-375).
  The answer is 200 `{runner_id, orchestrator, heartbeat_interval, heartbeat_ttl, heartbeat_secret,
  o2r, session_ids}`. The durations are Go duration strings ("5s", "20s"; :433-441).
  `heartbeat_secret` = lower(base32(HMAC-SHA256(seed, "heartbeat"))) (:405-406, 1697-1705), returned
  only on registration (:382-384).
- A known `runner_id` is a heartbeat: 404 "runner not found" if it was removed or its TTL has run out
  (:448-450), 401 if the secret is not its heartbeat secret (:451-453). The heartbeat replaces the whole
  request (url, version, metadata, status, mode, gpu, app, capacity, price; :458-461).
- What a runner sees when the orchestrator has lost it:
  - 404: expired, but not yet swept. The sweep runs every heartbeat interval (:1384-1422).
  - 401: unknown id, e.g. after an orchestrator restart. The id is then taken as a new registration
    with the wrong secret (:392-404).
  Both mean: register again with the bootstrap secret.
- Only status "" or "ready" is routable (:1819-1821). Any other lowercase, trimmed value (here
  "unavailable") hides the runner from discovery and refuses new sessions (404). Sessions already in
  flight are not released (:959-961, 458). `capacity` 0 is read as 1 (:882-887), so "no slot now" has to be
  sent as a non-ready status.
- `POST /runners/{runner_id}/unregister` with `Authorization: <heartbeat_secret>` → 204
  (ai_http.go:163-175; live_runner.go:920-951). 404 if it is already gone.
- No heartbeat within `heartbeat_ttl` (default 20 s; interval 5 s, :30-31): the runner is removed and
  its sessions are released.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_runner.live.go_rules import MODE_PERSISTENT, MODE_SINGLE_SHOT, check_metadata, go_trim
from llm_runner.live.go_url import is_http_url

STATUS_READY = "ready"
STATUS_UNAVAILABLE = "unavailable"  # what go-livepeer itself uses for a failed static health check
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0  # live_runner.go:30, until the orchestrator says otherwise
DEFAULT_HEARTBEAT_TTL_S = 20.0  # live_runner.go:31

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go `time.Duration.String()` / `time.ParseDuration` string ("1m30s", "250ms")."""
    s = text
    sign = -1.0 if s.startswith("-") else 1.0
    s = s[1:] if s[:1] in "+-" and s else s
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        if not match:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNIT_S[match.group(2)]
        pos = match.end()
    return sign * total


@dataclass(frozen=True)
class RunnerSnapshot:
    """What the runner reports now. `capacity` is the number of slots ready now, `ready` whether it
    can take work. The other fields are the static ones from RegistrationConfig."""

    ready: bool
    capacity: int
    url: str
    app: str
    version: str = ""
    metadata: str = ""
    mode: str = MODE_SINGLE_SHOT
    gpu: Mapping[str, Any] | None = None
    price: Mapping[str, Any] | None = None  # {"price": 0.5, "currency": "usd", "unit": "hour"}

    @property
    def status(self) -> str:
        return STATUS_READY if self.ready and self.capacity >= 1 else STATUS_UNAVAILABLE


@dataclass(frozen=True)
class RegistrationConfig:
    """Where to register (the orchestrator's `-liveRunnerAddr`, or its service URI) and what."""

    orchestrator_url: str  # e.g. https://orchestrator:8935 (go-livepeer serves TLS on it by default)
    orch_secret: str = field(repr=False)  # -orchSecret: bootstrap Authorization
    runner_url: str  # where the orchestrator reaches this app, e.g. http://llm_runner:8000/models/<slug>
    app: str  # e.g. llm/meta-llama/Meta-Llama-3.1-8B-Instruct
    version: str = ""
    metadata: str = ""
    mode: str = MODE_SINGLE_SHOT
    gpu: Mapping[str, Any] | None = None
    price: Mapping[str, Any] | None = None
    label: str | None = None  # sent, but dynamic runners are always routed by runner_id
    runner_id: str | None = None  # proposed id (stable route /apps/<id>/app); None: the orchestrator picks
    verify: bool | str = True  # TLS verification; False for go-livepeer's self-signed certificate
    request_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0

    def __post_init__(self) -> None:
        if not is_http_url(self.orchestrator_url):
            raise ValueError(f"orchestrator_url must be an absolute http(s) URL, got {self.orchestrator_url!r}")
        if not self.orch_secret:
            raise ValueError("orch_secret (the orchestrator's -orchSecret) is required for dynamic registration")
        if not is_http_url(self.runner_url):
            raise ValueError(f"runner_url must be an absolute http(s) URL, got {self.runner_url!r}")
        if not self.app or self.app != go_trim(self.app):
            raise ValueError(f"app must be non-empty and trimmed, got {self.app!r}")
        check_metadata(self.metadata)
        if self.mode not in (MODE_PERSISTENT, MODE_SINGLE_SHOT):
            raise ValueError(f"mode must be persistent or single-shot, got {self.mode!r}")

    def snapshot(self, ready: bool, capacity: int, metadata: str | None = None) -> RunnerSnapshot:
        """A snapshot with this config's static fields (metadata too, unless given: it is refreshed by
        every heartbeat)."""
        if metadata is not None:
            check_metadata(metadata)
        return RunnerSnapshot(
            ready=ready,
            capacity=capacity,
            url=self.runner_url,
            app=self.app,
            version=self.version,
            metadata=self.metadata if metadata is None else metadata,
            mode=self.mode,
            gpu=self.gpu,
            price=self.price,
        )
