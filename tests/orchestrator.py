"""A stand-in go-livepeer orchestrator for Live Runners, written from go-livepeer v0.9.1 (e2fe336c):
ai/runner/live_runner.go (the registry) and server/ai_http.go (the HTTP handlers).

    python -m tests.orchestrator --port N [--runners runners.json] [--secret S]
        [--health-interval 5 --health-timeout 3] [--heartbeat-interval 5 --heartbeat-ttl 20]
        [--service-addr URL] [--runner-addr URL] [--onchain]

What it does, as go-livepeer does:
- Static runners: loads runners.json (`-liveRunnerConfig`, starter.go:2051-2060) and validates it with the
  rules of live_runner.go:464-903. A file go-livepeer refuses stops this process too (exit 1, "error
  registering -liveRunnerConfig: ..."). It upserts the same JSON at `POST /registerLiveRunners` (in
  go-livepeer that endpoint is on the CLI port; here it is on the one port).
- Health: one check at registration, then every interval, `GET health_url` with the timeout. Redirects
  are followed and the body is not read. The runner is healthy only on the exact status
  (live_runner.go:1424-1494). A failed check marks it "unavailable" and releases (and counts) all its
  sessions. Requests already being proxied are not cut off.
- `ANY /apps/{route}/app/{path...}`: single-shot proxy (ai_http.go:755-864). Unknown or not-ready runner:
  404 "runner not found". Persistent runner: 400 "runner is not single-shot". No free slot: 503 "no
  capacity available for runner". The path is joined onto runner_url and the client's method, query,
  headers (Authorization included) and body are forwarded. Hop-by-hop and X-Forwarded-* headers are
  dropped. Livepeer-Runner-Route / -Session-Id / -Session-Token / -Session-Control are set. The response
  (status, headers, SSE) streams through. A transport error gives 502. The slot is freed at the end.
  Errors are go's http.Error: text/plain, message + "\n".
- `GET /discovery` (ai_http.go:881-961): `[{"address": service, "runners": [...]}]` lists only ready,
  unexpired runners. "runners" is left out when there are none (omitempty).
- Dynamic runners: `POST /runners/heartbeat` and `POST /runners/{id}/unregister` (live_runner.go:371-470,
  920-951), with the TTL sweep every heartbeat interval (:1384-1422).

Off-chain only: `--onchain` turns on price_info validation, but there are no payments, so a priced
single-shot call answers 402. Not implemented: persistent sessions, trickle channels, session proxies,
`-liveRunnerProxyUrl`.

Test-only endpoints:
- `GET /_stats`: per runner, its checks, failed_checks, status, in_use, capacity, sessions_released,
  registrations, heartbeats and last heartbeat payload (never secrets or tokens).
- `POST /_forget/{runner_id}`: the next heartbeat gets 404, as for a registration that expired but was
  not yet swept.
- `POST /_forget/{runner_id}?restart=1`: drops the runner at once. The next heartbeat then gets 401,
  which is what go-livepeer answers after a restart: an unknown id is taken as a new registration with
  the wrong secret.
- `POST /_validate[?onchain=1]`: validates a runners.json body without registering it (200 with the
  normalised entries, or 400 with go's message).
- `GET /healthz`: 200.

This module does not import llm_runner. Its validation is an independent reading of the Go source.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import uvicorn

log = logging.getLogger("orchestrator")

PERSISTENT, SINGLE_SHOT = "persistent", "single-shot"
ROUTING_ID, ROUTING_LABEL = "runner-id", "label"
HOP_BY_HOP = {
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
FORWARDED = {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}  # dropped by Rewrite
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
GO_SPACE += "\u2028\u2029\u202f\u205f\u3000"
PATH_SAFE = "/:@!$&'()*+,;=-._~"  # what Go's URL.EscapedPath leaves alone
JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")


class Refused(Exception):
    """A RunnerError: status code and go's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def trim(s: str) -> str:
    return s.strip(GO_SPACE)


# ---------------------------------------------------------------------------------------------------
# Go helpers: duration strings, secrets, net/url checks, path.Join


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


HOST_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\"")
USERINFO_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@")


def _check_escapes(s: str, in_host: bool) -> None:
    i = 0
    while i < len(s):
        if s[i] == "%":
            pair = s[i + 1 : i + 3]
            if len(pair) < 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
                raise ValueError("invalid URL escape")
            if in_host and int(pair[0], 16) < 8 and pair != "25":
                raise ValueError("invalid URL escape in host")
            i += 3
            continue
        if in_host and ord(s[i]) < 0x80 and s[i] not in HOST_CHARS:
            raise ValueError("invalid character in host name")
        i += 1


def _port_ok(colon_port: str) -> bool:
    return re.fullmatch(r"(:[0-9]*)?", colon_port) is not None


