"""The stand-in go-livepeer orchestrator (tests/support/orchestrator.py) and llm_runner.live against it.

A toy app (in-process uvicorn on a thread) plays the runner: per-name health that can be switched, an
echo, an SSE stream that waits for a release, and a request that holds its slot until released. The
orchestrator is a child process with short intervals. Tests wait on conditions (/_stats) and never on
fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from llm_runner.engine.launcher import free_port
from llm_runner.live import registration as reg_mod
from llm_runner.live import runners_json as rj
from llm_runner.live.registration import Registration, RegistrationConfig, parse_go_duration
from tests.support import orchestrator as orch_mod
from tests.support.orchestrator import Orchestrator

SECRET = "orch-secret-do-not-log-7f3a"
ANY = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


# ---------------------------------------------------------------------------------------------------
# the toy runner app


class Toy:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.reset()
        app = Starlette(
            routes=[
                Route("/models/{name}/ready", self.ready, methods=["GET"]),
                Route("/models/{name}/hold", self.hold, methods=ANY),
                Route("/models/{name}/v1/chat/completions", self.sse, methods=["POST"]),
                Route("/models/{name}/status/{code:int}", self.status, methods=ANY),
                Route("/models/{name}/{rest:path}", self.echo, methods=ANY),
                Route("/models/{name}", self.echo, methods=ANY),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def reset(self) -> None:
        self.health: dict[str, int] = {}  # name -> status of /ready (default 200)
        self.release = threading.Event()
        self.in_flight = 0
        self.seen: list[dict[str, Any]] = []

    def start(self) -> Toy:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "toy app did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    async def _released(self) -> None:
        """Wait for the test (another thread and loop) to set `release`."""
        await asyncio.to_thread(self.release.wait)

    async def ready(self, request: Request) -> Response:
        return PlainTextResponse("ready", status_code=self.health.get(request.path_params["name"], 200))

    async def hold(self, request: Request) -> Response:
        self.in_flight += 1
        try:
            await self._released()
        finally:
            self.in_flight -= 1
        return PlainTextResponse("released")

    async def sse(self, request: Request) -> Response:
        self.seen.append(await self._describe(request))

        async def events() -> Any:
            yield b'data: {"n":1}\n\n'
            await self._released()
            yield b'data: {"n":2}\n\n'
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def status(self, request: Request) -> Response:
        code = request.path_params["code"]
        return JSONResponse({"detail": {"msg": f"status {code}"}}, status_code=code, headers={"x-toy": "yes"})

    async def echo(self, request: Request) -> Response:
        described = await self._describe(request)
        self.seen.append(described)
        return JSONResponse(described)

    @staticmethod
    async def _describe(request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": (await request.body()).decode(errors="replace"),
        }


@pytest.fixture(scope="module")
def toy_server() -> Iterator[Toy]:
    server = Toy().start()
    yield server
    server.stop()


@pytest.fixture
def toy(toy_server: Toy) -> Iterator[Toy]:
    toy_server.reset()
    yield toy_server
    toy_server.release.set()  # let anything still held finish
    toy_server.reset()


def static_entries(toy_url: str, dead_port: int) -> list[dict[str, Any]]:
    base = {"routing": "label", "mode": "single-shot", "health_url": "/ready"}
    return [
        {**base, "label": "m", "app": "llm/m", "runner_url": f"{toy_url}/models/m", "capacity": 1},
        {**base, "label": "m2", "app": "llm/m2", "runner_url": f"{toy_url}/models/m2", "capacity": 2},
        {**base, "label": "persist", "app": "llm/p", "runner_url": f"{toy_url}/models/p", "mode": "persistent"},
        {**base, "label": "exact", "app": "llm/e", "runner_url": f"{toy_url}/models/e", "healthy_status_code": 204},
        # unreachable app, healthy health URL: transport errors on the proxy path
        {
            **base,
            "label": "dead",
            "app": "llm/d",
            "runner_url": f"http://127.0.0.1:{dead_port}/x",
            "health_url": f"{toy_url}/models/dead/ready",
        },
    ]


@pytest.fixture(scope="module")
def static_orch(toy_server: Toy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
    path = tmp_path_factory.mktemp("live") / "runners.json"
    path.write_text(json.dumps({"runners": static_entries(toy_server.url, free_port())}))
    with Orchestrator(runners=path, health_interval=0.1, health_timeout=0.5) as server:
        yield server


@pytest.fixture(scope="module")
def dyn_orch() -> Iterator[Orchestrator]:
    with Orchestrator(secret=SECRET, heartbeat_interval=0.2, heartbeat_ttl=1.0) as server:
        yield server


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def runner(stats: dict, key: str) -> dict:
    return Orchestrator.runner(stats, key)


# ---------------------------------------------------------------------------------------------------
# 1. validation: llm_runner's validator and the stand-in's agree, case by case

GOOD = {"label": "a", "runner_url": "http://app:8000/models/a", "health_url": "/ready", "app": "llm/a"}


def variant(**fields: Any) -> str:
    entry = {**GOOD, **fields}
    return json.dumps({"runners": [{k: v for k, v in entry.items() if v is not ...}]})


CASES: list[tuple[str, str, bool, bool]] = [  # (name, document, off-chain ok, on-chain ok)
    ("minimal", variant(), True, False),
    ("priced", variant(price_info={"price": 0.5}), True, True),
    ("price as numeric string", variant(price_info={"price": "0.5"}), True, True),
    ("price not a number (json.Number)", variant(price_info={"price": "0.5USD"}), False, False),
    ("price zero", variant(price_info={"price": 0}), True, False),
    ("price negative", variant(price_info={"price": -1}), True, False),
    ("currency USD padded", variant(price_info={"price": 1, "currency": " USD "}), True, True),
    ("currency eur", variant(price_info={"price": 1, "currency": "eur"}), True, False),
    ("unit 720p", variant(price_info={"price": 1, "unit": "720p"}), True, True),
    ("unit FIXED", variant(price_info={"price": 1, "unit": "FIXED"}), True, True),
    ("unit minute", variant(price_info={"price": 1, "unit": "minute"}), True, False),
    ("no label", variant(label=...), False, False),
    ("label untrimmed", variant(label=" a"), False, False),
    ("label with / routed by label", variant(label="a/b", routing="label"), False, False),
    ("label with / routed by id", variant(label="a/b"), True, False),
    ("routing padded", variant(routing=" label "), True, False),
    ("routing bogus", variant(routing="name"), False, False),
    ("runner_url relative", variant(runner_url="/models/a"), False, False),
    ("runner_url ftp", variant(runner_url="ftp://app/x"), False, False),
    ("runner_url no host", variant(runner_url="http:///x"), False, False),
    ("runner_url space in host", variant(runner_url="http://ap p:8000/"), False, False),
    ("runner_url bad port", variant(runner_url="http://app:80x/"), False, False),
    ("runner_url upper scheme", variant(runner_url="HTTP://app:8000/m"), True, False),
    ("health_url absolute", variant(health_url="https://other/ready"), True, False),
    ("health_url relative no slash", variant(health_url="ready"), False, False),
    ("health_url empty", variant(health_url=""), False, False),
    ("health_url missing", variant(health_url=...), False, False),
    ("health_url bad escape", variant(health_url="/re%zzady"), False, False),
    ("healthy_status_code 0 means 200", variant(healthy_status_code=0), True, False),
    ("healthy_status_code 204", variant(healthy_status_code=204), True, False),
    ("healthy_status_code 99", variant(healthy_status_code=99), False, False),
    ("healthy_status_code 600", variant(healthy_status_code=600), False, False),
    ("app missing", variant(app=...), False, False),
    ("app untrimmed", variant(app="llm/a "), False, False),
    ("metadata 1024 bytes", variant(metadata="x" * 1024), True, False),
    ("metadata 1025 bytes", variant(metadata="x" * 1025), False, False),
    ("metadata 513 two-byte chars", variant(metadata="é" * 513), False, False),
    ("metadata U+FFFD", variant(metadata="a\ufffdb"), False, False),
    ("mode single_shot alias", variant(mode="single_shot"), True, False),
    ("mode capitalised", variant(mode="Single-Shot"), False, False),
    ("capacity 0 means 1", variant(capacity=0), True, False),
    ("capacity negative", variant(capacity=-1), False, False),
    ("capacity fractional", variant(capacity=1.5), False, False),
    ("capacity string", variant(capacity="2"), False, False),
    ("gpu device index", variant(gpu=0), True, False),
    ("gpu object", variant(gpu={"id": "0", "name": "RTX 3060", "vram_mb": 12288}), True, False),
    ("gpu vram fractional", variant(gpu={"vram_mb": 1.5}), False, False),
    ("gpu id not a string", variant(gpu={"id": 0}), False, False),
    ("proxy not a bool", variant(proxy="yes"), False, False),
    ("unknown fields ignored", variant(token="x", extra={"a": 1}), True, False),
    (
        "keys match case-insensitively",
        json.dumps({"runners": [{"LABEL": "a", **{k: v for k, v in GOOD.items() if k != "label"}}]}),
        True,
        False,
    ),
    ("duplicate labels", json.dumps({"runners": [GOOD, GOOD]}), False, False),
    ("top level array", json.dumps([GOOD]), False, False),
    ("runners not an array", json.dumps({"runners": GOOD}), False, False),
    ("no runners key", json.dumps({"other": 1}), True, True),
    ("entry not an object", json.dumps({"runners": ["a"]}), False, False),
]


def python_accepts(doc: str, on_chain: bool) -> tuple[bool, str]:
    try:
        rj.loads(doc, on_chain=on_chain)
    except rj.RunnersJSONError as exc:
        return False, str(exc)
    return True, ""


async def standin_accepts(http: httpx.AsyncClient, orch: Orchestrator, doc: str, on_chain: bool) -> tuple[bool, str]:
    response = await http.post(orch.url + "/_validate" + ("?onchain=1" if on_chain else ""), content=doc)
    assert response.status_code in (200, 400), response.text
    return response.status_code == 200, response.text.strip()


async def test_validators_agree_with_go_rules(static_orch: Orchestrator, http: httpx.AsyncClient) -> None:
    problems = []
    for name, doc, offchain_ok, onchain_ok in CASES:
        for on_chain, expected in ((False, offchain_ok), (True, onchain_ok)):
            ours, our_msg = python_accepts(doc, on_chain)
            theirs, their_msg = await standin_accepts(http, static_orch, doc, on_chain)
            if not (ours == theirs == expected):
                problems.append(f"{name} on_chain={on_chain}: want {expected}, llm_runner {ours} ({our_msg}), "
                                f"stand-in {theirs} ({their_msg})")  # fmt: skip
    assert not problems, "\n".join(problems)


async def test_both_validators_say_the_same_thing(static_orch: Orchestrator, http: httpx.AsyncClient) -> None:
    """The messages are go-livepeer's own (with the entry index)."""
    for doc, message in [
        (variant(label=" a"), "runners[0]: label is required and must be trimmed"),
        (variant(mode="x"), 'runners[0]: mode must be "persistent" or "single-shot"'),
        (json.dumps({"runners": [GOOD, GOOD]}), "runners[1]: duplicate label"),
        (variant(metadata="x" * 1025), "runners[0]: metadata must be at most 1024 bytes"),
    ]:
        assert python_accepts(doc, False)[1].startswith(message)
        assert (await standin_accepts(http, static_orch, doc, False))[1].startswith(message)


