"""Many GPUs, one runner: several Ollamas behind one OLLAMA_HOST list.

Each Ollama is a stand-in process of its own on loopback (tests/support/standin.py). Requests spread over
all of them; one killed mid-run costs only its own streams; an upstream lacking a model never gets
it; pulls of one tag happen one at a time; /status and /metrics show every upstream × model; a bad
OLLAMA_HOST list stops the service at start with a clear message. `llm-runner compose` writes the
Compose file and aiModels.json for such a host, checked by the real tools.
Everything waits on conditions with deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from llm_runner.ops.compose import ComposeOptions, ollama_host, render
from llm_runner.ops.yaml_out import Folded, scalar, to_yaml
from llm_runner.settings import Settings
from llm_runner.upstream.hosts import parse_upstreams
from llm_runner.upstream.shares import capacities_for
from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import ROOT, Runner, StandIn, serving

QWEN = "Qwen/Qwen2.5-0.5B-Instruct"
QWEN_TAG = "qwen2.5:0.5b"
LLAMA_TAG = "llama3.1:8b"
OTHER, OTHER_TAG = "acme/Other-8B-Instruct", "other:8b"  # an operator's LLM_RUNNER_MODEL_MAP entry


# --- helpers -------------------------------------------------------------------------------------------


@contextmanager
def standins(count: int) -> Iterator[list[StandIn]]:
    """`count` stand-in Ollamas, each its own process, started side by side and always stopped."""
    servers = [StandIn() for _ in range(count)]
    try:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda s: s.start(), servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


def hosts(servers: list[StandIn], **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return ",".join(f"{s.url}?{query}" if query else s.url for s in servers)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy; fail after `within` seconds with the last value."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g}s: {what} (last: {value!r})")
        await asyncio.sleep(0.03)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def status(client: httpx.AsyncClient, runner: Runner) -> dict:
    return (await client.get(runner.url + "/status")).json()


async def capacity_is(client: httpx.AsyncClient, runner: Runner, slots: int) -> None:
    async def both() -> bool:
        from_status = (await status(client, runner))["capacity"]
        from_metrics = metric((await client.get(runner.url + "/metrics")).text, "llm_runner_capacity")
        return from_status == slots and from_metrics == slots

    await eventually(both, f"/status capacity and /metrics llm_runner_capacity == {slots}")


async def stats(server: StandIn) -> dict:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(server.url + "/_stats")).json()


class Stream:
    """One go-livepeer-style streaming request; `started` is set at the first data line."""

    def __init__(self, client: httpx.AsyncClient, runner: Runner, **fields: object) -> None:
        self.started = asyncio.Event()
        self.status = 0
        self.body = b""
        self.task = asyncio.create_task(self._run(client, runner, go_body(stream=True, **fields)))

    async def _run(self, client: httpx.AsyncClient, runner: Runner, body: dict) -> None:
        async with client.stream("POST", runner.url + "/llm", json=body) as response:
            self.status = response.status_code
            async for chunk in response.aiter_bytes():
                self.body += chunk
                if b"data: " in self.body:
                    self.started.set()

    async def result(self) -> Any:
        await self.task
        assert self.status == 200, self.body
        return parse_livepeer_stream(self.body, LLAMA)


def served_tags(server_stats: dict) -> list[str]:
    return [body["model"] for body in server_stats["chat_bodies"]]


# --- routing, failure and return -----------------------------------------------------------------------


async def test_requests_spread_a_killed_upstream_costs_only_its_streams_and_it_is_used_again(client):
    with standins(3) as servers:
        a, b, c = servers
        env = {"OLLAMA_HOST": hosts(servers, parallel="2"), "MODEL_ID": LLAMA, "LLM_RUNNER_LOADING_WAIT_S": "5"}
        with serving(env) as runner:
            await capacity_is(client, runner, 6)

            # Six at once on six slots: two on each upstream, none queued behind another.
            for server in servers:
                server.script(tokens=20, token_rate=40)
            first = [Stream(client, runner, max_tokens=100) for _ in range(6)]
            for stream in first:
                assert (await stream.result()).finish_reason == "stop"
            for server in servers:
                seen = await stats(server)
                assert seen["started"] == 2 and seen["max_open"] == 2, (server.url, seen)

            # Every slot streaming, four more waiting for one; then B dies without a goodbye.
            for server in servers:
                server.script(tokens=60, token_rate=30)  # 2 s a stream
            streaming = [Stream(client, runner, max_tokens=100) for _ in range(6)]
            await asyncio.wait_for(asyncio.gather(*(s.started.wait() for s in streaming)), 15)
            waiting = [Stream(client, runner, max_tokens=100) for _ in range(4)]
            await eventually(lambda: _queued(client, runner, 4), "four requests queued")
            healths: list[str] = []
            watching = asyncio.create_task(_watch_health(client, runner, healths))
            b.process.kill()

            ends = [await s.result() for s in streaming]
            cut = [e for e in ends if e.finish_reason == "error"]
            assert len(cut) == 2, [e.finish_reason for e in ends]  # B's two, with the finish chunk and [DONE]
            assert all(0 < e.usage["completion_tokens"] < 60 for e in cut)
            assert all(e.finish_reason == "stop" and e.usage["completion_tokens"] == 60 for e in ends if e not in cut)
            for stream in waiting:  # not streaming yet when B died: served by A and C
                end = await stream.result()
                assert end.finish_reason == "stop" and end.usage["completion_tokens"] == 60

            await capacity_is(client, runner, 4)
            report = await status(client, runner)
            watching.cancel()
            assert healths and set(healths) == {"OK"}, healths
            assert report["status"] == "OK"
            down = {u["url"]: u for u in report["upstreams"]}
            assert down[b.url]["down_since"] is not None and down[b.url]["models"][0]["status"] == "LOADING"
            assert all(down[s.url]["down_since"] is None for s in (a, c))
            # A and C ran their two of the first six, their four of the next six, and the four that waited
            assert (await stats(a))["started"] + (await stats(c))["started"] == 4 + 4 + 4

            # B comes back on the same port: checked, warmed and given work again.
            b.start()
            await capacity_is(client, runner, 6)
            for server in servers:
                server.script(tokens=20, token_rate=40)
            again = [Stream(client, runner, max_tokens=100) for _ in range(6)]
            for stream in again:
                assert (await stream.result()).finish_reason == "stop"
            assert (await stats(b))["started"] == 2


async def _queued(client: httpx.AsyncClient, runner: Runner, count: int) -> bool:
    return (await status(client, runner))["queued"] == count


async def _watch_health(client: httpx.AsyncClient, runner: Runner, seen: list[str]) -> None:
    while True:
        seen.append((await client.get(runner.url + "/health")).json()["status"])
        await asyncio.sleep(0.02)


async def test_an_upstream_without_a_model_gets_none_of_its_requests_and_status_shows_every_pair(client):
    with standins(2) as (llama_only, both):
        both.script(models=[LLAMA_TAG, OTHER_TAG])
        env = {
            "OLLAMA_HOST": f"{llama_only.url}?parallel=2&models={LLAMA},{both.url}?parallel=2",
            "MODEL_ID": f"{LLAMA},{OTHER}",
            "LLM_RUNNER_MODEL_MAP": json.dumps({OTHER: OTHER_TAG}),
        }
        with serving(env) as runner:
            await capacity_is(client, runner, 4)
            report = await status(client, runner)
            pairs = {(u["url"], m["model_id"]): m["status"] for u in report["upstreams"] for m in u["models"]}
            assert pairs == {(llama_only.url, LLAMA): "OK", (both.url, LLAMA): "OK", (both.url, OTHER): "OK"}
            slots = {m["model_id"]: m["ready_slots"] for m in report["models"]}
            assert slots == {LLAMA: 4, OTHER: 2}
            settings = Settings(ollama_host=env["OLLAMA_HOST"], model_id=env["MODEL_ID"])
            # what ai-models and the registrations advertise: `both`'s 2 slots split, 4 in all, not 6
            assert capacities_for(settings, [LLAMA, OTHER]) == {LLAMA: 3, OTHER: 1}
            assert {m["model_id"]: m["advertised_capacity"] for m in report["models"]} == {LLAMA: 3, OTHER: 1}

            for server in (llama_only, both):
                server.script(tokens=10, token_rate=50)
            answers = await asyncio.gather(
                *(client.post(runner.url + "/llm", json=go_body(model=OTHER, max_tokens=100)) for _ in range(6)),
                *(client.post(runner.url + "/llm", json=go_body(max_tokens=100)) for _ in range(4)),
            )
            assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
            assert [r.json()["choices"][0]["finish_reason"] for r in answers] == ["stop"] * 10
            assert OTHER_TAG not in served_tags(await stats(llama_only))
            assert served_tags(await stats(both)).count(OTHER_TAG) == 6
            assert (await stats(llama_only))["pulls"] == 0  # never asked to fetch what it does not serve
            assert LLAMA_TAG in served_tags(await stats(llama_only))


# --- pulls ---------------------------------------------------------------------------------------------


async def test_upstreams_sharing_a_models_volume_pull_a_tag_once(client):
    """Two upstreams over one model store: one stand-in reached by two names, as two Ollamas on one
    volume see the same files. The second waits for the first's pull and then finds the model."""
    with standins(1) as (server,):
        server.script(models=[], pull_delay=0.1)
        port = urlsplit(server.url).port
        env = {"OLLAMA_HOST": f"{server.url}?parallel=1,http://localhost:{port}?parallel=1", "MODEL_ID": LLAMA}
        with serving(env, timeout=30) as runner:
            await capacity_is(client, runner, 2)
            assert (await stats(server))["pulls"] == 1
            answer = await client.post(runner.url + "/llm", json=go_body())
            assert answer.status_code == 200


