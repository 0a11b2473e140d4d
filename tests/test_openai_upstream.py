"""An OpenAI-compatible engine as an upstream (`OLLAMA_HOST=openai+http://…`), against the scripted
engine of tests/support/openai_standin.py: liveness as vLLM, SGLang and llama-server report it, the
request an engine gets, streams, errors, cancellation, failover in a mixed list, and doctor."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from llm_runner.core.request import Message, ToolCall
from llm_runner.upstream.catalog import Catalog, check_identity
from llm_runner.upstream.hosts import parse_upstreams
from llm_runner.upstream.openai_wire import openai_messages
from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import Runner, StandIn
from tests.test_cli import cli

SLUG = LLAMA.replace("/", "--")


def serve(entry: str, **env: str) -> Runner:
    return Runner({"OLLAMA_HOST": entry, "MODEL_ID": LLAMA, "LLM_RUNNER_LOADING_WAIT_S": "0", **env})


async def until_ready(http: httpx.AsyncClient, runner: Runner, status: int, within: float = 15.0) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + within
    while (ready := await http.get(f"{runner.url}/models/{SLUG}/ready")).status_code != status:
        assert asyncio.get_running_loop().time() < deadline, f"ready stayed {ready.status_code}: {ready.text}"
        await asyncio.sleep(0.05)
    return ready


def test_openai_entries_parse_beside_ollama_ones():
    specs = parse_upstreams(
        f"http://gpu0:11434?models={LLAMA}, openai+http://gpu1:8000/v1?parallel=8&models={LLAMA}&served_model=llama"
    )
    assert [(s.kind, s.url, s.parallel, s.served_model) for s in specs] == [
        ("ollama", "http://gpu0:11434", None, None),
        ("openai", "http://gpu1:8000", 8, "llama"),  # /v1 is the runner's to add
    ]
    for value, needle in [
        ("openai+gpu1:8000", "openai+http://"),
        ("openai+http://gpu1:8000?served_model=x", "exactly one models="),
        ("http://gpu0?served_model=x", "unknown option(s) served_model"),
    ]:
        with pytest.raises(ValueError, match=None) as refused:
            parse_upstreams(value)
        assert needle in str(refused.value)


@pytest.mark.parametrize("flavor", ["vllm", "sglang", "llama-server", "plain"])
async def test_readiness_follows_the_engines_own_health(own_engine, flavor, client):
    http = client
    own_engine.script(flavor=flavor, loading=flavor != "plain")
    with serve(f"{own_engine.entry}?parallel=4&models={LLAMA}") as runner:
        if flavor != "plain":  # llama-cpp-python's server only answers once loaded
            ready = await until_ready(http, runner, 503)
            assert "loading" in ready.text
            refused = await http.post(runner.url + "/llm", json=go_body(stream=True))
            assert refused.status_code == 500 and "loading" in refused.json()["detail"]["msg"]
            own_engine.script(loading=False)
        await until_ready(http, runner, 200)
        assert own_engine.stats()["started"] == 1  # the warm-up: one 1-token generation
        assert own_engine.stats()["chat_bodies"][0]["max_tokens"] == 1
        status = (await http.get(runner.url + "/status")).json()
        assert status["models"][0]["status"] == "OK", status


async def test_both_faces_stream_with_the_engines_exact_usage_and_fields_mapped(own_engine, client):
    http = client
    with serve(f"{own_engine.entry}?models={LLAMA}") as runner:
        runner.wait_status("OK")
        body = go_body(stream=True, max_tokens=5, temperature=0.2, top_p=0.9, top_k=7)
        stream = parse_livepeer_stream((await http.post(runner.url + "/llm", json=body)).content, LLAMA)
        assert stream.finish_reason == "length" and stream.text == "tok0 tok1 tok2 tok3 tok4 "
        assert stream.usage == {"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19}
        sent = own_engine.stats()["chat_bodies"][-1]
        assert sent["model"] == LLAMA and sent["stream_options"] == {"include_usage": True}
        picked = {k: sent[k] for k in ("max_tokens", "temperature", "top_p", "top_k")}
        assert picked == {"max_tokens": 5, "temperature": 0.2, "top_p": 0.9, "top_k": 7}

        openai_body = {
            "model": LLAMA,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "seed": 3,
            "stop": ["zz"],
            "presence_penalty": 0.5,
            "top_logprobs": 2,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        }
        answer = await http.post(f"{runner.url}/models/{SLUG}/v1/chat/completions", json=openai_body)
        events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [httpx.Response(200, content=e).json() for e in events[:-1]]
        assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 12, "total_tokens": 23}
        scored = [c for c in chunks if c["choices"] and c["choices"][0].get("logprobs")]
        assert len(scored[0]["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2
        sent = own_engine.stats()["chat_bodies"][-1]
        assert sent["response_format"]["json_schema"]["schema"] == {"type": "object"}
        assert sent["logprobs"] is True and sent["top_logprobs"] == 2
        assert (sent["seed"], sent["stop"], sent["presence_penalty"]) == (3, ["zz"], 0.5)


def test_tool_calls_in_pieces_and_an_engine_without_usage(own_engine):
    own_engine.script(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}}, usage=False)
    with serve(f"{own_engine.entry}?models={LLAMA}") as runner:
        runner.wait_status("OK")
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        body = {"model": LLAMA, "messages": [{"role": "user", "content": "weather?"}], "tools": tools}
        answer = httpx.post(runner.url + "/v1/chat/completions", json=body, timeout=10).json()
        (choice,) = answer["choices"]
        assert choice["finish_reason"] == "tool_calls"
        (call,) = choice["message"]["tool_calls"]
        assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        own_engine.script(tool_call=None)
        answer = httpx.post(runner.url + "/v1/chat/completions", json=body, timeout=10).json()
        assert answer["usage"]["completion_tokens"] == 12  # counted: one chunk, one token
        runner.wait_log("sends no usage")


def test_a_served_model_name_and_a_missing_model(own_engine):
    own_engine.script(models=["llama-8b"])
    with serve(f"{own_engine.entry}?models={LLAMA}") as runner:
        runner.wait_status("ERROR")
        detail = httpx.get(runner.url + "/status", timeout=5).json()["models"][0]["detail"]
        assert "does not serve " + LLAMA in str(detail) and "served_model=" in str(detail)
    with serve(f"{own_engine.entry}?models={LLAMA}&served_model=llama-8b") as runner:
        runner.wait_status("OK")
        answer = httpx.post(runner.url + "/llm", json=go_body(), timeout=10).json()
        assert answer["model"] == LLAMA and answer["usage"]["completion_tokens"] == 12
        assert own_engine.stats()["chat_bodies"][-1]["model"] == "llama-8b"


async def test_a_client_that_goes_closes_the_engines_stream(own_engine, client):
    own_engine.script(tokens=10_000, token_rate=100)
    with serve(f"{own_engine.entry}?models={LLAMA}") as runner:
        runner.wait_status("OK")
        body = go_body(stream=True, max_tokens=10_000)
        async with client.stream("POST", runner.url + "/llm", json=body) as r:
            async for _ in r.aiter_lines():
                break
        stats = await own_engine.until(lambda s: s["cancelled"] == 1 and s["completed"] == 2)
        # Completed: the warm-up, then the cut stream's one-token prompt count.
        assert stats["chat_bodies"][-1]["max_tokens"] == 1


async def test_a_dead_engine_fails_over_to_ollama_in_a_mixed_list(own_engine, own_ollama: StandIn, client):
    http = client
    entry = f"{own_engine.entry}?models={LLAMA},{own_ollama.url}?models={LLAMA}"
    with serve(entry, LLM_RUNNER_CONCURRENCY="1") as runner:
        await until_ready(http, runner, 200)
        status = (await http.get(runner.url + "/status")).json()
        assert [u["kind"] for u in status["upstreams"]] == ["openai", "ollama"], status
        own_engine.script(dead=True)  # vLLM: /health 500 once its engine loop died
        while True:  # the runner notices within its probe interval; then only Ollama serves
            status = (await http.get(runner.url + "/status")).json()
            if any(u["down_since"] for u in status["upstreams"]):
                break
            await asyncio.sleep(0.05)
        served_before = own_engine.stats()["started"]
        for _ in range(3):
            stream = parse_livepeer_stream((await http.post(runner.url + "/llm", json=go_body(stream=True))).content)
            assert stream.finish_reason == "stop"
        assert own_engine.stats()["started"] == served_before
        metrics = (await http.get(runner.url + "/metrics")).text
        assert f'llm_runner_upstream_down_seconds{{upstream="{own_engine.url}"}}' in metrics
        assert f'llm_runner_upstream_tokens_total{{upstream="{own_ollama.url}"}} 36.0' in metrics
        own_engine.script(dead=False)
        await until_ready(http, runner, 200)


@pytest.mark.parametrize(("status", "needle"), [(500, "answered 500"), (400, "answered 400")])
def test_engine_errors_stay_in_the_livepeer_contract_naming_the_cause(own_engine, status, needle):
    """An engine's 5xx is the runner's 500; its 4xx (a prompt past the context) the client's 400."""
    with serve(f"{own_engine.entry}?models={LLAMA}") as runner:
        runner.wait_status("OK")
        own_engine.script(chat_status=status, chat_error="maximum context length is 2048 tokens")
        response = httpx.post(runner.url + "/llm", json=go_body(stream=True), timeout=10)
        assert response.status_code == status
        msg = response.json()["detail"]["msg"]
        assert needle in msg and "maximum context length" in msg


