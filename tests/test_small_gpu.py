"""Several models on one small GPU, through HTTP: a runner in front of the Ollama stand-in whose GPU
has a VRAM budget and is scheduled as Ollama's sched.go (tests/support/standin_gpu.py). The runner swaps
(Ollama never evicts behind its back), learns when it does, refuses a partly offloaded model, takes
a wedged GPU out of service, advertises capacity that never adds up past the slots, and keeps the
readiness URL up while a model still streams."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest

from llm_runner.engine.launcher import free_port
from tests.conftest import LLAMA, go_body
from tests.support.orchestrator import Orchestrator
from tests.support.servers import Runner, StandIn, serving
from tests.test_cli import cli

QWEN = "Qwen/Qwen2.5-7B-Instruct"
LLAMA_TAG, QWEN_TAG = "llama3.1:8b", "qwen2.5:7b"
SIZES = {LLAMA_TAG: 6400, QWEN_TAG: 5600}  # MB loaded at 4k context: one fits an 8 GB card, not both
SLUGS = {LLAMA: LLAMA.replace("/", "--"), QWEN: QWEN.replace("/", "--")}


def small_gpu(ollama: StandIn, **knobs: object) -> None:
    ollama.script(models=[LLAMA_TAG, QWEN_TAG], vram_mb=8192, model_vram_mb=SIZES, load_seconds=0.2, **knobs)


def two_models(ollama: StandIn, host_options: str = "?parallel=2&vram_mb=8192", **env: str) -> Runner:
    return Runner({"OLLAMA_HOST": ollama.url + host_options, "MODEL_ID": f"{LLAMA},{QWEN}", **env})


async def chat(client: httpx.AsyncClient, runner: Runner, model: str, **fields: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, **fields}
    return await client.post(f"{runner.url}/models/{SLUGS[model]}/v1/chat/completions", json=body)


def upstream_of(status: dict) -> dict:
    (upstream,) = status["upstreams"]
    return upstream | {"by_model": {m["model_id"]: m for m in upstream["models"]}}


async def test_the_runner_swaps_two_models_that_do_not_fit_and_ollama_never_evicts_behind_its_back(own_ollama, client):
    small_gpu(own_ollama, tokens=5)
    with two_models(own_ollama, LLM_RUNNER_SWAP_WAIT_S="0.5") as runner:
        runner.wait_status("OK")
        upstream = upstream_of((await client.get(runner.url + "/status")).json())
        assert upstream["swapping"] and upstream["vram_mb"] == 8192
        assert upstream["by_model"][LLAMA]["resident"] and not upstream["by_model"][QWEN]["resident"]

        readiness: list[int] = []
        stop = asyncio.Event()

        async def poll() -> None:  # the orchestrator's view, all through the swaps
            while not stop.is_set():
                for slug in SLUGS.values():
                    readiness.append((await client.get(f"{runner.url}/models/{slug}/ready")).status_code)
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        answer = await chat(client, runner, QWEN)  # not loaded, and /v1 queues nothing: it waits for the swap
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] == 5
        livepeer = await client.post(runner.url + "/llm", json=go_body(max_tokens=5))
        assert livepeer.status_code == 200 and livepeer.json()["choices"][0]["finish_reason"] == "length"
        stop.set()
        await poller
        assert readiness and set(readiness) == {200}

        gpu = own_ollama.stats()["gpu"]
        assert gpu["evictions"] == 0  # every unload was the runner's, between requests
        assert gpu["loads"] == {LLAMA_TAG: 2, QWEN_TAG: 1}
        report = (await client.get(runner.url + "/status")).json()
        assert upstream_of(report)["swaps"] == 2 and upstream_of(report)["unplanned_unloads"] == 0
        metrics = (await client.get(runner.url + "/metrics")).text
        assert f'llm_runner_model_swaps_total{{upstream="{own_ollama.url}"}} 2.0' in metrics
        assert f'llm_runner_model_resident{{model="{LLAMA}",upstream="{own_ollama.url}"}} 1.0' in metrics
        speeds = {m["model_id"]: m for m in report["models"]}
        assert speeds[QWEN]["measured_requests"] == 1 and speeds[QWEN]["ttft_p50_s"] > 0


async def test_a_runner_told_nothing_learns_from_ollamas_own_eviction_and_swaps_from_then_on(own_ollama, client):
    small_gpu(own_ollama, tokens=3)
    with two_models(own_ollama, "?parallel=2") as runner:  # no VRAM figure: both are warmed, Ollama evicts one
        runner.wait_status("OK")
        await asyncio.to_thread(runner.wait_log, "they do not fit together")
        upstream = upstream_of((await client.get(runner.url + "/status")).json())
        assert upstream["swapping"] and upstream["vram_source"] == "observed" and upstream["unplanned_unloads"] == 1
        evictions = own_ollama.stats()["gpu"]["evictions"]
        for model in (LLAMA, QWEN, LLAMA):
            assert (await chat(client, runner, model)).status_code == 200
        assert own_ollama.stats()["gpu"]["evictions"] == evictions  # none since: the runner swaps


async def test_a_partly_offloaded_model_is_refused_with_what_is_on_the_cpu_unless_allowed(own_ollama, client):
    own_ollama.script(vram_mb=4096, model_vram_mb=SIZES)
    with Runner({"OLLAMA_HOST": own_ollama.url, "MODEL_ID": LLAMA}) as runner:
        runner.wait_status("ERROR")
        (model,) = (await client.get(runner.url + "/status")).json()["models"]
        assert "36% on the CPU" in model["detail"] and "LLM_RUNNER_ALLOW_OFFLOAD" in model["detail"]
        assert (await client.get(f"{runner.url}/models/{SLUGS[LLAMA]}/ready")).status_code == 503
        assert own_ollama.stats()["gpu"]["loaded"] == []  # not left on the GPU
    with serving({"OLLAMA_HOST": own_ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_ALLOW_OFFLOAD": "true"}):
        pass  # served, partly on the CPU, once the operator allows it


async def test_a_wedged_gpu_is_taken_out_of_service_by_the_canary_and_comes_back(own_ollama, client):
    env = {"LLM_RUNNER_CANARY_IDLE_S": "0.2", "LLM_RUNNER_CANARY_TIMEOUT_S": "0.5"}
    with serving({"OLLAMA_HOST": own_ollama.url, "MODEL_ID": LLAMA, **env}) as runner:
        ready = f"{runner.url}/models/{SLUGS[LLAMA]}/ready"
        own_ollama.script(wedged=True)  # the process answers /api/version; generations hang
        await until_status(client, ready, 503, within=10)
        assert "the GPU stopped generating" in (await client.get(ready)).text
        assert "canary failed" in runner.log()
        own_ollama.script(wedged=False)
        await until_status(client, ready, 200, within=10)


async def until_status(client: httpx.AsyncClient, url: str, status: int, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (await client.get(url)).status_code != status:
        assert asyncio.get_running_loop().time() < deadline, f"{url} never answered {status}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("host", "args", "expected"),
    [
        ("?parallel=2", [], {LLAMA: 1, QWEN: 1}),
        ("?parallel=3", [], {LLAMA: 2, QWEN: 1}),
        ("?parallel=4", ["--capacity", f"{LLAMA}=3", "--capacity", f"{QWEN}=1"], {LLAMA: 3, QWEN: 1}),
        ("?parallel=1", [], "1 slot(s) for 2 models"),
        ("?parallel=2", ["--capacity", "2"], "more than the 2 slot(s)"),
        ("?parallel=2", ["--capacity", f"{LLAMA}=1"], "name every model"),
    ],
)
def test_runners_json_and_ai_models_split_the_slots_between_models_sharing_an_upstream(host, args, expected):
    env = {"OLLAMA_HOST": "http://127.0.0.1:9" + host, "MODEL_ID": f"{LLAMA},{QWEN}"}
    for command in (["runners-json", "--no-gpu"], ["ai-models"]):
        result = cli(*command, *args, env=env)
        if isinstance(expected, str):
            assert result.returncode == 2 and expected in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
            continue
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        entries = document["runners"] if isinstance(document, dict) else document
        got = {e.get("app", "llm/" + e.get("model_id", "")).removeprefix("llm/"): e["capacity"] for e in entries}
        assert got == expected


async def test_dynamic_registrations_never_advertise_more_than_the_slots_and_publish_measured_speed(own_ollama, client):
    small_gpu(own_ollama, tokens=8, token_rate=200)
    secret = "orch-s3cret"
    with Orchestrator(secret=secret, heartbeat_interval=0.1, heartbeat_ttl=1.0) as orch:
        port = free_port()
        env = {
            "LLM_RUNNER_LIVE_ORCHESTRATOR_URL": orch.url,
            "LLM_RUNNER_LIVE_ORCH_SECRET": secret,
            "LLM_RUNNER_LIVE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "LLM_RUNNER_SWAP_WAIT_S": "0.2",
        }
        runner = Runner(
            {"OLLAMA_HOST": own_ollama.url + "?parallel=2&vram_mb=8192", "MODEL_ID": f"{LLAMA},{QWEN}", **env},
            port=port,
        )
        with runner:
            runner.wait_status("OK")

            def ours(stats: dict) -> list[dict]:
                return [r for r in stats["runners"].values() if r["registered"]]

            await orch.until(lambda s: len(ours(s)) == 2 and all(r["status"] == "ready" for r in ours(s)))
            for model in (QWEN, LLAMA, QWEN):
                assert (await chat(client, runner, model)).status_code == 200
            stats = await orch.until(
                lambda s: all(json.loads(r["last_heartbeat"]["metadata"])["tokens_per_s"] for r in ours(s))
            )
            assert stats["capacity_sums"] and max(stats["capacity_sums"]) <= 2  # the upstream's 2 slots
            for registration in ours(stats):
                metadata = json.loads(registration["last_heartbeat"]["metadata"])
                assert set(metadata) >= {"model", "quantization", "context", "tokens_per_s", "ttft_p50_ms", "resident"}
                assert len(registration["last_heartbeat"]["metadata"].encode()) <= 1024


async def test_shutting_down_keeps_the_readiness_url_up_while_the_model_still_streams(own_ollama, client):
    own_ollama.script(tokens=40, token_rate=20)
    with serving({"OLLAMA_HOST": own_ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_DRAIN_TIMEOUT_S": "30"}) as runner:
        ready = f"{runner.url}/models/{SLUGS[LLAMA]}/ready"
        body = go_body(stream=True, max_tokens=40)
        async with client.stream("POST", runner.url + "/llm", json=body) as stream:
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith("data: ")
            runner.signal(signal.SIGTERM)
            await asyncio.to_thread(runner.wait_log, "shutting down")
            answer = await client.get(ready)
            assert answer.status_code == 200 and answer.json()["status"] == "draining"
            assert answer.json()["streaming"] == 1
            rest = [line async for line in lines if line]
        assert rest[-1] == "data: [DONE]"


def test_doctor_says_what_does_not_fit_and_what_is_on_the_cpu(own_ollama):
    own_ollama.script(vram_mb=4096, model_vram_mb=SIZES)
    httpx.post(own_ollama.url + "/api/chat", json={"model": LLAMA_TAG, "messages": []}, timeout=10)  # loaded by hand
    env = {"OLLAMA_HOST": own_ollama.url + "?vram_mb=4096", "MODEL_ID": LLAMA}
    result = cli("doctor", "--runner-url", "http://127.0.0.1:9", env=env)
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("FAIL") and "needs ~6.3 GB" in line and "4.0 GB" in line for line in lines), lines
    assert any(line.startswith("FAIL") and "llama3.1:8b is loaded 36% on the CPU" in line for line in lines), lines