async def test_pulls_of_one_tag_happen_one_at_a_time(client):
    with standins(2) as servers:
        for server in servers:
            server.script(models=[], pull_delay=0.15)  # about 0.75 s a pull
        # ?parallel=1: a bare list of URLs does not start yet (test_a_list_of_bare_urls_starts)
        with Runner({"OLLAMA_HOST": hosts(servers, parallel="1"), "MODEL_ID": LLAMA}) as runner:
            both_pulling = []

            async def ready_watching_pulls() -> bool:
                report = await status(client, runner)
                phases = [u["models"][0]["phase"] for u in report["upstreams"]]
                if phases.count("pulling") > 1:
                    both_pulling.append(phases)
                return report["capacity"] == 2

            await eventually(ready_watching_pulls, "both upstreams pulled and warmed", within=30)
            assert not both_pulling
            assert [(await stats(s))["pulls"] for s in servers] == [1, 1]
            # The runner's own account, in order: one upstream's pull ends before the other's begins.
            lines = runner.log().splitlines()
            spans = []
            for server in servers:
                mine = [i for i, line in enumerate(lines) if f"on {server.url}:" in line and "pulling" in line]
                assert mine, runner.log()[-3000:]
                spans.append((mine[0], mine[-1]))
            first, second = sorted(spans)
            assert first[1] < second[0], "\n".join(lines[first[0] : second[1] + 1])


