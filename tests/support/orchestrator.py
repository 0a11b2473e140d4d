"""A stand-in go-livepeer orchestrator for Live Runners, written from go-livepeer v0.9.1 (e2fe336c):
ai/runner/live_runner.go (the registry) and server/ai_http.go (the HTTP handlers).

    python -m tests.support.orchestrator --port N [--runners runners.json] [--secret S]
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

This module (the entry point, the ASGI app and the `Orchestrator` test helper) and its parts
(orchestrator_rules, _url, _runner, _registry, _proxy) do not import llm_runner: their validation is an
independent reading of the Go source.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn

from tests.support.orchestrator_proxy import go_error, go_json, read_body, respond, single_shot
from tests.support.orchestrator_registry import Registry
from tests.support.orchestrator_rules import Refused, parse_static_config
from tests.support.orchestrator_runner import derive_secret, go_duration, valid_secret
from tests.support.orchestrator_url import PATH_SAFE, go_clean, join_proxy_path

log = logging.getLogger("orchestrator")

__all__ = ["App", "Orchestrator", "go_duration", "join_proxy_path", "main"]  # what tests use


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
            return await single_shot(registry, scope, receive, send, parts[2], "/".join(parts[4:]), query, headers)
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


# ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.orchestrator", description=__doc__.split("\n")[0])
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
    from tests.support.servers import Server

    class Orchestrator(Server):
        """`python -m tests.support.orchestrator` on a free port (see Server for start/stop)."""

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
            args = ["-m", "tests.support.orchestrator", "--port", str(port)]
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