def go_url(raw: str, request_uri: bool) -> tuple[str, str, str]:
    """(scheme, host, path) as net/url's ParseRequestURI (True) or Parse (False) sees them; ValueError
    where Go returns an error."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ValueError("invalid control character in URL")
    if not request_uri:
        raw, _, fragment = raw.partition("#")
        _check_escapes(fragment, False)
    if request_uri and raw == "":
        raise ValueError("empty url")
    if raw == "*":
        return "", "", "*"
    scheme, rest = "", raw
    match = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", raw)
    if raw.startswith(":"):
        raise ValueError("missing protocol scheme")
    if match:
        scheme, rest = match.group()[:-1].lower(), raw[match.end() :]
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.split("?", 1)[0]
    if not rest.startswith("/"):
        if scheme:
            return scheme, "", ""  # opaque
        if request_uri:
            raise ValueError("invalid URI for request")
        if ":" in rest.split("/", 1)[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    host = ""
    if rest.startswith("//") and (scheme or (not request_uri and not rest.startswith("///"))):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        userinfo, at, host = authority.rpartition("@")
        if at:
            if any(ord(c) < 0x80 and c not in USERINFO_CHARS for c in userinfo):
                raise ValueError("invalid userinfo")
            _check_escapes(userinfo, False)
        if host.startswith("["):
            close = host.rfind("]")
            if close < 0 or not _port_ok(host[close + 1 :]):
                raise ValueError("bad IP-literal host")
        elif ":" in host and not _port_ok(host[host.rfind(":") :]):
            raise ValueError("invalid port")
        _check_escapes(host, True)
    _check_escapes(rest, False)
    return scheme, host, rest


def http_url_ok(raw: str) -> bool:
    try:
        scheme, host, _ = go_url(raw, request_uri=True)
    except ValueError:
        return False
    return bool(host) and scheme in ("http", "https")


def go_clean(p: str) -> str:
    rooted, out = p.startswith("/"), []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    joined = ("/" if rooted else "") + "/".join(out)
    return joined or ("/" if rooted else ".")


def join_proxy_path(target_path: str, app_path: str) -> str:
    """url.JoinPath("/", target.Path, appPath) (ai_http.go:841): path.Join, trailing slash kept."""
    joined = go_clean("/".join(e for e in ("/", target_path, app_path) if e))
    if app_path.endswith("/") and not joined.endswith("/"):
        joined += "/"
    return joined


# ---------------------------------------------------------------------------------------------------
# decoding and validating (encoding/json into the Go structs, then go's checks)

ENTRY_FIELDS = {
    "label": "str",
    "routing": "str",
    "proxy": "bool",
    "runner_url": "str",
    "version": "str",
    "metadata": "str",
    "mode": "str",
    "gpu": "gpu",
    "app": "str",
    "capacity": "int",
    "price_info": "price",
    "health_url": "str",
    "healthy_status_code": "int",
}
HEARTBEAT_FIELDS = {
    "runner_id": "str",
    "label": "str",
    "proxy": "bool",
    "runner_url": "str",
    "version": "str",
    "metadata": "str",
    "status": "str",
    "mode": "str",
    "gpu": "gpu",
    "app": "str",
    "capacity": "int",
    "price_info": "price",
    "session_ids": "strlist",
}


def decode_struct(value: Any, fields: dict[str, str], where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"json: cannot unmarshal {type(value).__name__} into {where}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key in fields else next((f for f in fields if f.lower() == key.lower()), None)
        if name is not None:
            out[name] = decode_field(item, fields[name], f"{where}.{name}")
    return out


def decode_field(value: Any, kind: str, where: str) -> Any:
    if value is None:
        return None
    wrong = ValueError(f"json: cannot unmarshal {json.dumps(value)[:40]} into Go struct field {where}")
    if kind == "str":
        if not isinstance(value, str):
            raise wrong
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            raise wrong
        return value
    if kind == "strlist":
        if not isinstance(value, list) or any(v is not None and not isinstance(v, str) for v in value):
            raise wrong
        return [v or "" for v in value]
    if kind == "gpu":
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:
                raise wrong
            return {"id": str(value)}  # a device index (name from the host's GPUs, not looked up here)
        gpu = decode_struct(value, {"id": "str", "name": "str", "vram_mb": "int"}, where)
        return {k: v for k, v in gpu.items() if v not in (None, "", 0)}
    if kind == "price":
        price = decode_struct(value, {"price": "number", "currency": "str", "unit": "str"}, where)
        return price
    if kind == "number":  # json.Number
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise wrong
        text = value if isinstance(value, str) else json.dumps(value)
        if not JSON_NUMBER.match(text):
            raise ValueError(f"json: invalid number literal, trying to unmarshal {json.dumps(value)} into Number")
        return text
    raise AssertionError(kind)


def check_metadata(metadata: str) -> None:
    data = metadata.encode("utf-8", errors="surrogatepass")
    if len(data) > 1024:
        raise ValueError("metadata must be at most 1024 bytes")
    try:
        metadata.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("metadata must be valid UTF-8") from None
    if "\ufffd" in metadata:
        raise ValueError("metadata must not contain Unicode replacement character U+FFFD")


def normalize_request(req: dict[str, Any], onchain: bool) -> dict[str, Any]:
    """normalizeHeartbeat (live_runner.go:858-903)."""
    if not http_url_ok(req.get("runner_url") or ""):
        raise ValueError("invalid runner_url")
    app = req.get("app") or ""
    if not app or app != trim(app):
        raise ValueError("app must be trimmed")
    check_metadata(req.get("metadata") or "")
    status = req.get("status") or ""
    if status != trim(status).lower():
        raise ValueError("status must be lowercase and trimmed")
    mode = req.get("mode") or PERSISTENT
    mode = SINGLE_SHOT if mode == "single_shot" else mode
    if mode not in (PERSISTENT, SINGLE_SHOT):
        raise ValueError(f'mode must be "{PERSISTENT}" or "{SINGLE_SHOT}"')
    capacity = req.get("capacity") or 0
    if capacity < 0:
        raise ValueError("capacity must be >= 0")
    out = {
        "label": req.get("label") or "",
        "proxy": bool(req.get("proxy")),
        "runner_url": req["runner_url"],
        "version": req.get("version") or "",
        "metadata": req.get("metadata") or "",
        "status": status,
        "mode": mode,
        "gpu": req.get("gpu") or None,
        "app": app,
        "capacity": capacity or 1,
        "price_info": req.get("price_info") or {},
    }
    if onchain:
        price_info = out["price_info"]
        price = trim(price_info.get("price") or "")
        if not price:
            raise ValueError("price_info.price is required")
        if Decimal(price) <= 0:
            raise ValueError("price_info.price must be a positive decimal")
        currency = trim(price_info.get("currency") or "").lower() or "usd"
        if currency != "usd":
            raise ValueError("price_info.currency must be usd")
        unit = trim(price_info.get("unit") or "").lower() or "hour"
        if unit not in ("hour", "720p", "fixed"):
            raise ValueError("price_info.unit must be hour, 720p, or fixed")
        out["price_info"] = {"price": price, "currency": currency, "unit": unit}
    return out


def health_url_for(runner_url: str, health_url: str) -> str:
    """staticRunnerHealthURL (live_runner.go:512-528)."""
    try:
        scheme, host, path = go_url(health_url, request_uri=False)
    except ValueError:
        raise ValueError("invalid health_url") from None
    if scheme or not path.startswith("/") or host:
        return health_url
    if not http_url_ok(runner_url):
        raise ValueError("invalid runner_url")
    return runner_url.rstrip("/") + health_url


def parse_static_config(body: bytes | str, onchain: bool) -> list[dict[str, Any]]:
    """ParseStaticLiveRunnerConfig + the validation half of RegisterStaticRunners. Raises Refused(400)."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(400, f"invalid character: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise Refused(400, "json: cannot unmarshal array into Go value of type runner.StaticLiveRunnerConfig")
    runners = None
    for key, value in doc.items():
        if key.lower() == "runners":
            runners = value
    if runners is None:
        return []
    if not isinstance(runners, list):
        raise Refused(400, "json: cannot unmarshal into Go struct field StaticLiveRunnerConfig.runners")
    try:
        entries = [decode_struct(item, ENTRY_FIELDS, "StaticLiveRunnerConfigEntry") for item in runners]
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    for i, entry in enumerate(entries):  # normalizeStaticLiveRunnerConfig
        routing = trim(entry.get("routing") or "") or ROUTING_ID
        if routing not in (ROUTING_ID, ROUTING_LABEL):
            raise Refused(400, f'runners[{i}]: routing must be "{ROUTING_ID}" or "{ROUTING_LABEL}"')
        entry["routing"] = routing
        entry["healthy_status_code"] = entry.get("healthy_status_code") or 200
        try:
            entry["health_url"] = health_url_for(entry.get("runner_url") or "", entry.get("health_url") or "")
        except ValueError as exc:
            raise Refused(400, f"runners[{i}]: {exc}") from None
    labels: set[str] = set()
    out = []
    for i, entry in enumerate(entries):  # buildStaticRunner, duplicate label, "/" in a routed label
        try:
            label = entry.get("label") or ""
            if not label or label != trim(label):
                raise ValueError("label is required and must be trimmed")
            if not entry["health_url"]:
                raise ValueError("health_url is required")
            if not http_url_ok(entry["health_url"]):
                raise ValueError("invalid health_url")
            if not 100 <= entry["healthy_status_code"] <= 599:
                raise ValueError("healthy_status_code must be a valid HTTP status code")
            req = normalize_request({**entry, "status": ""}, onchain)
        except ValueError as exc:
            raise Refused(400, f"runners[{i}]: {exc}") from None
        if label in labels:
            raise Refused(400, f'runners[{i}]: duplicate label "{label}"')
        if entry["routing"] == ROUTING_LABEL and "/" in label:
            raise Refused(400, f'runners[{i}]: label cannot contain / when routing is "{ROUTING_LABEL}"')
        labels.add(label)
        out.append({**req, "routing": entry["routing"], "health_url": entry["health_url"],
                    "healthy_status_code": entry["healthy_status_code"]})  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------------
