"""A stream cut before Ollama's last chunk still reports its exact usage: the prompt's tokens are
counted by a one-token follow-up (Ollama sends `prompt_eval_count` only in the `done` chunk).
A second Ctrl-C cuts the open streams at once, each with its final chunk, and the process exits
with a clear line and no traceback."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import Runner, StandIn

V1_BODY = {
    "model": LLAMA,
    "messages": [{"role": "user", "content": "Tell a robot story."}],
    "stream": True,
    "max_tokens": 1000,
    "stream_options": {"include_usage": True},
}


def runner_env(ollama: StandIn, **extra: str) -> dict[str, str]:
    return {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, **extra}


async def full_prompt_tokens(http: httpx.AsyncClient, runner: Runner) -> int:
    """What the upstream reports for the same prompt when a generation runs to its end."""
    answer = await http.post(runner.url + "/llm", json=go_body(max_tokens=2))
    assert answer.status_code == 200, answer.text
    return answer.json()["usage"]["prompt_tokens"]


async def read(http: httpx.AsyncClient, url: str, body: dict) -> bytes:
    async with http.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        return b"".join([chunk async for chunk in response.aiter_bytes()])


def openai_final(body: bytes) -> dict:
    events = [line[6:] for line in body.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return json.loads(events[-2])


async def test_a_second_sigint_cuts_every_stream_with_its_exact_usage_and_exits(ollama):
    ollama.script(tokens=1000, token_rate=20)  # 50 s per stream, a 60 s drain: only the second ^C ends them
    env = runner_env(ollama, LLM_RUNNER_CONCURRENCY="2", LLM_RUNNER_DRAIN_TIMEOUT_S="60")
    with Runner(env) as runner:
        runner.wait_status("OK")
        async with httpx.AsyncClient(timeout=30) as http:
            ollama.script(tokens=2)
            prompt = await full_prompt_tokens(http, runner)
            ollama.script(tokens=1000)
            livepeer = asyncio.create_task(read(http, runner.url + "/llm", go_body(stream=True, max_tokens=1000)))
            openai = asyncio.create_task(read(http, runner.url + "/v1/chat/completions", V1_BODY))
            await ollama.until(lambda s: s["open_generations"] == 2)
            runner.signal(signal.SIGINT)
            runner.wait_log("Ctrl-C again")
            began = time.monotonic()
            runner.signal(signal.SIGINT)
            lp, oa = await asyncio.wait_for(asyncio.gather(livepeer, openai), 10)
        code = runner.process.wait(10)
        took = time.monotonic() - began
    print(f"\nsecond SIGINT to exit: {took * 1e3:.0f} ms, exit code {code}")
    assert code == 0

    stream = parse_livepeer_stream(lp, LLAMA)
    assert stream.finish_reason == "error"
    assert stream.usage["prompt_tokens"] == prompt and 0 < stream.usage["completion_tokens"] < 1000
    final = openai_final(oa)
    assert final["usage"]["prompt_tokens"] == prompt and final["usage"]["completion_tokens"] > 0
    log = runner.log()
    assert "Traceback" not in log and "CancelledError" not in log and "client disconnected" not in log
    for face in ("livepeer", "openai"):
        line = runner.wait_log(f"{face} stream {LLAMA}: drained")
        assert "cut by a second interrupt" in line and f"{prompt} prompt + " in line, line
    assert "second interrupt: cutting 2 open stream(s) now" in log
    assert "stopping: every stream has ended" in log


async def test_sigterm_drain_cut_reports_the_prompt_tokens(ollama):
    ollama.script(tokens=1000, token_rate=20)
    with Runner(runner_env(ollama, LLM_RUNNER_DRAIN_TIMEOUT_S="1")) as runner:
        runner.wait_status("OK")
        async with httpx.AsyncClient(timeout=30) as http:
            ollama.script(tokens=2)
            prompt = await full_prompt_tokens(http, runner)
            ollama.script(tokens=1000)
            openai = asyncio.create_task(read(http, runner.url + "/v1/chat/completions", V1_BODY))
            await ollama.until(lambda s: s["open_generations"] == 1)
            runner.signal(signal.SIGTERM)
            final = openai_final(await openai)
        assert runner.process.wait(15) == 0
    assert final["usage"]["prompt_tokens"] == prompt
    line = runner.wait_log(f"openai stream {LLAMA}: drained")
    assert f"{prompt} prompt + " in line and "cut after the drain period" in line, line


async def test_a_client_that_leaves_is_accounted_with_its_prompt_tokens(ollama, runner, client):
    ollama.script(tokens=2)
    prompt = await full_prompt_tokens(client, runner)
    ollama.script(tokens=1000, token_rate=50)
    async with client.stream("POST", runner.url + "/llm", json=go_body(stream=True, max_tokens=1000)) as response:
        request_id = response.headers["llm-runner-request-id"]
        async for chunk in response.aiter_bytes():
            if b"data: " in chunk:
                break  # leave mid-stream
    line = runner.wait_log(f"request {request_id}")
    assert "cancelled (client disconnected)" in line and f"{prompt} prompt + " in line, line
    receipt = (await client.get(runner.url + "/usage", params={"request_id": request_id})).json()
    assert receipt["reason"] == "cancelled" and receipt["prompt_tokens"] == prompt
