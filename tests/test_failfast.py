"""Fail fast when no upstream can serve: a dead Ollama is named at once, in each face's shape, and
requests already queued for a slot are released; a slow pull is still waited for; when Ollama is
back the runner serves again without a restart. The measured times are printed (`pytest -s`)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import Runner, StandIn, serving

V1_BODY = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
DOWN_SINCE = re.compile(r"down since \d\d:\d\d:\d\d UTC")
FAST_S = 5.0


def runner_env(ollama: StandIn, **extra: str) -> dict[str, str]:
    return {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_LOADING_WAIT_S": "30", **extra}


@pytest.mark.parametrize("face", ["livepeer", "openai"])
async def test_the_first_request_after_ollama_died_is_refused_at_once_naming_it(own_ollama, client, face):
    # A long probe interval: the request itself finds Ollama gone, not the lifecycle's probe.
    with serving(runner_env(own_ollama, LLM_RUNNER_HEALTH_INTERVAL_S="60")) as runner:
        own_ollama.process.kill()
        own_ollama.process.wait()
        began = time.monotonic()
        if face == "livepeer":
            response = await client.post(runner.url + "/llm", json=go_body())
            took = time.monotonic() - began
            assert response.status_code == 500, response.text
            message = response.json()["detail"]["msg"]
        else:
            response = await client.post(runner.url + "/v1/chat/completions", json=V1_BODY)
            took = time.monotonic() - began
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["type"] == "service_unavailable"
            message = error["message"]
        print(f"\n{face}: first request after the kill refused in {took * 1e3:.0f} ms: {message}")
        assert took < FAST_S
        assert own_ollama.url in message and DOWN_SINCE.search(message), message
        assert response.headers["retry-after"] == "5"
        assert f"{face} answer {LLAMA}: unavailable" in runner.wait_log(": unavailable")


async def test_requests_queued_for_a_slot_are_released_when_ollama_dies(own_ollama, client):
    own_ollama.script(tokens=1000, token_rate=10)  # 100 s: only the kill ends it
    env = runner_env(own_ollama, LLM_RUNNER_CONCURRENCY="1", LLM_RUNNER_QUEUE_TIMEOUT_S="60")
    with serving(env) as runner:
        body = b""

        async def hold() -> None:
            nonlocal body
            async with client.stream("POST", runner.url + "/llm", json=go_body(stream=True, max_tokens=1000)) as r:
                async for chunk in r.aiter_bytes():
                    body += chunk

        holding = asyncio.create_task(hold())
        await own_ollama.until(lambda s: s["open_generations"] == 1)
        queued = [asyncio.create_task(client.post(runner.url + "/llm", json=go_body())) for _ in range(2)]
        queued.append(asyncio.create_task(client.post(runner.url + "/v1/chat/completions", json=V1_BODY)))
        deadline = time.monotonic() + 10
        while (await client.get(runner.url + "/status")).json()["queued"] < 2:  # /v1 does not queue
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        v1_busy = await queued.pop()
        assert v1_busy.status_code == 429  # LLM_RUNNER_OPENAI_MAX_QUEUE=0: /v1 answers at once
        while b"data: " not in body:  # the held request is streaming: its end must be the error chunk
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        own_ollama.process.kill()
        began = time.monotonic()
        answers = await asyncio.wait_for(asyncio.gather(*queued), FAST_S * 2)
        took = time.monotonic() - began
        await holding
        print(f"\nqueued requests released {took * 1e3:.0f} ms after the kill: {answers[0].json()['detail']['msg']}")
        assert took < FAST_S
        for answer in answers:
            assert answer.status_code == 500, answer.text
            message = answer.json()["detail"]["msg"]
            assert own_ollama.url in message and DOWN_SINCE.search(message), message
        assert parse_livepeer_stream(body, LLAMA).finish_reason == "error"
        status = (await client.get(runner.url + "/status")).json()
        assert status["queued"] == 0 and status["in_flight"] == 0


async def test_a_slow_pull_is_waited_for_and_then_served(own_ollama, client):
    own_ollama.script(models=[], pull_delay=0.4)  # about 2 s of pulling, bytes moving all along
    with Runner(runner_env(own_ollama)) as runner:
        began = time.monotonic()
        response = await client.post(runner.url + "/llm", json=go_body())
        took = time.monotonic() - began
        print(f"\n/llm during a slow pull waited {took * 1e3:.0f} ms, then: {response.status_code}")
        assert response.status_code == 200, response.text
        assert own_ollama.stats()["pulls"] == 1 and took > 1.0
        assert "pulling llama3.1:8b" in runner.log()


async def test_status_and_metrics_say_since_when_and_the_runner_recovers_without_a_restart(own_ollama, client):
    with serving(runner_env(own_ollama)) as runner:
        pid = runner.process.pid
        own_ollama.process.kill()
        own_ollama.process.wait()
        killed = time.monotonic()
        runner.wait_status("ERROR")  # the lifecycle's probe noticed: down, and not starting up
        noticed = time.monotonic() - killed
        response = await client.post(runner.url + "/llm", json=go_body())
        assert response.status_code == 500 and DOWN_SINCE.search(response.json()["detail"]["msg"])
        (upstream,) = (await client.get(runner.url + "/status")).json()["upstreams"]
        assert upstream["url"] == own_ollama.url and upstream["version"] is None
        assert time.time() - 60 < upstream["down_since"] <= time.time() and upstream["down_for_s"] >= 0
        assert "unreachable" in upstream["last_error"]
        assert upstream["models"][0]["phase"] == "down"
        metrics = (await client.get(runner.url + "/metrics")).text
        line = f'llm_runner_upstream_down_seconds{{upstream="{own_ollama.url}"}}'
        assert float(next(m for m in metrics.splitlines() if m.startswith(line)).split()[-1]) > 0

        own_ollama.start()
        back = time.monotonic()
        runner.wait_status("OK")
        recovered = time.monotonic() - back
        served = await client.post(runner.url + "/llm", json=go_body())
        assert served.status_code == 200
        print(f"\nprobe noticed the kill in {noticed * 1e3:.0f} ms; OK {recovered * 1e3:.0f} ms after Ollama was back")
        assert runner.process.pid == pid and runner.process.poll() is None  # no restart
        (upstream,) = (await client.get(runner.url + "/status")).json()["upstreams"]
        assert upstream["down_since"] is None and upstream["down_for_s"] == 0 and upstream["last_error"] == ""
        metrics = (await client.get(runner.url + "/metrics")).text
        assert f"{line} 0.0" in metrics
