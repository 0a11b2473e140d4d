"""Faults around the runner: Ollama dying, stalling or slow, SIGTERM, crowds that leave."""

from __future__ import annotations

import asyncio
import signal

import httpx

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import serving


async def first_data_line(response: httpx.Response) -> None:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            return


async def test_ollama_killed_mid_stream_gives_a_terminal_chunk_and_the_runner_recovers(own_ollama, client):
    env = {"OLLAMA_HOST": own_ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_LOADING_WAIT_S": "5"}
    with serving(env) as runner:
        own_ollama.script(tokens=1000, token_rate=50)
        body = b""
        async with client.stream("POST", runner.url + "/llm", json=go_body(stream=True, max_tokens=1000)) as r:
            async for chunk in r.aiter_bytes():
                body += chunk
                if body.count(b"data: ") == 3:
                    own_ollama.process.kill()  # SIGKILL: no goodbye
        stream = parse_livepeer_stream(body, LLAMA)
        assert stream.finish_reason == "error" and stream.usage["completion_tokens"] >= 3
        assert (await client.get(runner.url + "/health")).json()["status"] in (
            "LOADING",
            "OK",
            "ERROR",
        )  # ERROR: Ollama is found down
        own_ollama.start()
        runner.wait_status("OK")
        again = await client.post(runner.url + "/llm", json=go_body(stream=True))
        assert parse_livepeer_stream(again.content, LLAMA).finish_reason == "stop"


async def test_slow_first_token_is_not_a_timeout_but_a_stalled_stream_is(ollama, client):
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_INTER_TOKEN_TIMEOUT_S": "0.5"}
    with serving(env) as runner:
        ollama.script(first_token_delay=2.0)  # a model load: no headers for 2 s
        slow = await client.post(runner.url + "/llm", json=go_body(stream=True))
        assert parse_livepeer_stream(slow.content, LLAMA).finish_reason == "stop"
        ollama.script(first_token_delay=0, stall_after=4, stall_seconds=5)
        stalled = parse_livepeer_stream((await client.post(runner.url + "/llm", json=go_body(stream=True))).content)
        assert stalled.finish_reason == "error" and stalled.usage["completion_tokens"] == 4
        ollama.script(stall_after=None)
        assert (await ollama.until(lambda s: s["open_generations"] == 0))["open_generations"] == 0


async def test_a_thousand_clients_leaving_mid_stream_leave_no_generation_open(ollama):
    ollama.script(tokens=400, token_rate=20)
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": "256"}
    with serving(env) as runner:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as http:

            async def leaver() -> None:
                async with http.stream("POST", runner.url + "/llm", json=go_body(stream=True, max_tokens=400)) as r:
                    assert r.status_code == 200
                    await first_data_line(r)

            for _ in range(4):  # four waves of 250
                await asyncio.gather(*(leaver() for _ in range(250)))
        stats = await ollama.until(lambda s: s["open_generations"] == 0, within=15)
        stats = await ollama.until(lambda s: s["completed"] == 1000, within=15)  # each one's prompt count
        assert stats["open_generations"] == 0 and stats["cancelled"] == 1000 and stats["completed"] == 1000
        metrics = (await httpx.AsyncClient().get(runner.url + "/metrics")).text
        assert "llm_runner_in_flight 0.0" in metrics


async def test_sigterm_lets_running_streams_finish_and_refuses_new_ones(ollama, client):
    ollama.script(tokens=30, token_rate=20)  # 1.5 s per stream
    with serving({"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": "4"}) as runner:

        async def stream() -> bytes:
            body = b""
            async with client.stream("POST", runner.url + "/llm", json=go_body(stream=True)) as r:
                async for chunk in r.aiter_bytes():
                    body += chunk
            return body

        running = [asyncio.create_task(stream()) for _ in range(3)]
        await ollama.until(lambda s: s["open_generations"] == 3)
        runner.signal(signal.SIGTERM)
        refused = await client.post(runner.url + "/llm", json=go_body(), timeout=2)  # still listening
        assert refused.status_code == 500 and "shutting down" in refused.json()["detail"]["msg"]
        for body in await asyncio.gather(*running):
            stream_ = parse_livepeer_stream(body, LLAMA)
            assert stream_.finish_reason == "stop" and stream_.usage["completion_tokens"] == 30
        assert runner.process.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal when done


async def test_drain_is_bounded_and_cut_streams_still_end_cleanly(ollama, client):
    ollama.script(tokens=1000, token_rate=20)  # would take 50 s
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_DRAIN_TIMEOUT_S": "1"}
    with serving(env) as runner:
        body = b""
        async with client.stream("POST", runner.url + "/llm", json=go_body(stream=True, max_tokens=1000)) as r:
            async for chunk in r.aiter_bytes():
                body += chunk
                if body.count(b"data: ") == 2 and runner.process.poll() is None:
                    runner.signal(signal.SIGTERM)
        stream = parse_livepeer_stream(body, LLAMA)
        assert stream.finish_reason == "error" and stream.usage["completion_tokens"] < 100
        assert runner.process.wait(15) in (0, -signal.SIGTERM)
    assert (await ollama.until(lambda s: s["open_generations"] == 0))["open_generations"] == 0


async def test_an_upstream_refusing_the_request_is_a_400_on_both_faces(runner, ollama, client):
    """Ollama's 4xx (a request it will not serve) is the client's to fix, not a server failure."""
    ollama.script(chat_status=400, chat_error="invalid options: num_batch")
    answer = await client.post(runner.url + "/llm", json=go_body())
    assert answer.status_code == 400 and "num_batch" in answer.json()["detail"]["msg"]
    body = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}]}
    answer = await client.post(runner.url + "/v1/chat/completions", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"