# ---------------------------------------------------------------------------------------------------
# 2. building and merging runners.json


def test_entries_for_models() -> None:
    options = rj.EntryOptions(
        base_url="http://llm_runner:8000/",
        capacity=2,
        version="0.1.0",
        gpus=[{"id": "GPU-abc", "name": "NVIDIA GeForce RTX 3060", "memory_total": 12 * 1024**3}],
        price="0.25",
        metadata=lambda model: {"api": "openai", "model": model},
        labels={"Qwen/Qwen2.5-7B-Instruct": "qwen"},
    )
    llama, qwen = rj.entries_for(["meta-llama/Meta-Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"], options)
    assert llama == {
        "label": "meta-llama--Meta-Llama-3.1-8B-Instruct",
        "routing": "label",
        "app": "llm/meta-llama/Meta-Llama-3.1-8B-Instruct",
        "runner_url": "http://llm_runner:8000/models/meta-llama--Meta-Llama-3.1-8B-Instruct",
        "health_url": "http://llm_runner:8000/models/meta-llama--Meta-Llama-3.1-8B-Instruct/ready",
        "mode": "single-shot",
        "capacity": 2,
        "version": "0.1.0",
        "metadata": '{"api":"openai","model":"meta-llama/Meta-Llama-3.1-8B-Instruct"}',
        "gpu": {"id": "GPU-abc", "name": "NVIDIA GeForce RTX 3060", "vram_mb": 12288},
        "price_info": {"price": 0.25, "currency": "usd", "unit": "hour"},
    }
    assert qwen["label"] == "qwen" and qwen["runner_url"].endswith("/models/Qwen--Qwen2.5-7B-Instruct")
    assert rj.validate_entries([llama, qwen], on_chain=True)[0]["price_info"]["price"] == "0.25"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (rj.EntryOptions(capacity=0), "capacity must be an integer >= 1"),
        (rj.EntryOptions(on_chain=True), "needs a positive price"),
        (rj.EntryOptions(price=0), "positive decimal"),
        (rj.EntryOptions(price="0.5USD"), "decimal number"),
        (rj.EntryOptions(unit="minute", price=1, on_chain=True), "unit must be hour, 720p, or fixed"),
        (rj.EntryOptions(labels={"a/b": "a/b"}), "label cannot contain /"),
        (rj.EntryOptions(labels={"a/b": " b"}), "label is required and must be trimmed"),
        (rj.EntryOptions(base_url="llm_runner:8000"), "invalid health_url"),  # no scheme: Go refuses it
        (rj.EntryOptions(metadata="x" * 1025), "at most 1024 bytes"),
        (rj.EntryOptions(mode="batch"), "mode must be"),
        (rj.EntryOptions(gpus=[{"id": "0"}], gpu_index=1), "gpu_index 1"),
    ],
)
def test_entry_for_refuses_what_go_refuses(options: rj.EntryOptions, message: str) -> None:
    with pytest.raises(rj.RunnersJSONError, match=message.replace("(", r"\(")):
        rj.entry_for("a/b", options)