# --- a bad list stops the service at start -------------------------------------------------------------

BAD_LISTS = [
    ("http://127.0.0.1:9?parallel=1,,http://127.0.0.1:10", LLAMA, "has an empty entry"),
    ("http://127.0.0.1:9?parallel=0", LLAMA, "parallel must be a whole number >= 1"),
    ("http://127.0.0.1:9?parallel=two", LLAMA, "parallel must be a whole number >= 1"),
    ("http://127.0.0.1:9?slots=2", LLAMA, "unknown option(s) slots"),
    ("http://127.0.0.1:9?parallel=1,127.0.0.1:9", LLAMA, "lists a server twice"),
    ("ftp://127.0.0.1:9", LLAMA, "only http:// and https:// are supported"),
    ("http://127.0.0.1:9?models=acme/Unknown-7B", LLAMA, "names models this runner does not serve: acme/Unknown-7B"),
    (f"http://127.0.0.1:9?models={LLAMA}", f"{LLAMA},{QWEN}", f"no upstream in OLLAMA_HOST serves {QWEN}"),
    ("http://127.0.0.1:9?models", LLAMA, "'http://127.0.0.1:9?models'"),
    ("http://127.0.0.1:9?models=", LLAMA, "empty"),
]


@pytest.mark.parametrize(("value", "models", "needle"), BAD_LISTS)
def test_invalid_ollama_host_lists_stop_the_service_at_start_with_a_clear_message(
    value, models, needle, monkeypatch, capsys
):
    """`serve` in this process (fast; `ollama` is imported already, see the tests below for what that hides)."""
    import uvicorn

    from llm_runner.ops.cli import main

    for name in list(os.environ):
        if name.startswith(("LLM_RUNNER_", "OLLAMA_", "MODEL_ID", "AUTH_TOKEN", "VERSION")):
            monkeypatch.delenv(name)
    for name, setting in _serve_env(value, models).items():
        monkeypatch.setenv(name, setting)
    monkeypatch.setattr(uvicorn.Server, "run", lambda *_: pytest.fail(f"{value!r} was accepted"))
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--port", "1"])
    output = capsys.readouterr().err
    assert stopped.value.code == 2 and needle in output, output
    assert output.startswith("llm-runner: error:") and len(output.strip().splitlines()) == 1, output


