"""One drain signal for every face: on SIGTERM queued requests are refused in their face's shape,
and open `/llm` and `/v1` streams alike end with a final chunk and `[DONE]` after the drain period.
Every end is one summary line."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import serving

V1_BODY = {"model": LLAMA, "messages": [{"role": "user", "content": "go on"}], "stream": True, "max_tokens": 1000}


async def test_sigterm_ends_llm_and_v1_streams_with_a_final_chunk_and_refuses_the_queue(ollama):
    ollama.script(tokens=1000, token_rate=20)  # 50 s per stream: only the drain can end them
    env = {
        "OLLAMA_HOST": ollama.url,
        "MODEL_ID": LLAMA,
        "LLM_RUNNER_CONCURRENCY": "2",
        "LLM_RUNNER_DRAIN_TIMEOUT_S": "1",
    }
    with serving(env) as runner:
        async with httpx.AsyncClient(timeout=30) as http:

            async def read(path: str, body: dict) -> bytes:
                async with http.stream("POST", runner.url + path, json=body) as response:
                    assert response.status_code == 200
                    return b"".join([chunk async for chunk in response.aiter_bytes()])

            livepeer = asyncio.create_task(read("/llm", go_body(stream=True, max_tokens=1000)))
            openai = asyncio.create_task(read("/v1/chat/completions", V1_BODY))
            await ollama.until(lambda s: s["open_generations"] == 2)
            queued = asyncio.create_task(http.post(runner.url + "/llm", json=go_body()))
            for _ in range(500):  # until the third request waits in the queue
                if (await http.get(runner.url + "/status")).json()["queued"] == 1:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the third request never queued")
            runner.signal(signal.SIGTERM)
            refused = await queued
            assert refused.status_code == 500 and "shutting down" in refused.json()["detail"]["msg"]
            lp, oa = await asyncio.gather(livepeer, openai)
        assert runner.process.wait(15) in (0, -signal.SIGTERM)

    stream = parse_livepeer_stream(lp, LLAMA)
    assert stream.finish_reason == "error" and 0 < stream.usage["completion_tokens"] < 1000
    events = [line[6:] for line in oa.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2])
    assert final["choices"][0]["finish_reason"] == "length" and final["usage"]["completion_tokens"] > 0
    log = runner.log()
    assert log.count(f"livepeer stream {LLAMA}: drained") == 1
    assert log.count(f"openai stream {LLAMA}: drained") == 1
    assert log.count(f"livepeer answer {LLAMA}: unavailable") == 1
    assert (await ollama.until(lambda s: s["open_generations"] == 0))["open_generations"] == 0