def test_entries_for_refuses_duplicate_labels() -> None:
    with pytest.raises(rj.RunnersJSONError, match="duplicate label"):
        rj.entries_for(["a/b", "c/d"], rj.EntryOptions(labels={"a/b": "x", "c/d": "x"}))


def test_merge_into_file(tmp_path: Path) -> None:
    path = tmp_path / "runners.json"
    first = rj.entries_for(["a/one", "b/two"], rj.EntryOptions(version="1"))
    written = rj.merge_into_file(path, first)
    assert json.loads(path.read_text()) == written == {"runners": first}
    # someone else's entry and top-level key stay; our label is replaced in place
    doc = json.loads(path.read_text())
    other = {**GOOD, "label": "theirs", "mode": "persistent"}
    doc["runners"].insert(1, other)
    doc["note"] = "kept"
    path.write_text(json.dumps(doc))
    updated = rj.entry_for("b/two", rj.EntryOptions(version="2", capacity=3))
    merged = rj.merge_into_file(path, [updated])
    assert [e["label"] for e in merged["runners"]] == ["a--one", "theirs", "b--two"]
    assert merged["runners"][2] == updated and merged["runners"][1] == other and merged["note"] == "kept"
    assert json.loads(path.read_text()) == merged
    assert [p.name for p in tmp_path.iterdir()] == ["runners.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "must hold a JSON object"),
        ('{"runners": [', "not valid JSON"),
        ('{"runners": {}}', '"runners" must be an array'),
        (json.dumps({"runners": [{**GOOD, "label": "x", "capacity": -1}]}), "go-livepeer would refuse"),
        (json.dumps({"runners": [{**GOOD, "label": "zzz", "routing": "bogus"}]}), "go-livepeer would refuse"),
    ],
)
def test_merge_into_file_leaves_a_bad_file_alone(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "runners.json"
    path.write_text(content)
    with pytest.raises(rj.RunnersJSONError, match=message):
        rj.merge_into_file(path, rj.entries_for(["a/one"]))
    assert path.read_text() == content
    assert [p.name for p in tmp_path.iterdir()] == ["runners.json"]


async def test_built_entries_load_in_the_standin(static_orch: Orchestrator, http: httpx.AsyncClient) -> None:
    options = rj.EntryOptions(gpus=[{"id": 0, "name": "GPU", "vram_mb": 8192}], price=1, on_chain=True)
    doc = json.dumps(rj.document(rj.entries_for(["a/one", "b/two"], options)))
    assert await standin_accepts(http, static_orch, doc, True) == (True, await _validated(http, static_orch, doc))


async def _validated(http: httpx.AsyncClient, orch: Orchestrator, doc: str) -> str:
    return (await http.post(orch.url + "/_validate?onchain=1", content=doc)).text.strip()


def test_standin_refuses_to_start_on_a_file_go_livepeer_refuses(tmp_path: Path) -> None:
    path = tmp_path / "runners.json"
    path.write_text(json.dumps({"runners": [{**GOOD, "label": "a/b", "routing": "label"}]}))
    server = Orchestrator(runners=path)
    with pytest.raises(RuntimeError, match=r"error registering -liveRunnerConfig: runners\[0\]: label cannot"):
        server.start(timeout=20)


# ---------------------------------------------------------------------------------------------------
# 3. static runners: health polling, discovery, the single-shot proxy


async def test_health_failure_releases_sessions_and_hides_the_runner(
    static_orch: Orchestrator, toy: Toy, http: httpx.AsyncClient
) -> None:
    o = static_orch
    before = await o.until(lambda s: runner(s, "m")["status"] == "ready" and runner(s, "m")["checks"] >= 2)
    held = asyncio.create_task(http.get(o.url + "/apps/m/app/hold"))
    await o.until(lambda s: runner(s, "m")["in_use"] == 1)
    released_before = runner(before, "m")["sessions_released"]

    toy.health["m"] = 503  # one failed check is enough
    stats = await o.until(lambda s: runner(s, "m")["status"] == "unavailable")
    m = runner(stats, "m")
    assert m["in_use"] == 0 and m["sessions_released"] == released_before + 1
    assert m["failed_checks"] >= 1
    listed = [r["app"] for r in (await http.get(o.url + "/discovery")).json()[0].get("runners", [])]
    assert "llm/m" not in listed
    refused = await http.get(o.url + "/apps/m/app/echo")
    assert (refused.status_code, refused.text) == (404, "runner not found\n")
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"

    toy.release.set()  # the proxied request was not cut off: only its slot was released
    assert (await held).text == "released"
    toy.health["m"] = 200
    await o.until(lambda s: runner(s, "m")["status"] == "ready")
    assert (await http.get(o.url + "/apps/m/app/echo")).status_code == 200


async def test_health_needs_the_exact_status(static_orch: Orchestrator, toy: Toy) -> None:
    o = static_orch
    await o.until(lambda s: runner(s, "exact")["checks"] >= 2)
    assert runner(o.stats(), "exact")["status"] == "unavailable"  # 200 is not the configured 204
    toy.health["e"] = 204
    await o.until(lambda s: runner(s, "exact")["status"] == "ready")
    toy.health["e"] = 200
    await o.until(lambda s: runner(s, "exact")["status"] == "unavailable")


async def test_discovery_lists_ready_runners_by_orchestrator_url(
    static_orch: Orchestrator, toy: Toy, http: httpx.AsyncClient
) -> None:
    o = static_orch
    await o.until(lambda s: runner(s, "m")["status"] == "ready" and runner(s, "m2")["status"] == "ready")
    (entry,) = (await http.get(o.url + "/discovery")).json()
    assert entry["address"] == o.url
    by_app = {r["app"]: r for r in entry["runners"]}
    assert by_app["llm/m2"] == {
        "url": f"{o.url}/apps/m2/app",
        "app": "llm/m2",
        "mode": "single-shot",
        "capacity": 2,
        "capacity_used": 0,
        "capacity_available": 2,
    }
    assert by_app["llm/p"]["url"] == f"{o.url}/apps/persist/session"
    assert toy.url not in json.dumps(entry)  # runner_url never leaks


async def test_proxy_streams_sse_and_forwards_the_request(
    static_orch: Orchestrator, toy: Toy, http: httpx.AsyncClient
) -> None:
    o = static_orch
    await o.until(lambda s: runner(s, "m2")["status"] == "ready")
    headers = {
        "Authorization": "Bearer client-key",
        "X-Forwarded-For": "1.2.3.4",
        "Connection": "keep-alive, x-drop-me",
        "X-Drop-Me": "1",
        "Livepeer-Session-Id": "forged",
        "User-Agent": "openai-python",
    }
    body = {"model": "m2", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    url = o.url + "/apps/m2/app/v1/chat/completions?api-version=1"
    async with http.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        first = await anext(lines)
        assert first == 'data: {"n":1}'  # arrived while the app still holds the rest back
        toy.release.set()
        rest = [line async for line in lines if line]
    assert rest == ['data: {"n":2}', "data: [DONE]"]

    seen = toy.seen[-1]
    assert seen["path"] == "/models/m2/v1/chat/completions" and seen["query"] == "api-version=1"
    assert json.loads(seen["body"]) == body
    h = seen["headers"]
    assert h["authorization"] == "Bearer client-key" and h["user-agent"] == "openai-python"
    assert h["host"] == toy.url.removeprefix("http://")
    assert "x-forwarded-for" not in h and "x-drop-me" not in h
    assert h["livepeer-runner-route"] == "m2"
    session_id = h["livepeer-session-id"]
    assert session_id.startswith("session_") and session_id != "forged"
    assert len(h["livepeer-session-token"]) == 52  # base32 of an HMAC-SHA256
    assert h["livepeer-session-control"] == f"{o.url}/runner/m2/session/{session_id}"
    stats = await o.until(lambda s: runner(s, "m2")["in_use"] == 0)
    assert runner(stats, "m2")["sessions_completed"] >= 1
    assert h["livepeer-session-token"] not in json.dumps(stats) + o.log()


async def test_proxy_passes_status_and_errors_through(
    static_orch: Orchestrator, toy: Toy, http: httpx.AsyncClient
) -> None:
    o = static_orch
    await o.until(lambda s: all(runner(s, k)["status"] == "ready" for k in ("m2", "persist", "dead")))
    teapot = await http.get(o.url + "/apps/m2/app/status/418")
    assert teapot.status_code == 418 and teapot.json() == {"detail": {"msg": "status 418"}}
    assert teapot.headers["x-toy"] == "yes"
    assert (await http.post(o.url + "/apps/m2/app/status/500", json={})).status_code == 500
    unclean = await http.delete(o.url + "/apps/m2/app/v1//models")  # ServeMux redirects to the clean path
    assert unclean.status_code == 301 and unclean.headers["location"] == "/apps/m2/app/v1/models"
    echoed = (await http.delete(o.url + "/apps/m2/app/v1/models/")).json()
    assert (echoed["method"], echoed["path"]) == ("DELETE", "/models/m2/v1/models/")  # trailing slash kept

    dead = await http.get(o.url + "/apps/dead/app/v1/models")
    assert dead.status_code == 502 and dead.headers["content-type"].startswith("text/plain")
    persistent = await http.post(o.url + "/apps/persist/app/v1/chat/completions", json={})
    assert (persistent.status_code, persistent.text) == (400, "runner is not single-shot\n")
    unknown = await http.get(o.url + "/apps/nobody/app/v1/models")
    assert (unknown.status_code, unknown.text) == (404, "runner not found\n")
    bare = await http.get(o.url + "/apps/m2/app")
    assert bare.status_code == 301 and bare.headers["location"] == "/apps/m2/app/"
    root = (await http.get(o.url + "/apps/m2/app/")).json()
    assert root["path"] == "/models/m2"  # JoinPath with an empty app path keeps runner_url's path


async def test_capacity_full_is_503(static_orch: Orchestrator, toy: Toy, http: httpx.AsyncClient) -> None:
    o = static_orch
    await o.until(lambda s: runner(s, "m")["status"] == "ready" and runner(s, "m")["in_use"] == 0)
    held = asyncio.create_task(http.get(o.url + "/apps/m/app/hold"))
    await o.until(lambda s: runner(s, "m")["in_use"] == 1)
    full = await http.get(o.url + "/apps/m/app/echo")
    assert (full.status_code, full.text) == (503, "no capacity available for runner\n")
    assert runner(o.stats(), "m")["rejected_full"] >= 1
    toy.release.set()
    assert (await held).status_code == 200
    await o.until(lambda s: runner(s, "m")["in_use"] == 0)
    assert (await http.get(o.url + "/apps/m/app/echo")).status_code == 200


async def test_client_disconnect_frees_the_slot(static_orch: Orchestrator, toy: Toy) -> None:
    o = static_orch
    await o.until(lambda s: runner(s, "m")["status"] == "ready" and runner(s, "m")["in_use"] == 0)
    async with httpx.AsyncClient(timeout=10) as client:
        held = asyncio.create_task(client.get(o.url + "/apps/m/app/hold"))
        await o.until(lambda s: runner(s, "m")["in_use"] == 1)
        held.cancel()
    await o.until(lambda s: runner(s, "m")["in_use"] == 0)


# ---------------------------------------------------------------------------------------------------
# 4. dynamic registration (llm_runner.live.registration) against the stand-in


def go_durations() -> list[float]:
    return [0.2, 1.0, 5.0, 20.0, 90.0, 3600.0, 0.0005, 1.5]


def test_go_durations_round_trip() -> None:
    for seconds in go_durations():
        assert parse_go_duration(orch_mod.go_duration(seconds)) == pytest.approx(seconds)
    assert [orch_mod.go_duration(s) for s in (0.2, 5, 90, 3600)] == ["200ms", "5s", "1m30s", "1h0m0s"]
    with pytest.raises(ValueError):
        parse_go_duration("5 s")


def test_join_proxy_path_is_go_url_join_path() -> None:
    join = orch_mod.join_proxy_path
    assert join("/models/m", "v1/chat/completions") == "/models/m/v1/chat/completions"
    assert join("/models/m/", "v1/") == "/models/m/v1/"
    assert join("", "") == "/" and join("/models/m", "") == "/models/m"
    assert join("/models/m", "../../etc") == "/etc"


class Runnerish:
    """The app side: readiness and free slots that a test can change."""

    def __init__(self, config: RegistrationConfig) -> None:
        self.config, self.ready, self.capacity = config, True, 2

    def __call__(self) -> reg_mod.RunnerSnapshot:
        return self.config.snapshot(ready=self.ready, capacity=self.capacity)


def dyn_config(orch_url: str, toy: Toy, **overrides: Any) -> RegistrationConfig:
    fields: dict[str, Any] = {
        "orchestrator_url": orch_url,
        "orch_secret": SECRET,
        "runner_url": f"{toy.url}/models/dyn",
        "app": "llm/dyn",
        "version": "0.1.0",
        "metadata": '{"api":"openai"}',
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    return RegistrationConfig(**(fields | overrides))


async def until(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_registration_lifecycle(
    dyn_orch: Orchestrator, toy: Toy, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_runner.live")
    o = dyn_orch
    config = dyn_config(o.url, toy)
    app = Runnerish(config)
    registration = Registration(config, app)
    secrets_seen: set[str] = set()
    await registration.start()
    try:
        rid = await registration.wait_registered(10)
        secrets_seen.add(registration._secret or "")
        assert (registration.interval_s, registration.ttl_s) == (0.2, 1.0)  # "200ms", "1s" from the answer
        stats = await o.until(lambda s: s["runners"][rid]["heartbeats"] >= 3)
        r = stats["runners"][rid]
        assert (r["status"], r["capacity"], r["mode"], r["registered"]) == ("ready", 2, "single-shot", True)
        assert r["last_heartbeat"]["runner_url"] == f"{toy.url}/models/dyn"
        assert r["last_heartbeat"]["metadata"] == '{"api":"openai"}'

        # a dynamic runner is routed by its id
        echoed = await http.get(f"{o.url}/apps/{rid}/app/v1/models")
        assert echoed.status_code == 200 and echoed.json()["headers"]["livepeer-runner-route"] == rid
        (entry,) = (await http.get(o.url + "/discovery")).json()
        assert [x["url"] for x in entry["runners"]] == [f"{o.url}/apps/{rid}/app"]

        app.capacity = 3
        registration.poke()
        await o.until(lambda s: s["runners"][rid]["capacity"] == 3)

        app.ready = False
        await o.until(lambda s: s["runners"][rid]["status"] == "unavailable")
        assert "runners" not in (await http.get(o.url + "/discovery")).json()[0]
        assert (await http.get(f"{o.url}/apps/{rid}/app/v1/models")).status_code == 404
        app.ready, app.capacity = True, 0  # ready but no slot now: still not routable
        await o.until(lambda s: s["runners"][rid]["last_heartbeat"]["status"] == "unavailable")
        app.capacity = 2
        await o.until(lambda s: s["runners"][rid]["status"] == "ready")

        # the orchestrator lost us (expired, not yet swept): 404, then a new registration
        assert (await http.post(f"{o.url}/_forget/{rid}")).status_code == 200
        stats = await o.until(lambda s: s["heartbeat_rejected"].get("404", 0) >= 1 and s["registrations"] >= 2)
        await until(lambda: registration.registered and registration.runner_id != rid)
        rid2 = registration.runner_id
        assert rid2 is not None
        secrets_seen.add(registration._secret or "")
        await o.until(lambda s: s["runners"][rid2]["status"] == "ready")

        # after an orchestrator restart the id is unknown: go-livepeer answers 401, and we register again
        assert (await http.post(f"{o.url}/_forget/{rid2}?restart=1")).status_code == 200
        await o.until(lambda s: s["heartbeat_rejected"].get("401", 0) >= 1 and s["registrations"] >= 3)
        await until(lambda: registration.registered and registration.runner_id not in (rid, rid2))
        rid3 = registration.runner_id
        assert rid3 is not None
        secrets_seen.add(registration._secret or "")
        assert registration.registrations == 3
    finally:
        await registration.stop()
    stats = await o.until(lambda s: s["runners"][rid3]["removed_reason"] == "unregister")
    assert stats["runners"][rid3]["registered"] is False and stats["unregisters"] >= 1
    logs = caplog.text + o.log()
    assert SECRET not in logs and all(secret not in logs for secret in secrets_seen)
    assert rid in caplog.text and "status ready -> unavailable" in caplog.text


async def test_registration_backs_off_until_the_orchestrator_appears(
    toy: Toy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_runner.live")
    port = free_port()
    config = dyn_config(f"http://127.0.0.1:{port}", toy, runner_id="llm-dyn")
    registration = Registration(config, Runnerish(config))
    await registration.start()
    orch = Orchestrator(port=port, secret=SECRET, heartbeat_interval=0.2, heartbeat_ttl=1.0)
    try:
        await until(lambda: registration.failures >= 3)
        assert not registration.registered
        await asyncio.to_thread(orch.start)
        assert await registration.wait_registered(10) == "llm-dyn"  # the proposed id
        await orch.until(lambda s: s["runners"]["llm-dyn"]["heartbeats"] >= 2)
        await registration.stop(unregister=False)  # a crash: no unregister, the TTL removes it
        stats = await orch.until(lambda s: s["runners"]["llm-dyn"]["removed_reason"] == "heartbeat timeout")
        assert stats["expired"] == 1 and stats["unregisters"] == 0
    finally:
        await registration.stop()
        await asyncio.to_thread(orch.stop)
    assert "unreachable" in caplog.text and SECRET not in caplog.text


async def test_registration_with_the_wrong_secret_keeps_trying(
    dyn_orch: Orchestrator, toy: Toy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_runner.live")
    wrong = "wrong-secret-also-not-logged"
    config = dyn_config(dyn_orch.url, toy, orch_secret=wrong)
    registration = Registration(config, Runnerish(config))
    before = dyn_orch.stats()["heartbeat_rejected"].get("401", 0)
    await registration.start()
    try:
        await dyn_orch.until(lambda s: s["heartbeat_rejected"].get("401", 0) >= before + 3)
        assert not registration.registered and registration.runner_id is None
    finally:
        await registration.stop()
    assert "401 invalid registration authorization" in caplog.text
    assert wrong not in caplog.text and wrong not in repr(config)


def test_registration_config_is_checked() -> None:
    base = {"orchestrator_url": "https://o:8935", "orch_secret": "s", "runner_url": "http://r:8000/m", "app": "llm/m"}
    RegistrationConfig(**base)
    for bad in ({"orchestrator_url": "o:8935"}, {"orch_secret": ""}, {"runner_url": "/m"}, {"app": " llm"}):
        with pytest.raises(ValueError):
            RegistrationConfig(**(base | bad))
    with pytest.raises(rj.RunnersJSONError):
        RegistrationConfig(**(base | {"metadata": "x" * 2000}))
    snap = RegistrationConfig(**base).snapshot(ready=True, capacity=0)
    assert snap.status == "unavailable" and snap.url == "http://r:8000/m"
