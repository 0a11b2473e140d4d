"""Admission control: a bounded number of generations in flight, a bounded queue, then 500 busy."""

from __future__ import annotations

import asyncio

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import serving


async def test_limit_queue_then_busy_and_queued_requests_complete(ollama, client):
    ollama.script(tokens=20, token_rate=20)  # each generation takes about a second
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": "2", "LLM_RUNNER_MAX_QUEUE": "1"}
    with serving(env) as runner:
        running = [asyncio.create_task(client.post(runner.url + "/llm", json=go_body(stream=True))) for _ in range(3)]
        await ollama.until(lambda s: s["open_generations"] == 2)
        await asyncio.sleep(0.1)  # the third one is now waiting in the queue
        busy = await client.post(runner.url + "/llm", json=go_body(stream=True))
        assert busy.status_code == 500
        assert "busy" in busy.json()["detail"]["msg"]
        for response in await asyncio.gather(*running):
            assert parse_livepeer_stream(response.content, LLAMA).finish_reason == "stop"
        assert ollama.stats()["max_open"] == 2  # never more than the limit reached Ollama
        metrics = (await client.get(runner.url + "/metrics")).text
        assert 'llm_runner_requests_total{endpoint="/llm",status="500"} 1.0' in metrics
        assert "llm_runner_in_flight 0.0" in metrics


async def test_queue_wait_is_bounded(ollama, client):
    ollama.script(tokens=40, token_rate=20)
    env = {
        "OLLAMA_HOST": ollama.url,
        "MODEL_ID": LLAMA,
        "LLM_RUNNER_CONCURRENCY": "1",
        "LLM_RUNNER_QUEUE_TIMEOUT_S": "0.3",
    }
    with serving(env) as runner:
        first = asyncio.create_task(client.post(runner.url + "/llm", json=go_body()))
        await ollama.until(lambda s: s["open_generations"] == 1)
        waited = await client.post(runner.url + "/llm", json=go_body())
        assert waited.status_code == 500 and "0.3s" in waited.json()["detail"]["msg"]
        assert (await first).status_code == 200