# the registry


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


def _public(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if "secret" not in k.lower() and "token" not in k.lower()}


class Registry:
    def __init__(self, args: argparse.Namespace) -> None:
        self.secret: str = args.secret or ""
        self.onchain: bool = args.onchain
        self.service = (args.service_addr or f"http://127.0.0.1:{args.port}").rstrip("/")
        self.runner_addr = (args.runner_addr or self.service).rstrip("/")
        self.health_interval: float = args.health_interval
        self.health_timeout: float = args.health_timeout
        self.heartbeat_interval: float = args.heartbeat_interval
        self.heartbeat_ttl: float = args.heartbeat_ttl
        self.runners: dict[str, Runner] = {}  # by route, as r.runners
        self.history: dict[str, Runner] = {}  # every runner by runner_id, for /_stats
        self.counters = {"registrations": 0, "unregisters": 0, "expired": 0, "heartbeat_rejected": {}}
        self.health_client: httpx.AsyncClient | None = None
        self.proxy_client: httpx.AsyncClient | None = None

    # -- lookups --------------------------------------------------------------------------------

    def expired(self, runner: Runner, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return not runner.static and (runner.stale or now - runner.last_heartbeat > self.heartbeat_ttl)

    def lock(self, route: str) -> Runner:
        """lockLiveRunner (live_runner.go:1358-1377)."""
        runner = self.runners.get(route)
        if runner is None or runner.removed or self.expired(runner):
            raise Refused(404, "runner not found")
        return runner

    def remove(self, route: str, runner: Runner, reason: str) -> None:
        runner.removed, runner.removed_reason = True, reason
        runner.release_all()
        if self.runners.get(route) is runner:
            del self.runners[route]
        log.info("live runner deregistered runner_id=%s reason=%s", runner.runner_id, reason)

    # -- static ---------------------------------------------------------------------------------

    async def register_static(self, body: bytes | str) -> dict[str, Any]:
        """RegisterStaticRunners (live_runner.go:714-827): validate all, then upsert by label."""
        entries = parse_static_config(body, self.onchain)
        health = [await self.probe(e["health_url"], e["healthy_status_code"]) for e in entries]
        existing = {r.req.get("label"): r for r in self.runners.values() if r.static and not r.removed}
        out = []
        for entry, healthy in zip(entries, health, strict=True):
            label = entry["label"]
            runner = existing.get(label)
            if runner is None:
                runner_id = random_id("runner_")
                while runner_id in self.runners:
                    runner_id = random_id("runner_")
                runner = Runner(runner_id=runner_id, static=True, route=runner_id, req={})
                self.history[runner_id] = runner
                runner.registrations += 1
                self.counters["registrations"] += 1
            req = {k: entry[k] for k in entry if k not in ("routing", "health_url", "healthy_status_code")}
            req["status"] = "ready" if healthy else "unavailable"
            if not healthy:
                runner.release_all()
            runner.checks += 1
            runner.failed_checks += 0 if healthy else 1
            runner.req, runner.removed = req, False
            runner.last_heartbeat = time.monotonic()
            runner.health_url, runner.healthy_status_code = entry["health_url"], entry["healthy_status_code"]
            route = label if entry["routing"] == ROUTING_LABEL else runner.runner_id
            for key, other in list(self.runners.items()):
                if other is runner and key != route:
                    del self.runners[key]
            runner.route = route
            self.runners[route] = runner
            log.info("static live runner runner_id=%s route=%s healthy=%s", runner.runner_id, route, healthy)
            item = {"runner_id": runner.runner_id, "label": label, "app": req["app"]}
            if req["proxy"]:
                item["proxy"] = True
            item |= {"runner_url": req["runner_url"], "mode": req["mode"], "health_url": runner.health_url}
            item |= {"healthy_status_code": runner.healthy_status_code, "healthy": healthy}
            out.append(item)
        return {"runners": out}

    async def probe(self, url: str, status: int) -> bool:
        """staticRunnerHealthy: GET with the client timeout; exact status; the body is not read."""
        assert self.health_client is not None
        try:
            async with asyncio.timeout(self.health_timeout):
                async with self.health_client.stream("GET", url) as response:
                    return response.status_code == status
        except (httpx.HTTPError, TimeoutError, OSError):
            return False

    async def health_loop(self) -> None:
        """A ticker every health interval (missed ticks are dropped, as time.Ticker does)."""
        next_tick = time.monotonic() + self.health_interval
        while True:
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            await self.check_static_health()
            now = time.monotonic()
            while next_tick <= now:
                next_tick += self.health_interval

    async def check_static_health(self) -> None:
        checks = [r for r in list(self.runners.values()) if r.static and not r.removed]
        for runner in checks:
            healthy = await self.probe(runner.health_url, runner.healthy_status_code)
            if runner.removed or not runner.static:
                continue
            runner.checks += 1
            previous = runner.status
            if healthy:
                runner.req["status"] = "ready"
            else:
                runner.failed_checks += 1
                runner.req["status"] = "unavailable"
                runner.release_all()
            if runner.status != previous:
                log.info("static live runner health changed runner_id=%s status=%s", runner.runner_id, runner.status)

    # -- dynamic --------------------------------------------------------------------------------

    def _reject(self, status: int, message: str) -> Refused:
        rejected = self.counters["heartbeat_rejected"]
        rejected[str(status)] = rejected.get(str(status), 0) + 1
        return Refused(status, message)

    def heartbeat(self, raw: Any, auth: str) -> dict[str, Any]:
        """Heartbeat (live_runner.go:371-470)."""
        try:
            decoded = decode_struct(raw, HEARTBEAT_FIELDS, "LiveRunnerHeartbeatRequest")
        except ValueError as exc:
            raise self._reject(400, str(exc)) from None
        runner_id = trim(decoded.get("runner_id") or "") or random_id("runner_")
        try:
            req = normalize_request(decoded, self.onchain)
        except ValueError as exc:
            raise self._reject(400, str(exc)) from None
        payload = _public({**raw, "runner_id": runner_id}) if isinstance(raw, dict) else {}
        runner = self.runners.get(runner_id)
        response = {
            "runner_id": runner_id,
            "orchestrator": self.runner_addr,
            "heartbeat_interval": go_duration(self.heartbeat_interval),
            "heartbeat_ttl": go_duration(self.heartbeat_ttl),
        }
        if runner is None:
            if not self.secret:
                raise self._reject(404, "dynamic live runner registration is disabled")
            if not valid_secret(auth, self.secret):
                raise self._reject(401, "invalid registration authorization")
            previous = self.history.get(runner_id)
            runner = Runner(runner_id=runner_id, static=False, route=runner_id, req=req)
            if previous is not None:  # keep the counters of an earlier registration of this id
                for name in ("checks", "sessions_reserved", "sessions_completed", "sessions_released"):
                    setattr(runner, name, getattr(previous, name))
                runner.registrations, runner.heartbeats = previous.registrations, previous.heartbeats
            runner.heartbeat_secret = derive_secret(runner.seed, "heartbeat")
            runner.registrations += 1
            runner.heartbeats += 1
            runner.last_payload = payload
            self.runners[runner_id] = self.history[runner_id] = runner
            self.counters["registrations"] += 1
            log.info("live runner registered runner_id=%s app=%s", runner_id, req["app"])
            channel = f"{runner_id}-{derive_secret(runner.seed, 'trickle:o2r')[:16]}-o2r"
            o2r = {"name": "o2r", "channel_name": channel, "url": f"{self.runner_addr}/ai/trickle/{channel}"}
            o2r["mime_type"] = "application/json"  # the stand-in serves no trickle channels
            return response | {"heartbeat_secret": runner.heartbeat_secret, "o2r": o2r, "session_ids": []}
        if runner.removed or self.expired(runner):
            if runner.stale and not runner.removed:  # /_forget: answer 404 once, then it is swept
                self.remove(runner_id, runner, "forgotten")
            raise self._reject(404, "runner not found")
        if not valid_secret(auth, runner.heartbeat_secret):
            raise self._reject(401, "invalid heartbeat authorization")
        if runner.static:
            raise self._reject(400, "static runner cannot heartbeat")
        if runner.status != req["status"]:
            log.info("live runner status runner_id=%s status=%s", runner_id, req["status"] or "(empty)")
        runner.req = req
        runner.last_heartbeat = time.monotonic()
        runner.heartbeats += 1
        runner.last_payload = payload
        return response | {"session_ids": sorted(runner.sessions, key=lambda s: runner.sessions[s])}

    def unregister(self, runner_id: str, auth: str) -> None:
        """Unregister (live_runner.go:920-951)."""
        runner = self.runners.get(runner_id)
        if runner is None or runner.removed or self.expired(runner):
            raise Refused(404, "runner not found")
        if runner.static:
            raise Refused(400, "static runner cannot unregister with heartbeat credentials")
        if not valid_secret(auth, runner.heartbeat_secret):
            raise Refused(401, "invalid authorization")
        self.remove(runner_id, runner, "unregister")
        self.counters["unregisters"] += 1

    async def expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            now = time.monotonic()
            for route, runner in list(self.runners.items()):
                if not runner.removed and not runner.stale and self.expired(runner, now):
                    self.remove(route, runner, "heartbeat timeout")
                    self.counters["expired"] += 1

    def forget(self, runner_id: str, restart: bool) -> bool:
        for route, runner in list(self.runners.items()):
            if runner.runner_id == runner_id or route == runner_id:
                if restart:
                    self.remove(route, runner, "forgotten (restart)")
                else:
                    runner.stale = True
                    runner.release_all()
                return True
        return False

    # -- discovery and stats --------------------------------------------------------------------

    def discovery(self) -> list[dict[str, Any]]:
        runners = []
        now = time.monotonic()
        for route, runner in sorted(self.runners.items()):
            if runner.removed or self.expired(runner, now) or not runner.ready():
                continue
            req = runner.req
            kind = "app" if req["mode"] == SINGLE_SHOT else "session"
            item: dict[str, Any] = {"url": f"{self.service}/apps/{quote(route, safe='')}/{kind}"}
            if req.get("gpu"):
                item["gpu"] = req["gpu"]
            item["app"] = req["app"]
            for key in ("version", "metadata", "mode"):
                if req.get(key):
                    item[key] = req[key]
            used = len(runner.sessions)
            item |= {"capacity": req["capacity"], "capacity_used": used, "capacity_available": req["capacity"] - used}
            runners.append(item)  # off-chain: no price_info
        entry: dict[str, Any] = {"address": self.service}
        if runners:
            entry["runners"] = runners
        return [entry]

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "runners": {rid: r.stats(self.heartbeat_ttl, now) for rid, r in self.history.items()},
            "routes": {route: r.runner_id for route, r in self.runners.items()},
            **self.counters,
            "config": {
                "service": self.service,
                "runner_addr": self.runner_addr,
                "health_interval": self.health_interval,
                "health_timeout": self.health_timeout,
                "heartbeat_interval": self.heartbeat_interval,
                "heartbeat_ttl": self.heartbeat_ttl,
                "dynamic": bool(self.secret),
                "onchain": self.onchain,
            },
        }


