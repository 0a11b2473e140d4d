"""llm-runner as a Livepeer live runner, through a stand-in orchestrator written from go-livepeer's
live_runner.go and ai_http.go: static registration from `llm-runner runners-json`, the 5 s health
poll (here faster), the single-shot proxy, and dynamic registration with heartbeats; over each
upstream kind (Ollama, an OpenAI-compatible engine), see conftest.py."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llm_runner.engine.launcher import free_port
from tests.conftest import LLAMA
from tests.support.orchestrator import Orchestrator
from tests.support.servers import ROOT, Runner, StandIn, serving
from tests.test_cli import cli

SLUG = LLAMA.replace("/", "--")
MESSAGES = [{"role": "user", "content": "hello there"}]
SECRET = "orch-s3cret-value"
pytestmark = pytest.mark.each_upstream_kind


def write_runners_json(path: Path, runner: Runner, *extra: str) -> Path:
    result = cli("runners-json", "--model-id", LLAMA, "--url", runner.url, "--no-gpu", "--write", str(path), *extra)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def live(tmp_path: Path, own_ollama: StandIn) -> Iterator[tuple[StandIn, Runner, Orchestrator]]:
    """An upstream stand-in, a runner (2 slots), and an orchestrator loaded with its runners.json."""
    env = {"OLLAMA_HOST": own_ollama.entry, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": "2"}
    with serving(env) as runner:
        path = write_runners_json(tmp_path / "runners.json", runner)
        with Orchestrator(runners=path, health_interval=0.1, health_timeout=3.0) as orch:
            yield own_ollama, runner, orch


def app_url(orch: Orchestrator) -> str:
    return f"{orch.url}/apps/{SLUG}/app/v1"


async def test_the_stock_openai_client_is_served_through_the_orchestrator_with_exact_usage(live):
    _, runner, orch = live
    await orch.until(lambda s: Orchestrator.runner(s, SLUG)["status"] == "ready")
    sync = openai.OpenAI(base_url=app_url(orch), api_key="client-key", max_retries=0)
    answer = sync.chat.completions.create(model=LLAMA, messages=MESSAGES, max_tokens=5)
    assert answer.usage.completion_tokens == 5 and answer.usage.prompt_tokens == 12
    assert [m.id for m in sync.models.list().data] == [LLAMA]  # the pinned path lists exactly its model

    stream = sync.chat.completions.create(model=LLAMA, messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens == 12  # usage on the last chunk without stream_options
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 12

    async_client = openai.AsyncOpenAI(base_url=app_url(orch), api_key="client-key", max_retries=0)
    stream = await async_client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    last = [c async for c in stream][-1]
    assert last.choices == [] and last.usage.total_tokens == 12 + 12

    runner.wait_log("session ")  # Livepeer-Session-Id lands in the summary line
    assert "client-key" not in runner.log()
    stats = orch.stats()
    assert Orchestrator.runner(stats, SLUG)["failed_checks"] == 0


async def test_another_model_on_the_pinned_path_is_refused(live):
    _, _, orch = live
    await orch.until(lambda s: Orchestrator.runner(s, SLUG)["status"] == "ready")
    client = openai.OpenAI(base_url=app_url(orch), api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="Qwen/Qwen2.5-7B-Instruct", messages=MESSAGES)
    assert refused.value.body["param"] == "model"


async def test_a_dead_upstream_is_reported_within_one_poll_and_never_routed(live):
    ollama, runner, orch = live
    await orch.until(lambda s: Orchestrator.runner(s, SLUG)["status"] == "ready")
    ollama.stop()
    async with httpx.AsyncClient(timeout=5) as http:
        ready = await http.get(f"{runner.url}/models/{SLUG}/ready")
        while ready.status_code == 200:  # the runner notices within its probe interval
            ready = await http.get(f"{runner.url}/models/{SLUG}/ready")
        assert ready.status_code == 503 and "down" in ready.text
        stats = await orch.until(lambda s: Orchestrator.runner(s, SLUG)["status"] == "unavailable")
        refused = await http.post(f"{app_url(orch)}/chat/completions", json={"model": LLAMA, "messages": MESSAGES})
        assert refused.status_code == 404  # go-livepeer: runner not found (not routed)
        ollama.start()
        stats = await orch.until(lambda s: Orchestrator.runner(s, SLUG)["status"] == "ready")
        assert Orchestrator.runner(stats, SLUG)["failed_checks"] >= 1
        served = await http.post(f"{app_url(orch)}/chat/completions", json={"model": LLAMA, "messages": MESSAGES})
        assert served.status_code == 200


@pytest.mark.ollama_only("it pulls; an engine's own loading is test_openai_upstream's readiness test")
async def test_a_loading_model_is_reported_not_ready_and_never_routed(tmp_path, own_ollama):
    own_ollama.script(models=[], pull_delay=2.0)  # 10 s of pulling
    port = free_port()
    with Runner({"OLLAMA_HOST": own_ollama.entry, "MODEL_ID": LLAMA}, port=port) as runner:
        path = write_runners_json(tmp_path / "runners.json", runner)
        with Orchestrator(runners=path, health_interval=0.1, health_timeout=3.0) as orch:
            stats = await orch.until(lambda s: Orchestrator.runner(s, SLUG)["checks"] >= 2)
            assert Orchestrator.runner(stats, SLUG)["status"] == "unavailable"
            async with httpx.AsyncClient(timeout=5) as http:
                ready = await http.get(f"{runner.url}/models/{SLUG}/ready")
                assert ready.status_code == 503 and "pulling" in ready.text
                refused = await http.post(f"{app_url(orch)}/chat/completions", json={"model": LLAMA, "messages": []})
                assert refused.status_code == 404
            assert own_ollama.stats()["started"] == 0
            await orch.until(lambda s: Orchestrator.runner(s, SLUG)["status"] == "ready", within=30)


async def test_over_capacity_is_a_fast_429_with_retry_after_passed_through(tmp_path, own_ollama):
    """A runners.json edited by hand to offer more than the runner's slots (runners-json refuses to
    write it; go-livepeer #4015): the runner, not Ollama's hidden queue, says no."""
    own_ollama.script(tokens=200, token_rate=50)
    env = {"OLLAMA_HOST": own_ollama.entry, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": "1"}
    with serving(env) as runner:
        path = write_runners_json(tmp_path / "runners.json", runner)
        document = json.loads(path.read_text())
        document["runners"][0]["capacity"] = 2
        path.write_text(json.dumps(document))
        with Orchestrator(runners=path, health_interval=0.1, health_timeout=3.0) as orch:
            await orch.until(lambda s: Orchestrator.runner(s, SLUG)["status"] == "ready")
            body = {"model": LLAMA, "messages": MESSAGES, "stream": True, "max_tokens": 200}
            url = f"{app_url(orch)}/chat/completions"
            async with httpx.AsyncClient(timeout=30) as http, http.stream("POST", url, json=body) as first:
                assert first.status_code == 200
                await own_ollama.until(lambda s: s["open_generations"] == 1)
                second = await http.post(url, json=body)
                assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
                assert second.json()["error"]["type"] == "rate_limit_error"
            stats = orch.stats()
            assert Orchestrator.runner(stats, SLUG)["failed_checks"] == 0


def test_generated_runners_json_passes_the_orchestrators_own_validation(tmp_path, ollama_runner):
    path = write_runners_json(tmp_path / "runners.json", ollama_runner, "--price", "0.25", "--on-chain")
    with Orchestrator() as orch:
        answer = httpx.post(orch.url + "/_validate?onchain=1", content=path.read_bytes(), timeout=5)
        assert answer.status_code == 200, answer.text
    refused = cli("runners-json", "--model-id", LLAMA, "--on-chain", "--no-gpu")
    assert refused.returncode == 2 and "price" in refused.stderr
    refused = cli("runners-json", "--model-id", LLAMA, "--metadata", "x" * 2000, "--no-gpu")
    assert refused.returncode == 2 and "metadata" in refused.stderr
    refused = cli("runners-json", "--model-id", LLAMA, "--url", "localhost:8000", "--no-gpu")
    assert refused.returncode == 2 and "--url 'localhost:8000'" in refused.stderr
    assert "http://localhost:8000" in refused.stderr and "health_url" not in refused.stderr


async def test_dynamic_registration_follows_the_runner_and_unregisters_on_sigterm(own_ollama):
    with Orchestrator(secret=SECRET, heartbeat_interval=0.2, heartbeat_ttl=1.0) as orch:
        env = {
            "OLLAMA_HOST": own_ollama.entry,
            "MODEL_ID": LLAMA,
            "LLM_RUNNER_CONCURRENCY": "3",
            "LLM_RUNNER_LIVE_ORCHESTRATOR_URL": orch.url,
            "LLM_RUNNER_LIVE_ORCH_SECRET": SECRET,
        }
        port = free_port()
        env["LLM_RUNNER_LIVE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        with Runner(env, port=port) as runner:

            def mine(stats: dict) -> dict:
                return next(r for r in stats["runners"].values() if r["app"] == f"llm/{LLAMA}" and r["registered"])

            stats = await orch.until(lambda s: mine(s)["status"] == "ready" and mine(s)["capacity"] == 3)
            runner_id = mine(stats)["runner_id"]
            client = openai.OpenAI(base_url=f"{orch.url}/apps/{runner_id}/app/v1", api_key="x", max_retries=0)
            assert client.chat.completions.create(model=LLAMA, messages=MESSAGES).usage.completion_tokens == 12

            own_ollama.stop()  # capacity follows the upstream: none ready, not routable
            await orch.until(lambda s: mine(s)["status"] != "ready")
            own_ollama.start()
            await orch.until(lambda s: mine(s)["status"] == "ready" and mine(s)["capacity"] == 3)

            async with httpx.AsyncClient(timeout=5) as http:  # the orchestrator loses us
                (await http.post(f"{orch.url}/_forget/{runner_id}")).raise_for_status()
            stats = await orch.until(lambda s: mine(s)["registrations"] >= 1 and mine(s)["status"] == "ready")

            runner.signal(signal.SIGTERM)
            await asyncio.to_thread(runner.process.wait, 20)
            stats = orch.stats()
            assert not any(r["registered"] for r in stats["runners"].values() if r["app"] == f"llm/{LLAMA}")
            log = runner.log()
            assert SECRET not in log and "heartbeat_secret" not in log


def test_writing_into_the_shipped_runners_json_updates_its_entry_and_drops_models_no_longer_served(tmp_path):
    path = tmp_path / "runners.json"
    path.write_text((ROOT / "compose" / "runners.json").read_text())
    env = {"OLLAMA_HOST": "http://127.0.0.1:9?parallel=2"}
    result = cli("runners-json", "--url", "http://llm_runner:8000", "--no-gpu", "--write", str(path), env=env)
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(path.read_text())["runners"]  # one runner, not the shipped one and a copy
    assert entry["label"] == "llama-3.1-8b" and entry["capacity"] == 2  # the operator's label, new facts
    shipped = json.loads((ROOT / "compose" / "runners.json").read_text())["runners"][0]
    assert entry["metadata"] == shipped["metadata"]  # what the operator wrote and the tool does not set stays
    qwen = "Qwen/Qwen2.5-7B-Instruct"
    result = cli(
        "runners-json",
        "--url",
        "http://llm_runner:8000",
        "--no-gpu",
        "--write",
        str(path),
        env=env | {"MODEL_ID": qwen},
    )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(path.read_text())["runners"]  # the runner no longer serves Llama
    assert entry["app"] == f"llm/{qwen}"
    result = cli("runners-json", "--url", "http://other:8000", "--no-gpu", "--write", str(path), "--label", "x")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(path.read_text())["runners"]) == 2  # another runner's entries are kept
