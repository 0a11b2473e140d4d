"""Dynamic Live Runner registration: the heartbeat client that keeps one runner registered with a
go-livepeer orchestrator, re-registers it when the orchestrator has lost it, and unregisters it on
stop. The wire protocol is described in `heartbeat_protocol`.

Secrets (the orchestrator secret and the heartbeat secret) are never logged. Neither is any
`Livepeer-Session-Token`. Logs carry the runner id and status changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from llm_runner.live.heartbeat_protocol import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_HEARTBEAT_TTL_S,
    STATUS_READY,
    STATUS_UNAVAILABLE,
    RegistrationConfig,
    RunnerSnapshot,
    parse_go_duration,
)

log = logging.getLogger("llm_runner.live.registration")


class _Lost(Exception):
    """The orchestrator no longer knows our registration (404 or 401 on a heartbeat)."""


class _Refused(Exception):
    """The orchestrator answered but refused (4xx/5xx): retried with backoff."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status


class Registration:
    """Keeps one dynamic runner registered while it runs; `stop()` unregisters it."""

    def __init__(
        self,
        config: RegistrationConfig,
        snapshot: Callable[[], RunnerSnapshot],
        *,
        client: httpx.AsyncClient | None = None,
        gate: asyncio.Lock | None = None,
        sent: Callable[[RunnerSnapshot, bool], None] | None = None,
    ) -> None:
        """`gate`, shared by registrations whose capacity comes from the same slots, makes each
        snapshot see what the others last told the orchestrator; `sent(snapshot, accepted)` is told
        what was sent (accepted False: it may or may not have been applied)."""
        self.config = config
        self._snapshot = snapshot
        self._gate = gate or asyncio.Lock()
        self._sent = sent or (lambda snap, accepted: None)
        self._client = client
        self._own_client = client is None
        self._base = config.orchestrator_url.rstrip("/")
        self._secret: str | None = None  # heartbeat secret: never logged
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self.runner_id: str | None = None
        self.status: str | None = None  # the status last accepted by the orchestrator
        self.interval_s = DEFAULT_HEARTBEAT_INTERVAL_S
        self.ttl_s = DEFAULT_HEARTBEAT_TTL_S
        self.session_ids: list[str] = []  # the orchestrator's active sessions for us, from the last answer
        self.registrations = 0  # successful registrations (1 + re-registrations)
        self.heartbeats = 0  # accepted heartbeats, registrations included
        self.failures = 0  # consecutive failed attempts

    def __repr__(self) -> str:
        return f"Registration(runner_id={self.runner_id!r}, status={self.status!r}, orchestrator={self._base!r})"

    @property
    def registered(self) -> bool:
        return self._registered.is_set()

    async def start(self) -> None:
        """Start registering and heartbeating in the background (returns at once)."""
        if self._task is not None:
            return
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self.config.verify, timeout=self.config.request_timeout_s)
        self._task = asyncio.create_task(self._run(), name="live-runner-registration")

    async def wait_registered(self, within: float | None = None) -> str:
        """The runner id, once registered (TimeoutError after `within` seconds)."""
        await asyncio.wait_for(self._registered.wait(), within)
        assert self.runner_id is not None
        return self.runner_id

    def poke(self) -> None:
        """Heartbeat now, e.g. right after readiness or capacity changed."""
        self._wake.set()

    async def stop(self, unregister: bool = True) -> None:
        """Stop heartbeating and unregister; with unregister=False the orchestrator lets it expire."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            if unregister and self._secret is not None and self.runner_id is not None:
                await self._unregister()
        finally:
            self._secret = None
            self._registered.clear()
            if self._own_client and self._client is not None:
                await self._client.aclose()
                self._client = None

    # -- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.0
        while True:
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            await self._gate.acquire()  # registrations sharing slots report one at a time
            snap = self._take_snapshot()
            accepted = False
            try:
                if self._secret is None:
                    await self._bootstrap(snap)
                else:
                    await self._heartbeat(snap)
                accepted = True
            except _Lost as exc:
                log.warning("orchestrator no longer knows live runner %s (%s); registering again", self.runner_id, exc)
                self._secret = None
                self._registered.clear()
                self.status = None
                delay = 0.0  # at once: bootstrap failures back off by themselves
                continue
            except _Refused as exc:
                self.failures += 1
                delay = self._backoff()
                level = logging.ERROR if self.failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "orchestrator %s refused live runner %s: %s; retrying in %.1fs",
                    self._base,
                    self.runner_id or "(registering)",
                    exc,
                    delay,
                )
                continue
            except httpx.HTTPError as exc:
                self.failures += 1
                delay = self._backoff()
                level = logging.WARNING if self.failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "orchestrator %s unreachable (%s: %s); retrying in %.1fs",
                    self._base,
                    type(exc).__name__,
                    _short(str(exc)),
                    delay,
                )
                continue
            finally:
                self._sent(snap, accepted)
                self._gate.release()
            if self.failures:
                log.info("orchestrator %s answering again; live runner %s", self._base, self.runner_id)
            self.failures = 0
            delay = self.interval_s

    def _backoff(self) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** max(0, self.failures - 1))
        return base * random.uniform(0.8, 1.0)

    def _take_snapshot(self) -> RunnerSnapshot:
        try:
            return self._snapshot()
        except Exception:
            log.exception("runner snapshot failed; reporting %s", STATUS_UNAVAILABLE)
            return self.config.snapshot(ready=False, capacity=1)

    def _payload(self, snap: RunnerSnapshot, runner_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "runner_url": snap.url,
            "app": snap.app,
            "status": snap.status,
            "mode": snap.mode,
            "capacity": max(1, int(snap.capacity)),  # 0 would be read as 1: non-ready status says "none now"
        }
        if runner_id:
            body["runner_id"] = runner_id
        if self.config.label:
            body["label"] = self.config.label
        if snap.version:
            body["version"] = snap.version
        if snap.metadata:
            body["metadata"] = snap.metadata
        if snap.gpu:
            body["gpu"] = dict(snap.gpu)
        if snap.price:
            body["price_info"] = dict(snap.price)
        return body

    async def _post(self, path: str, secret: str, body: dict[str, Any] | None) -> httpx.Response:
        assert self._client is not None
        headers = {"Authorization": secret}
        if body is None:
            return await self._client.post(self._base + path, headers=headers)
        return await self._client.post(self._base + path, headers=headers, json=body)

    async def _bootstrap(self, snap: RunnerSnapshot) -> None:
        proposed = self.config.runner_id
        response = await self._post("/runners/heartbeat", self.config.orch_secret, self._payload(snap, proposed))
        if response.status_code != 200:
            raise _Refused(response.status_code, _reason(response))
        data = response.json()
        secret = data.get("heartbeat_secret")
        if not isinstance(secret, str) or not secret or not data.get("runner_id"):
            raise _Refused(response.status_code, "registration answer without runner_id or heartbeat_secret")
        self._secret = secret
        self.runner_id = str(data["runner_id"])
        self._accept(data, snap)
        self.registrations += 1
        self._registered.set()
        log.info(
            "live runner %s registered with %s (%s, status %s, capacity %d; heartbeat every %gs, ttl %gs)",
            self.runner_id,
            self._base,
            snap.app,
            snap.status,
            max(1, snap.capacity),
            self.interval_s,
            self.ttl_s,
        )

    async def _heartbeat(self, snap: RunnerSnapshot) -> None:
        assert self._secret is not None
        response = await self._post("/runners/heartbeat", self._secret, self._payload(snap, self.runner_id))
        if response.status_code in (401, 404):
            raise _Lost(f"{response.status_code} {_reason(response)}")
        if response.status_code != 200:
            raise _Refused(response.status_code, _reason(response))
        data = response.json()
        if isinstance(data.get("heartbeat_secret"), str) and data["heartbeat_secret"]:
            self._secret = data["heartbeat_secret"]  # rotation (not done by v0.9.1, but allowed for)
        previous = self.status
        self._accept(data, snap)
        if previous != self.status:
            log.info("live runner %s status %s -> %s", self.runner_id, previous, self.status)

    def _accept(self, data: Mapping[str, Any], snap: RunnerSnapshot) -> None:
        for key, attr in (("heartbeat_interval", "interval_s"), ("heartbeat_ttl", "ttl_s")):
            value = data.get(key)
            if isinstance(value, str):
                try:
                    seconds = parse_go_duration(value)
                except ValueError:
                    log.warning("orchestrator sent an unreadable %s %r; keeping %gs", key, value, getattr(self, attr))
                else:
                    if seconds > 0:
                        setattr(self, attr, seconds)
        ids = data.get("session_ids")
        self.session_ids = [str(i) for i in ids] if isinstance(ids, list) else []
        self.status = snap.status
        self.heartbeats += 1

    async def _unregister(self) -> None:
        assert self._secret is not None and self.runner_id is not None
        try:
            response = await self._post(f"/runners/{self.runner_id}/unregister", self._secret, None)
        except httpx.HTTPError as exc:
            log.warning(
                "could not unregister live runner %s (%s); it expires after %gs",
                self.runner_id,
                type(exc).__name__,
                self.ttl_s,
            )
            return
        if response.status_code in (200, 204):
            log.info("live runner %s unregistered", self.runner_id)
        elif response.status_code == 404:
            log.info("live runner %s was already gone from the orchestrator", self.runner_id)
        else:
            log.warning("unregistering live runner %s: %d %s", self.runner_id, response.status_code, _reason(response))


def _reason(response: httpx.Response) -> str:
    """go-livepeer's error text (http.Error: the message and a newline), shortened."""
    try:
        text = response.text
    except Exception:
        return ""
    return _short(text.strip())


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = [
    "STATUS_READY",
    "STATUS_UNAVAILABLE",
    "Registration",
    "RegistrationConfig",
    "RunnerSnapshot",
    "parse_go_duration",
]
