"""Model lifecycle through /health: pull, warm, Ollama down and back, several models."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import Runner, StandIn, free_port, serving

QWEN = "Qwen/Qwen2.5-7B-Instruct"


async def test_missing_model_is_pulled_and_warmed_then_ok(client):
    with StandIn() as ollama:
        ollama.script(models=[], pull_delay=0.3, warm_delay=0.5)
        with Runner({"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA}) as runner:
            assert (await client.get(runner.url + "/health")).json() == {"status": "LOADING"}
            (model,) = (await client.get(runner.url + "/status")).json()["models"]
            assert model["status"] == "LOADING" and "llama3.1:8b" in model["detail"]  # why, for operators
            # a job arriving while LOADING waits (bounded) instead of failing
            response = await client.post(runner.url + "/llm", json=go_body(stream=True))
            assert parse_livepeer_stream(response.content, LLAMA).finish_reason == "stop"
            assert (await client.get(runner.url + "/health")).json() == {"status": "OK"}
            stats = ollama.stats()
            assert stats["pulls"] == 1 and stats["warmups"] == 1
            status = (await client.get(runner.url + "/status")).json()
            assert status["upstreams"][0]["version"] == "0.12.6" and status["models"][0]["quantization"] == "Q4_K_M"
            assert "pulling llama3.1:8b" in runner.log()


async def test_pull_of_a_tag_that_does_not_exist_is_error(client):
    with StandIn() as ollama:
        ollama.script(models=[], pull_fail="pull model manifest: file does not exist")
        with Runner({"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA}) as runner:
            runner.wait_status("ERROR")
            response = await client.post(runner.url + "/llm", json=go_body())
            assert response.status_code == 500
            assert "file does not exist" in response.json()["detail"]["msg"]


async def test_missing_model_with_pull_off_stays_loading_and_llm_fails_after_bounded_wait(client):
    with StandIn() as ollama:
        ollama.script(models=[])
        env = {
            "OLLAMA_HOST": ollama.url,
            "MODEL_ID": LLAMA,
            "LLM_RUNNER_PULL": "false",
            "LLM_RUNNER_LOADING_WAIT_S": "0.5",
        }
        with Runner(env) as runner:
            await asyncio.sleep(0.5)
            assert (await client.get(runner.url + "/health")).json() == {"status": "LOADING"}
            response = await client.post(runner.url + "/llm", json=go_body())
            assert response.status_code == 500
            assert "ollama pull llama3.1:8b" in response.json()["detail"]["msg"]
            assert ollama.stats()["pulls"] == 0
            ollama.script(models=["llama3.1:8b"])  # the operator pulls it by hand
            runner.wait_status("OK")


async def test_ollama_down_at_start_then_up_later(client):
    port = free_port()
    with Runner({"OLLAMA_HOST": f"http://127.0.0.1:{port}", "MODEL_ID": LLAMA}) as runner:
        health = await client.get(runner.url + "/health")  # the HTTP server is up at once
        assert health.status_code == 200 and health.json() == {"status": "LOADING"}
        assert (await client.get(runner.url + "/version")).json()["model_id"] == LLAMA  # fast even while LOADING
        with StandIn(port):
            runner.wait_status("OK")
            response = await client.post(runner.url + "/llm", json=go_body(stream=True))
            assert parse_livepeer_stream(response.content, LLAMA).finish_reason == "stop"


async def test_ollama_restart_is_noticed_and_recovered_without_restarting_the_runner(own_ollama, client):
    env = {"OLLAMA_HOST": own_ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_LOADING_WAIT_S": "0.3"}
    with serving(env) as runner:
        own_ollama.stop()
        runner.wait_status("ERROR")  # down, and not starting up: unhealthy
        response = await client.post(runner.url + "/llm", json=go_body())
        assert response.status_code == 500 and "unreachable" in response.json()["detail"]["msg"]
        own_ollama.start()
        runner.wait_status("OK")
        assert own_ollama.stats()["warmups"] == 1  # warmed again on the new Ollama
        response = await client.post(runner.url + "/llm", json=go_body())
        assert response.status_code == 200


async def test_several_models_each_under_its_own_prefix(client):
    with StandIn() as ollama:
        ollama.script(models=["llama3.1:8b"], pull_delay=0.4)
        with Runner({"OLLAMA_HOST": ollama.url, "MODEL_ID": f"{LLAMA},{QWEN}"}) as runner:
            llama_prefix = runner.url + "/models/meta-llama--Meta-Llama-3.1-8B-Instruct"
            qwen_prefix = runner.url + "/models/Qwen--Qwen2.5-7B-Instruct"
            runner.wait_status("OK", path="/models/meta-llama--Meta-Llama-3.1-8B-Instruct/health")
            # Qwen is still being pulled: its prefix and the root (all models) say LOADING
            assert (await client.get(qwen_prefix + "/health")).json()["status"] == "LOADING"
            assert (await client.get(runner.url + "/health")).json()["status"] == "LOADING"
            runner.wait_status("OK")

            assert (await client.get(runner.url + "/version")).json()["model_id"] == LLAMA
            assert (await client.get(llama_prefix + "/version")).json()["model_id"] == LLAMA
            assert (await client.get(qwen_prefix + "/version")).json()["model_id"] == QWEN
            assert (await client.get(qwen_prefix + "/hardware/info")).json()["model_id"] == QWEN

            # go-livepeer resolves ./llm against the entry's url: each prefix serves its own model
            response = await client.post(qwen_prefix + "/llm", json=go_body(model=QWEN, stream=True))
            parse_livepeer_stream(response.content, QWEN)
            assert ollama.stats()["chat_bodies"][-1]["model"] == "qwen2.5:7b"
            wrong = await client.post(qwen_prefix + "/llm", json=go_body(model=LLAMA))
            assert wrong.status_code == 400 and QWEN in wrong.json()["detail"]["msg"]
            # the root serves the first model, and any served model named in the body
            root = await client.post(runner.url + "/llm", json=go_body(model=QWEN))
            assert root.json()["model"] == QWEN


async def test_health_answers_fast_while_ollama_hangs(client):
    """Ollama accepting connections but never answering must not stall /health."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        with Runner({"OLLAMA_HOST": f"http://127.0.0.1:{port}", "MODEL_ID": LLAMA}) as runner:
            for _ in range(3):
                health = await client.get(runner.url + "/health", timeout=httpx.Timeout(5.0))
                assert health.json() == {"status": "LOADING"}
                await asyncio.sleep(0.3)
