"""A client that goes away stops the generation upstream: the only way is to close Ollama's stream.

Three windows (mid-stream, before the first token, non-streaming) and a crowd of leavers; the
stand-in counts generations that are still open and those the client cancelled.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import serving


async def test_disconnect_mid_stream_closes_upstream(runner, ollama, client):
    ollama.script(tokens=1000, token_rate=50)
    async with client.stream("POST", runner.url + "/llm", json=go_body(stream=True, max_tokens=1000)) as response:
        lines = response.aiter_lines()
        while not (await anext(lines)).startswith("data: "):
            pass
        assert ollama.stats()["open_generations"] == 1
    # The stream is closed, then its prompt counted by a one-token answer (Ollama reports it only at the end).
    stats = await ollama.until(lambda s: s["open_generations"] == 0 and s["completed"] == 1)
    assert stats["open_generations"] == 0 and stats["cancelled"] == 1 and stats["completed"] == 1
    assert stats["chat_bodies"][-1]["options"]["num_predict"] == 1


async def test_disconnect_before_first_token_closes_upstream(runner, ollama, client):
    ollama.script(first_token_delay=30)
    task = asyncio.create_task(client.post(runner.url + "/llm", json=go_body(stream=True)))
    await ollama.until(lambda s: s["open_generations"] == 1)
    task.cancel()
    stats = await ollama.until(lambda s: s["open_generations"] == 0)
    assert stats["open_generations"] == 0 and stats["cancelled"] == 1


async def test_disconnect_of_non_streaming_request_closes_upstream(runner, ollama, client):
    ollama.script(tokens=1000, token_rate=50)
    task = asyncio.create_task(client.post(runner.url + "/llm", json=go_body(stream=False, max_tokens=1000)))
    await ollama.until(lambda s: s["open_generations"] == 1)
    await asyncio.sleep(0.2)
    task.cancel()
    stats = await ollama.until(lambda s: s["open_generations"] == 0)
    assert stats["open_generations"] == 0 and stats["cancelled"] == 1


async def test_many_clients_leaving_mid_stream_leave_nothing_open_and_others_unharmed(ollama):
    """200 clients leave after their first token while one client streams to the end."""
    ollama.script(tokens=400, token_rate=20)  # a leaver that is not cancelled would run 20 s
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": "256"}
    limits = httpx.Limits(max_connections=None)
    with serving(env) as runner:
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:

            async def leaver() -> bool:
                async with http.stream("POST", runner.url + "/llm", json=go_body(stream=True, max_tokens=400)) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: "):
                            return r.status_code == 200
                return False

            async def stayer() -> bytes:
                response = await http.post(runner.url + "/llm", json=go_body(stream=True, max_tokens=50))
                return response.content

            stayed, *left = await asyncio.gather(stayer(), *(leaver() for _ in range(200)))
    assert all(left)
    assert parse_livepeer_stream(stayed).finish_reason == "length"
    stats = await ollama.until(lambda s: s["open_generations"] == 0, within=10)
    assert stats["open_generations"] == 0
    assert stats["cancelled"] == 200