async def test_the_service_process_exits_2_with_one_line():
    code, output = await _serve(f"http://127.0.0.1:9?models={LLAMA}", f"{LLAMA},{QWEN}")
    assert code == 2 and output == f"llm-runner: error: no upstream in OLLAMA_HOST serves {QWEN}\n", output


async def test_a_bad_list_without_options_on_its_first_entry_is_reported_not_a_traceback():
    code, output = await _serve("http://127.0.0.1:9,,http://127.0.0.1:10", LLAMA)
    assert code == 2 and "has an empty entry" in output and "Traceback" not in output, output


def test_a_list_of_bare_urls_starts():
    """`OLLAMA_HOST=http://a:11434,http://b:11434`, no options: the simplest list must start (LOADING
    while nothing answers there)."""
    with Runner({"OLLAMA_HOST": "http://127.0.0.1:9,http://127.0.0.1:10", "MODEL_ID": LLAMA}) as runner:
        assert httpx.get(runner.url + "/health").json()["status"] == "LOADING"


def _serve_env(ollama_hosts: str, model_id: str) -> dict[str, str]:
    return {"OLLAMA_HOST": ollama_hosts, "MODEL_ID": model_id, "LLM_RUNNER_BACKEND": "ollama"}


async def _serve(ollama_hosts: str, model_id: str) -> tuple[int, str]:
    """`llm-runner serve` as its own process, as the container starts it; it must exit by itself."""
    ours = ("LLM_RUNNER_", "OLLAMA_", "MODEL_ID", "AUTH_TOKEN", "VERSION")
    base = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "llm_runner", "serve", "--port", "1"],
        cwd=ROOT,
        env={**base, **_serve_env(ollama_hosts, model_id)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
    return process.returncode or 0, output.decode(errors="replace")


# --- llm-runner compose --------------------------------------------------------------------------------


def compose_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    ours = ("LLM_RUNNER_", "OLLAMA_", "MODEL_ID", "AUTH_TOKEN")
    base = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return subprocess.run(
        [sys.executable, "-m", "llm_runner", "compose", *args],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_writes_one_ollama_per_gpu_a_runner_over_all_and_a_matching_ai_models_json(tmp_path):
    out = tmp_path / "stack" / "gpus.yml"
    out.parent.mkdir()
    result = compose_cli(
        "--gpus", "0,1,2,3", "--parallel", "2", "--auth-token", "s3cr$t", "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "capacity 8" in result.stderr
    document = yaml.safe_load(out.read_text())  # the emitter's YAML, read by a real YAML parser
    services = document["services"]
    ollamas = [f"ollama-{i}" for i in range(4)]
    assert list(services) == ["llm_runner", *ollamas, "orchestrator"]
    volumes = set()
    for i, name in enumerate(ollamas):
        service = services[name]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "device_ids": [str(i)], "capabilities": ["gpu"]}
        assert service["environment"]["OLLAMA_NUM_PARALLEL"] == "2"
        assert "ports" not in service  # only the runner talks to Ollama
        volumes.update(service["volumes"])
    assert volumes == {"ollama-models:/root/.ollama/models"}  # one models volume for all
    assert set(document["volumes"]) == {"ollama-models", "lpdata"}

    runner = services["llm_runner"]
    specs = parse_upstreams(runner["environment"]["OLLAMA_HOST"])
    assert [(urlsplit(s.url).hostname, s.parallel, s.models) for s in specs] == [(n, 2, None) for n in ollamas]
    assert runner["environment"]["AUTH_TOKEN"] == "s3cr$$t"  # Compose reads `$$` as one `$`
    assert set(runner["depends_on"]) == set(ollamas)
    assert runner["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["utility"]}
    ]
    assert (out.parent / runner["build"]["context"]).resolve() == ROOT

    orchestrator = services["orchestrator"]
    assert orchestrator["image"] == "livepeer/go-livepeer:v0.9.1"
    pipeline = yaml.safe_load((ROOT / "compose" / "llm-pipeline.yml").read_text())["services"]["orchestrator"]
    assert shlex.split(orchestrator["command"]) == shlex.split(pipeline["command"])  # the same flags
    assert orchestrator["volumes"][0] == "./aiModels.json:/cfg/aiModels.json:ro"

    (entry,) = json.loads((out.parent / "aiModels.json").read_text())
    assert entry["model_id"] == LLAMA and entry["url"] == "http://llm_runner:8000"
    assert entry["capacity"] == 8 and entry["token"] == "s3cr$t"
    settings = Settings(ollama_host=runner["environment"]["OLLAMA_HOST"], model_id=LLAMA)
    assert capacities_for(settings, [LLAMA]) == {LLAMA: entry["capacity"]}  # what the runner itself will admit


def test_compose_file_passes_compose_v2_the_compose_spec_schema_and_dclint(tmp_path):
    from tests.support.operator_tools import check_compose, unknown_go_livepeer_flags

    ai_models = tmp_path / "cfg" / "aiModels.json"
    ai_models.parent.mkdir()
    out = tmp_path / "gpus.yml"
    args = ["--gpus", "0,1,2,3", "--parallel", "3", "--model-id", LLAMA, "--model-id", QWEN]
    result = compose_cli(*args, "--out", str(out), "--ai-models", str(ai_models), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model = check_compose(out)
    services = model["services"]
    assert sorted(services) == ["llm_runner", "ollama-0", "ollama-1", "ollama-2", "ollama-3", "orchestrator"]
    assert not unknown_go_livepeer_flags(services["orchestrator"]["command"])
    mounts = {v["target"]: v["source"] for v in services["orchestrator"]["volumes"]}
    assert mounts["/cfg/aiModels.json"] == str(ai_models)
    assert {services[f"ollama-{i}"]["environment"]["OLLAMA_MAX_LOADED_MODELS"] for i in range(4)} == {"2"}
    entries = json.loads(ai_models.read_text())
    assert {e["model_id"]: e["capacity"] for e in entries} == {LLAMA: 12, QWEN: 12}
    assert all("token" not in e for e in entries)
    # GPU UUIDs work too, and so does printing to stdout
    printed = compose_cli("--gpus", "GPU-1a2b,GPU-3c4d", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    document = yaml.safe_load(printed.stdout)
    assert document["services"]["ollama-1"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == [
        "GPU-3c4d"
    ]
    (tmp_path / "uuids.yml").write_text(printed.stdout)
    check_compose(tmp_path / "uuids.yml")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--gpus", ""], "at least one GPU"),
        (["--gpus", "0,0"], "lists a GPU twice"),
        (["--gpus", "0", "--parallel", "0"], "--parallel must be >= 1"),
        (["--gpus", "0", "--model-id", "acme/Unknown-7B"], "acme/Unknown-7B"),
    ],
)
def test_compose_refuses_what_cannot_work(tmp_path, args, needle):
    result = compose_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "value",
    ["plain", "-1", "1", "0.5", ".5", "1e3", "yes", "No", "null", "~", "on", "a: b", "#x", "x #y", "${X:-1}",
     "'q'", '"q"', "a,b?c=d", "./x:/y:ro", "../x", "...", ".inf", "-", "---", "tab\there", "ünï", "", "true",
     "@at", "key:", "0x1F", "010", "8000:8000", "1_000", "a/b", "/x", "x-y_z.1"],
)  # fmt: skip
def test_the_emitter_writes_every_string_back_as_the_same_string(value):
    assert yaml.safe_load(to_yaml({"k": value, "l": [value]})) == {"k": value, "l": [value]}, scalar(value)


def test_the_emitter_round_trips_nested_documents():
    document = {
        "a": {"b": [{"c": 1, "d": [True, None, "x"]}, "e"], "f": {}, "g": []},
        "h": None,
        "i": Folded.of(["-one two", '-three \'{"k":"v"}\'']),
    }
    text = to_yaml(document, {("a", "b"): "a comment"}, ["header"])
    assert text.startswith("# header\n") and "b:  # a comment" in text
    loaded = yaml.safe_load(text)
    assert loaded == {**document, "i": '-one two -three \'{"k":"v"}\''}


def test_rendered_compose_is_the_yaml_of_its_document():
    options = ComposeOptions(gpus=("0", "1"), parallel=2, build_context="..")
    assert ollama_host(options.gpus, 2) == "http://ollama-0:11434?parallel=2,http://ollama-1:11434?parallel=2"
    loaded = yaml.safe_load(render(options))
    assert loaded["services"]["llm_runner"]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert "dclint disable-line no-build-and-image" in render(options)
    assert "build" not in yaml.safe_load(render(ComposeOptions(gpus=("0",))))["services"]["llm_runner"]