def test_doctor_probes_the_engine_not_ollamas_api(own_engine):
    env = {"OLLAMA_HOST": f"{own_engine.entry}?models={LLAMA}", "MODEL_ID": LLAMA}
    result = cli("doctor", env=env)
    assert f"OpenAI-compatible engine reachable at {own_engine.url}" in result.stdout, result.stdout
    assert f"{LLAMA} listed in /v1/models" in result.stdout, result.stdout
    own_engine.script(models=["other"])
    result = cli("doctor", env=env)
    assert result.returncode != 0 and "does not serve" in result.stdout, result.stdout


def test_reasoning_is_folded_as_ollamas_thinking_is(own_engine):
    own_engine.script(reasoning_tokens=2, tokens=2)
    with serve(f"{own_engine.entry}?models={LLAMA}") as runner:
        runner.wait_status("OK")
        answer = httpx.post(runner.url + "/llm", json=go_body(), timeout=10).json()
        assert answer["choices"][0]["message"]["content"] == "<think>hmm0 hmm1 </think>\n\ntok0 tok1 "
        assert answer["usage"]["completion_tokens"] == 4  # the engine's own count, reasoning included


def test_a_tool_result_goes_back_with_its_calls_id():
    calls = (ToolCall("call_7", "get_weather", '{"city": "Paris"}'),)
    result = Message("tool", "sunny", tool_name="get_weather")
    sent = openai_messages([Message("user", "weather?"), Message("assistant", "", tool_calls=calls), result])
    assert sent[1]["tool_calls"][0] == {
        "id": "call_7",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_7"}


def test_capacity_files_count_an_engines_slots_beside_ollamas():
    env = {"OLLAMA_HOST": f"openai+http://gpu1:8000?parallel=8&models={LLAMA},http://gpu0:11434?parallel=2"}
    result = cli("ai-models", "--model-id", LLAMA, "--url", "http://runner:8000", env=env)
    assert result.returncode == 0 and '"capacity": 10' in result.stdout, result.stderr
    result = cli("runners-json", "--model-id", LLAMA, "--url", "http://runner:8000", "--no-gpu", env=env)
    assert result.returncode == 0 and '"capacity": 10' in result.stdout, result.stderr


async def test_the_canary_takes_an_engine_that_stopped_generating_out_and_back(own_engine, client):
    with serve(f"{own_engine.entry}?models={LLAMA}", LLM_RUNNER_CANARY_IDLE_S="0.3") as runner:
        await until_ready(client, runner, 200)
        own_engine.script(chat_status=500)  # /health still 200: only a generation shows it
        ready = await until_ready(client, runner, 503)
        assert "canaries in a row" in ready.text
        own_engine.script(chat_status=200)
        await until_ready(client, runner, 200)


def test_a_stalled_stream_ends_with_the_error_finish_and_think_off_reaches_the_template(own_engine):
    own_engine.script(stall_after=2, stall_seconds=5)
    env = {"LLM_RUNNER_INTER_TOKEN_TIMEOUT_S": "0.5", "LLM_RUNNER_THINK": "off"}
    with serve(f"{own_engine.entry}?models={LLAMA}", **env) as runner:
        runner.wait_status("OK")
        stream = parse_livepeer_stream(httpx.post(runner.url + "/llm", json=go_body(stream=True), timeout=10).content)
        assert stream.finish_reason == "error" and stream.text == "tok0 tok1 "
        runner.wait_log("sent nothing for 0.5s")
        assert own_engine.stats()["chat_bodies"][-1]["chat_template_kwargs"] == {"enable_thinking": False}


def test_pull_refuses_an_engine_and_uses_the_ollama_beside_it(own_ollama: StandIn):
    own_ollama.script(models=[])
    engine_only = cli("pull", LLAMA, env={"OLLAMA_HOST": f"openai+http://127.0.0.1:9?models={LLAMA}"})
    assert engine_only.returncode != 0 and "cannot pull" in engine_only.stderr
    mixed = f"openai+http://127.0.0.1:9?models={LLAMA},{own_ollama.url}"
    result = cli("pull", LLAMA, env={"OLLAMA_HOST": mixed})
    assert result.returncode == 0 and "llama3.1:8b" in own_ollama.script()["models"], result.stderr


def test_an_engines_model_is_not_held_to_capabilities_it_cannot_report():
    """/v1/models lists names only: a thinking row served by vLLM is not a mismatch."""
    thinking = Catalog.load({}, None).entry("Qwen/Qwen3-4B-Thinking-2507")
    assert check_identity(thinking, {"id": "Qwen/Qwen3-4B-Thinking-2507"}, {}, capabilities=()) is None


def test_an_engine_started_with_an_api_key_gets_it(own_engine):
    own_engine.script(api_key="engine-s3cret")
    with serve(f"{own_engine.entry}?models={LLAMA}") as runner:
        runner.wait_log("answered 401")  # no key: the model is not ready, and the log says why
        assert httpx.get(f"{runner.url}/models/{SLUG}/ready", timeout=5).status_code == 503
    with serve(f"{own_engine.entry}?models={LLAMA}", LLM_RUNNER_UPSTREAM_API_KEY="engine-s3cret") as runner:
        runner.wait_status("OK")
        assert httpx.post(runner.url + "/llm", json=go_body(), timeout=10).json()["usage"]["completion_tokens"] == 12
        assert "engine-s3cret" not in runner.log()
