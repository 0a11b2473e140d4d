"""The stand-in orchestrator's HTTP side: go's http.Error and JSON answers, and the single-shot proxy
(ai_http.go:755-864): one slot reserved per call, the request forwarded onto runner_url as
httputil.ReverseProxy does, the answer (SSE included) streamed back, the slot freed at the end.

This module does not import llm_runner (see tests/orchestrator_rules.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from tests.support.orchestrator_registry import Registry
from tests.support.orchestrator_rules import SINGLE_SHOT, Refused
from tests.support.orchestrator_runner import Runner, derive_secret, random_id
from tests.support.orchestrator_url import PATH_SAFE, join_proxy_path

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


async def single_shot(
    registry: Registry,
    scope: dict,
    receive: Any,
    send: Any,
    route: str,
    app_path: str,
    query: str,
    headers: dict[str, str],
) -> None:
    """ProxyLiveRunnerSingleShot (ai_http.go:755-803) + proxyLiveRunner (:835-864)."""
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
        await forward(registry, scope, receive, send, runner, route, session_id, token, app_path, query, headers)
    finally:
        if runner.sessions.pop(session_id, None) is not None:  # ReleaseSession
            runner.sessions_completed += 1


async def forward(
    registry: Registry,
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
    client = registry.proxy_client
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
        ("livepeer-session-control", f"{registry.runner_addr}/runner/{route}/session/{session_id}"),
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