# ---------------------------------------------------------------------------------------------------
# HTTP


async def read_body(receive: Any) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away")
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


async def respond(send: Any, status: int, body: bytes | str, content_type: str, extra: list | None = None) -> None:
    data = body.encode() if isinstance(body, str) else body
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})


async def go_error(send: Any, status: int, message: str) -> None:
    """http.Error: text/plain, nosniff, the message and a newline (server/handlers.go:1749-1752)."""
    extra = [(b"x-content-type-options", b"nosniff")]
    await respond(send, status, message + "\n", "text/plain; charset=utf-8", extra)


async def go_json(send: Any, data: Any, status: int = 200) -> None:
    await respond(send, status, json.dumps(data), "application/json")


class App:
    def __init__(self, registry: Registry, static_body: bytes | None) -> None:
        self.registry = registry
        self.static_body = static_body
        self.tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            try:
                await self.route(scope, receive, send)
            except ConnectionResetError:
                return
            except Refused as exc:
                await go_error(send, exc.status, exc.message)

    async def lifespan(self, receive: Any, send: Any) -> None:
        registry = self.registry
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                registry.health_client = httpx.AsyncClient(
                    follow_redirects=True, trust_env=False, limits=httpx.Limits(keepalive_expiry=90)
                )
                registry.proxy_client = httpx.AsyncClient(
                    timeout=httpx.Timeout(None, connect=30), trust_env=False, follow_redirects=False
                )
                registry.proxy_client.headers.clear()  # forward only what the client sent
                if self.static_body is not None:
                    result = await registry.register_static(self.static_body)
                    log.info("Registered %d static live runners", len(result["runners"]))
                self.tasks = [asyncio.create_task(registry.health_loop()), asyncio.create_task(registry.expiry_loop())]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self.tasks:
                    task.cancel()
                for client in (registry.health_client, registry.proxy_client):
                    if client is not None:
                        await client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def route(self, scope: dict, receive: Any, send: Any) -> None:
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        # ServeMux: unclean paths and a subtree root without its slash are redirected (301)
        clean = go_clean(path) + ("/" if path.endswith("/") and path != "/" else "")
        if clean != path:
            return await self.redirect(send, clean, query)
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "apps" and parts[3] == "app":
            return await self.redirect(send, path + "/", query)
        registry = self.registry

        if len(parts) >= 5 and parts[1] == "apps" and parts[3] == "app":
            return await self.single_shot(scope, receive, send, parts[2], "/".join(parts[4:]), query, headers)
        if path == "/runners/heartbeat":
            if method != "POST":
                return await self.not_allowed(send, "POST")
            body = await read_body(receive)
            try:
                raw = json.JSONDecoder().raw_decode(body.decode("utf-8", errors="replace").lstrip())[0]
            except (json.JSONDecodeError, ValueError):
                return await go_error(send, 400, "EOF" if not body.strip() else "invalid character in JSON")
            return await go_json(send, registry.heartbeat(raw, auth))
        if len(parts) == 4 and parts[1] == "runners" and parts[3] == "unregister":
            if method != "POST":
                return await self.not_allowed(send, "POST")
            registry.unregister(parts[2], auth)
            return await respond(send, 204, b"", "text/plain")
        if len(parts) == 6 and parts[1] == "runner" and parts[3] == "session" and parts[5] == "stop":
            if method != "POST":
                return await self.not_allowed(send, "POST")
            runner = registry.lock(parts[2])
            sid = parts[4]
            if not runner.ready():
                raise Refused(404, "runner not found")
            if sid not in runner.sessions:
                raise Refused(404, "runner session not found")
            if not valid_secret(
                headers.get("livepeer-session-token", ""), derive_secret(runner.seed, "session:" + sid)
            ):
                raise Refused(401, "invalid authorization")
            runner.sessions.pop(sid, None)
            runner.sessions_completed += 1
            return await respond(send, 204, b"", "text/plain")
        if path == "/discovery":
            if method != "GET":
                return await self.not_allowed(send, "GET, HEAD")
            return await go_json(send, registry.discovery())
        if path == "/registerLiveRunners":
            if method != "POST":
                return await go_error(send, 405, "Method not allowed")
            return await go_json(send, await registry.register_static(await read_body(receive)))
        if path == "/healthz":
            return await respond(send, 200, b"", "text/plain")
        if path == "/_stats":
            return await go_json(send, registry.stats())
        if path.startswith("/_forget/") and method == "POST":
            found = registry.forget(path[len("/_forget/") :], restart="restart=1" in query)
            return await go_json(send, {"forgotten": found}, 200 if found else 404)
        if path == "/_validate" and method == "POST":
            entries = parse_static_config(await read_body(receive), registry.onchain or "onchain=1" in query)
            return await go_json(send, {"runners": entries})
        if parts[1] in ("apps", "runner"):
            return await go_error(send, 501, "not implemented by the stand-in orchestrator")
        return await go_error(send, 404, "404 page not found")

    async def redirect(self, send: Any, location: str, query: str) -> None:
        target = quote(location, safe=PATH_SAFE) + (f"?{query}" if query else "")
        await respond(send, 301, b"", "text/plain", [(b"location", target.encode())])

    async def not_allowed(self, send: Any, allow: str) -> None:
        await respond(send, 405, "Method Not Allowed\n", "text/plain; charset=utf-8", [(b"allow", allow.encode())])

    async def single_shot(
        self, scope: dict, receive: Any, send: Any, route: str, app_path: str, query: str, headers: dict[str, str]
    ) -> None:
        """ProxyLiveRunnerSingleShot (ai_http.go:755-803) + proxyLiveRunner (:835-864)."""
        registry = self.registry
        runner = registry.lock(route)  # RunnerMode: 404 when unknown, removed, expired ...
        if not runner.ready():
            raise Refused(404, "runner not found")  # ... or not ready
        if runner.req["mode"] != SINGLE_SHOT:
            raise Refused(400, "runner is not single-shot")
        if registry.onchain:
            raise Refused(402, "payment required (the stand-in orchestrator takes no payments)")
        if len(runner.sessions) >= runner.req["capacity"]:
            runner.rejected_full += 1
            raise Refused(503, "no capacity available for runner")
        session_id = random_id("session_")
        while session_id in runner.sessions:
            session_id = random_id("session_")
        runner.sessions[session_id] = time.monotonic()
        runner.sessions_reserved += 1
        try:
            token = derive_secret(runner.seed, "session:" + session_id)
            await self.forward(scope, receive, send, runner, route, session_id, token, app_path, query, headers)
        finally:
            if runner.sessions.pop(session_id, None) is not None:  # ReleaseSession
                runner.sessions_completed += 1

    async def forward(
        self,
        scope: dict,
        receive: Any,
        send: Any,
        runner: Runner,
        route: str,
        session_id: str,
        token: str,
        app_path: str,
        query: str,
        inbound: dict[str, str],
    ) -> None:
        client = self.registry.proxy_client
        assert client is not None
        target = urlsplit(runner.req["runner_url"])
        proxy_path = join_proxy_path(target.path, app_path)
        url = f"{target.scheme}://{target.netloc}" + quote(proxy_path, safe=PATH_SAFE)
        url += f"?{query}" if query else ""
        drop = HOP_BY_HOP | FORWARDED
        drop |= {h.strip().lower() for h in inbound.get("connection", "").split(",") if h.strip()}
        out = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in drop and k.decode("latin-1").lower() != "host"
        ]
        if inbound.get("te", "").lower() == "trailers":
            out.append(("te", "trailers"))
        gzip_added = "accept-encoding" not in inbound and "range" not in inbound and scope["method"] != "HEAD"
        if gzip_added:  # Go's Transport asks for gzip itself and decompresses what comes back
            out.append(("accept-encoding", "gzip"))
        out += [
            ("host", target.netloc),
            ("livepeer-runner-route", route),
            ("livepeer-session-id", session_id),
            ("livepeer-session-token", token),
            ("livepeer-session-control", f"{self.registry.runner_addr}/runner/{route}/session/{session_id}"),
        ]
        has_body = "content-length" in inbound or "transfer-encoding" in inbound
        body_done = asyncio.Event()

        async def body() -> Any:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionResetError("client went away")
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body"):
                    break
            body_done.set()

        if has_body:
            content: Any = body()
        else:
            await read_body(receive)
            body_done.set()
            content = b""
        forward_task = asyncio.current_task()
        assert forward_task is not None

        finished = False

        async def watch_disconnect() -> None:  # the client's context: its disconnect cancels the upstream call
            await body_done.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            if not finished:  # (uvicorn also says "disconnect" once the response is complete)
                forward_task.cancel()

        watcher = asyncio.create_task(watch_disconnect())
        started = False
        try:
            request = client.build_request(scope["method"], url, headers=out, content=content)
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                return await go_error(send, 502, f"{type(exc).__name__}: {exc}")
            try:
                decode = gzip_added and response.headers.get("content-encoding", "").lower() == "gzip"
                drop_out = HOP_BY_HOP | {
                    h.strip().lower() for h in response.headers.get("connection", "").split(",") if h.strip()
                }
                if decode:
                    drop_out |= {"content-encoding", "content-length"}
                raw_headers = [
                    (k.lower(), v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in drop_out
                ]
                await send({"type": "http.response.start", "status": response.status_code, "headers": raw_headers})
                started = True
                chunks = response.aiter_bytes() if decode else response.aiter_raw()
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                finished = True
                await send({"type": "http.response.body", "body": b""})
            finally:
                await response.aclose()
        except asyncio.CancelledError:
            if watcher.done() and not watcher.cancelled():
                return  # the client went away: Go cancels the upstream request the same way
            raise
        except (httpx.HTTPError, ConnectionResetError):
            if not started:
                return await go_error(send, 502, "upstream failed")
            raise  # mid-stream: abort the client's response, as ReverseProxy panics with ErrAbortHandler
        finally:
            watcher.cancel()


# ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.orchestrator", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--runners", help="runners.json to load at start (-liveRunnerConfig)")
    parser.add_argument("--secret", default="", help="-orchSecret: enables dynamic registration")
    parser.add_argument("--health-interval", type=float, default=5.0)
    parser.add_argument("--health-timeout", type=float, default=3.0)
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--heartbeat-ttl", type=float, default=20.0)
    parser.add_argument("--service-addr", default="", help="public base URL (default http://127.0.0.1:PORT)")
    parser.add_argument("--runner-addr", default="", help="-liveRunnerAddr (default: the service address)")
    parser.add_argument("--onchain", action="store_true", help="validate price_info as an on-chain node does")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    static_body = None
    if args.runners:
        try:
            with open(args.runners, "rb") as handle:
                static_body = handle.read()
        except OSError as exc:
            print(f"error reading -liveRunnerConfig: {exc}", file=sys.stderr)
            return 1
        try:
            parse_static_config(static_body, args.onchain)
        except Refused as exc:
            print(f"error registering -liveRunnerConfig: {exc.message}", file=sys.stderr)
            return 1
    app = App(Registry(args), static_body)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", lifespan="on")
    uvicorn.Server(config).run()
    return 0


if __name__ != "__main__":  # the test-side helper; the stand-in process itself never imports llm_runner
    from tests.servers import Server

    class Orchestrator(Server):
        """`python -m tests.orchestrator` on a free port (see Server for start/stop)."""

        def __init__(
            self,
            port: int | None = None,
            *,
            runners: str | os.PathLike[str] | None = None,
            secret: str | None = None,
            health_interval: float = 0.2,
            health_timeout: float = 0.5,
            heartbeat_interval: float = 0.2,
            heartbeat_ttl: float = 1.0,
            extra: list[str] | None = None,
        ) -> None:
            from llm_runner.engine.launcher import free_port

            port = port or free_port()
            args = ["-m", "tests.orchestrator", "--port", str(port)]
            args += ["--health-interval", str(health_interval), "--health-timeout", str(health_timeout)]
            args += ["--heartbeat-interval", str(heartbeat_interval), "--heartbeat-ttl", str(heartbeat_ttl)]
            args += ["--runners", str(runners)] if runners else []
            args += ["--secret", secret] if secret else []
            super().__init__(args + (extra or []), port, ready_path="/healthz")

        def stats(self) -> dict:
            return httpx.get(self.url + "/_stats", timeout=5).json()

        async def until(self, predicate: Any, within: float = 10.0) -> dict:
            """Poll /_stats until predicate(stats) holds; AssertionError with the last stats otherwise."""
            deadline = time.monotonic() + within
            async with httpx.AsyncClient(timeout=5) as client:
                while True:
                    stats = (await client.get(self.url + "/_stats")).json()
                    with contextlib.suppress(KeyError, IndexError, StopIteration):
                        if predicate(stats):
                            return stats
                    if time.monotonic() > deadline:
                        raise AssertionError(f"condition not met within {within}s; stats: {json.dumps(stats)[:3000]}")
                    await asyncio.sleep(0.02)

        @staticmethod
        def runner(stats: dict, key: str) -> dict:
            """The stats of the runner whose id, route or label is `key` (the live one first)."""
            runners = list(stats["runners"].values())
            runners.sort(key=lambda r: not r["registered"])
            return next(r for r in runners if key in (r["runner_id"], r["route"], r["label"]))


if __name__ == "__main__":
    sys.exit(main())
