"""The Livepeer runner contract as go-livepeer exercises it: endpoints, streams, errors; over each
upstream kind (Ollama, an OpenAI-compatible engine), see conftest.py."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import Runner, serving

pytestmark = pytest.mark.each_upstream_kind


def assert_error(response: httpx.Response, status: int, *needles: str) -> str:
    """The only error shape go-livepeer understands: 400/401/500 + JSON {"detail": {"msg"}}."""
    assert response.status_code == status, response.text
    assert "json" in response.headers["content-type"]
    msg = response.json()["detail"]["msg"]
    assert isinstance(msg, str) and msg
    for needle in needles:
        assert needle in msg, msg
    return msg


async def test_health_version_hardware(runner, ollama, client):
    health = await client.get(runner.url + "/health")
    assert health.status_code == 200 and health.headers["content-type"] == "application/json"
    assert health.json() == {"status": "OK"}
    assert (await client.get(runner.url + "/health/")).json() == {"status": "OK"}
    version = (await client.get(runner.url + "/version")).json()
    assert version == {"pipeline": "llm", "model_id": LLAMA, "version": "0.1.0"}
    hardware = (await client.get(runner.url + "/hardware/info")).json()
    assert hardware["pipeline"] == "llm" and hardware["model_id"] == LLAMA
    assert hardware["gpu_info"] == {}  # no GPU on the test machine: empty, never an error


@pytest.mark.parametrize("path", ["/llm", "/llm/"])
async def test_non_stream_answer_echoes_hf_id_with_exact_usage(runner, ollama, client, path):
    response = await client.post(runner.url + path, json=go_body())
    assert response.status_code == 200 and "json" in response.headers["content-type"]
    answer = response.json()
    assert answer["model"] == LLAMA
    assert answer["id"].startswith("chatcmpl-") and isinstance(answer["created"], int)
    (choice,) = answer["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["delta"] is None
    assert choice["message"] == {"role": "assistant", "content": "".join(f"tok{i} " for i in range(12))}
    # the stand-in reports prompt_eval_count = 10 + words and eval_count = tokens sent
    assert answer["usage"] == {"prompt_tokens": 14, "completion_tokens": 12, "total_tokens": 26}


async def test_stream_ends_with_stop_and_done(runner, ollama, client):
    response = await client.post(runner.url + "/llm", json=go_body(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    stream = parse_livepeer_stream(response.content, LLAMA)
    assert stream.finish_reason == "stop"
    assert stream.text == "".join(f"tok{i} " for i in range(12))
    assert stream.usage == {"prompt_tokens": 14, "completion_tokens": 12, "total_tokens": 26}
    assert [c["usage"]["completion_tokens"] for c in stream.chunks[:-1]] == list(range(1, 13))


async def test_stream_hits_max_tokens_with_length(runner, ollama, client):
    response = await client.post(runner.url + "/llm", json=go_body(stream=True, max_tokens=5))
    stream = parse_livepeer_stream(response.content, LLAMA)
    assert stream.finish_reason == "length"
    assert stream.usage["completion_tokens"] == 5
    answer = (await client.post(runner.url + "/llm", json=go_body(max_tokens=5))).json()
    assert answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "knob",
    [{"error_after": 3}, {"close_after": 3}, {"end_without_done_after": 3}],
    ids=["error-line", "abrupt-close", "no-done-line"],
)
async def test_stream_failing_mid_way_ends_with_error_chunk_and_done(runner, ollama, client, knob):
    ollama.script(**knob)
    response = await client.post(runner.url + "/llm", json=go_body(stream=True))
    assert response.status_code == 200
    stream = parse_livepeer_stream(response.content, LLAMA)
    assert stream.finish_reason == "error"
    assert stream.text == "tok0 tok1 tok2 "
    assert stream.usage["completion_tokens"] == 3
    # the runner keeps serving
    ollama.script(error_after=None, close_after=None, end_without_done_after=None)
    after = await client.post(runner.url + "/llm", json=go_body(stream=True))
    assert parse_livepeer_stream(after.content, LLAMA).finish_reason == "stop"


async def test_go_livepeer_style_body_without_content_type_works(runner, ollama, client):
    raw = b'{"model":"%s","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true}' % LLAMA.encode()
    for headers in ({}, {"content-type": "application/x-www-form-urlencoded"}):
        response = await client.post(runner.url + "/llm", content=raw, headers=headers)
        assert parse_livepeer_stream(response.content, LLAMA).usage["completion_tokens"] == 3


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "body is missing"),
        (b"[]", "body"),
        (b'{"messages": []}', "messages"),
        (b'{"max_tokens": 3}', "messages: Field required"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', "messages.0.role"),
        (b'{"messages": [{"role": "user", "content": ["a"]}]}', "messages.0.content"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": 2.5}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": -1}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}', "top_p"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": true}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "maybe"}', "stream"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "stream: Input should be a valid boolean",
        ),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "stream": "false"}',
            "stream: Input should be a valid boolean",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": 1}', "stream: Input should be a valid boolean"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "stream": null}',
            "stream: Input should be a valid boolean",
        ),
        (b'{"messages": [{"role": "user", "content": null}]}', "messages.0.content: Input should be a valid string"),
        (b'{"messages": [{"role": "user"}]}', "messages.0.content: Field required"),
    ],
)
async def test_bad_input_is_400_before_any_stream(runner, ollama, client, body, needle):
    response = await client.post(runner.url + "/llm", content=body)
    assert_error(response, 400, needle)
    assert ollama.stats()["started"] == 0  # nothing reached Ollama


async def test_unserved_model_is_400_naming_served_ids(runner, ollama, client):
    response = await client.post(runner.url + "/llm", json=go_body(model="meta-llama/Llama-3.2-1B-Instruct"))
    assert_error(response, 400, "meta-llama/Llama-3.2-1B-Instruct", LLAMA)


async def test_unknown_path_and_method_stay_in_contract(runner, client):
    assert_error(await client.get(runner.url + "/nope"), 400, "/nope")
    assert_error(await client.get(runner.url + "/llm"), 400, "GET /llm")


NOT_THERE = {"ollama": "not in Ollama", "openai": "does not serve"}  # what each kind says of a 404


@pytest.mark.parametrize(
    ("status", "error", "needles"),
    [
        (500, "llama runner process has terminated: exit status 2", ["500", "llama runner process has terminated"]),
        (500, "CUDA error: out of memory", ["out of memory", "smaller model"]),
        (404, "model 'llama3.1:8b' not found", ["llama3.1:8b", NOT_THERE]),
        (503, "server busy, please try again.  maximum pending requests exceeded", ["503", "server busy"]),
    ],
    ids=["crash", "oom", "missing", "queue-full"],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_failures_are_500_naming_the_cause(
    runner, ollama, client, upstream_kind, status, error, needles, stream
):
    ollama.script(chat_status=status, chat_error=error)
    response = await client.post(runner.url + "/llm", json=go_body(stream=stream))
    assert_error(response, 500, *(n[upstream_kind] if isinstance(n, dict) else n for n in needles))
    ollama.script(chat_status=200)
    runner.wait_status("OK")  # a 404 makes the runner re-check the model; it is back at once here


async def test_oversized_body_and_prompt_are_400(ollama, client):
    env = {
        "OLLAMA_HOST": ollama.entry,
        "MODEL_ID": LLAMA,
        "LLM_RUNNER_MAX_BODY_BYTES": "2048",
        "LLM_RUNNER_MAX_PROMPT_CHARS": "100",
    }
    with Runner(env) as small:
        big_body = go_body(messages=[{"role": "user", "content": "x" * 5000}])
        assert_error(await client.post(small.url + "/llm", json=big_body), 400, "too large", "2048")

        async def chunked():  # no content-length: counted while reading
            for _ in range(4):
                yield b"x" * 1024

        assert_error(await client.post(small.url + "/llm", content=chunked()), 400, "too large")
        # The OpenAI path refuses it too, in OpenAI's shape.
        chat = {"model": LLAMA, "messages": [{"role": "user", "content": "x" * 5000}]}
        refused = await client.post(small.url + "/v1/chat/completions", json=chat)
        assert refused.status_code == 400 and "too large" in refused.json()["error"]["message"]
        long_prompt = go_body(messages=[{"role": "user", "content": "y" * 500}])
        assert_error(await client.post(small.url + "/llm", json=long_prompt), 400, "prompt too large", "100")
        ok = await client.post(small.url + "/llm", json=go_body(messages=[{"role": "user", "content": "hi"}]))
        assert ok.status_code == 200


async def test_auth_token_required_everywhere_but_health(ollama, client):
    env = {"OLLAMA_HOST": ollama.entry, "MODEL_ID": LLAMA, "AUTH_TOKEN": "s3cret"}
    with serving(env) as secured:
        assert (await client.get(secured.url + "/health")).json()["status"] == "OK"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            for method, path in (("POST", "/llm"), ("GET", "/version"), ("GET", "/hardware/info")):
                response = await client.request(method, secured.url + path, json=go_body(), headers=headers)
                assert_error(response, 401, "Invalid bearer token")
                assert response.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": "Bearer s3cret"}
        response = await client.post(secured.url + "/llm", json=go_body(stream=True), headers=good)
        parse_livepeer_stream(response.content, LLAMA)
        assert (await client.get(secured.url + "/version", headers=good)).json()["model_id"] == LLAMA
