"""The stand-in orchestrator's registry (go-livepeer's LiveRunnerRegistry, ai/runner/live_runner.go v0.9.1):
static runners from runners.json and their health checks, dynamic runners by heartbeat with the TTL
sweep, discovery, and the test-only stats and forgetting.

This module does not import llm_runner (see tests/orchestrator_rules.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

import httpx

from tests.support.orchestrator_rules import (
    HEARTBEAT_FIELDS,
    ROUTING_LABEL,
    SINGLE_SHOT,
    Refused,
    decode_struct,
    normalize_request,
    parse_static_config,
    trim,
)
from tests.support.orchestrator_runner import Runner, derive_secret, go_duration, random_id, valid_secret

log = logging.getLogger("orchestrator")


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
        # after each accepted heartbeat: the capacity of every routable dynamic runner, added up
        self.capacity_sums: list[int] = []
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
        routable = [r for r in self.runners.values() if not r.static and r.ready() and not self.expired(r)]
        self.capacity_sums = [*self.capacity_sums[-9999:], sum(r.req.get("capacity") or 1 for r in routable)]
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
            "capacity_sums": self.capacity_sums,
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
