"""The OpenAI-compatible endpoint: every chat parameter is honoured (checked on the body Ollama
receives) or refused with a 400 naming it; tools, structured output, images, logprobs, usage;
error shapes and statuses. Driven by the official `openai` client and by raw HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import LLAMA
from tests.support.servers import Runner, serving

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather.", "parameters": WEATHER_PARAMS},
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
PARIS = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
PLAIN_KEYS = {"model", "messages", "stream", "options", "keep_alive"}
PLAIN_OPTIONS = {"num_ctx": 4096, "num_predict": 4096}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()


@pytest.fixture
def client(runner):
    return openai.AsyncOpenAI(base_url=runner.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
async def http(runner):
    async with httpx.AsyncClient(base_url=runner.url, timeout=30) as session:
        yield session


async def post(http: httpx.AsyncClient, path: str = "/v1/chat/completions", **fields: Any) -> httpx.Response:
    return await http.post(path, json={"model": LLAMA, "messages": MESSAGES, **fields})


async def sse(http: httpx.AsyncClient, path: str = "/v1/chat/completions", **fields: Any) -> list[dict]:
    """The chunks of one streamed completion, checked to end with `data: [DONE]`."""
    body = {"model": LLAMA, "messages": MESSAGES, "stream": True, **fields}
    async with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, await response.aread()
        data = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def sent(ollama) -> dict:
    """The /api/chat body Ollama got last."""
    return ollama.stats()["chat_bodies"][-1]


# -- every honoured parameter, as it reaches Ollama ----------------------------------------------

HONOURED = [
    ("max_tokens", {"max_tokens": 7}, {"options": {"num_ctx": 4096, "num_predict": 7}}),
    (
        "max_completion_tokens",
        {"max_completion_tokens": 6, "max_tokens": 9},
        {"options": {"num_ctx": 4096, "num_predict": 6}},
    ),
    ("max_tokens_capped_at_num_ctx", {"max_tokens": 100_000}, {"options": PLAIN_OPTIONS}),
    ("max_tokens_absent", {}, {"options": PLAIN_OPTIONS}),
    ("temperature", {"temperature": 0.2}, {"options": {**PLAIN_OPTIONS, "temperature": 0.2}}),
    ("temperature_zero", {"temperature": 0}, {"options": {**PLAIN_OPTIONS, "temperature": 0}}),
    ("top_p", {"top_p": 0.5}, {"options": {**PLAIN_OPTIONS, "top_p": 0.5}}),
    ("top_k", {"top_k": 40}, {"options": {**PLAIN_OPTIONS, "top_k": 40}}),
    ("seed", {"seed": 42}, {"options": {**PLAIN_OPTIONS, "seed": 42}}),
    ("stop_string", {"stop": "\n\n"}, {"options": {**PLAIN_OPTIONS, "stop": ["\n\n"]}}),
    ("stop_list", {"stop": ["END", "###"]}, {"options": {**PLAIN_OPTIONS, "stop": ["END", "###"]}}),
    ("frequency_penalty", {"frequency_penalty": 0.5}, {"options": {**PLAIN_OPTIONS, "frequency_penalty": 0.5}}),
    ("presence_penalty", {"presence_penalty": -0.5}, {"options": {**PLAIN_OPTIONS, "presence_penalty": -0.5}}),
    ("response_format_text", {"response_format": {"type": "text"}}, {}),
    ("response_format_json_object", {"response_format": {"type": "json_object"}}, {"format": "json"}),
    (
        "response_format_json_schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "w", "schema": WEATHER_PARAMS, "strict": True},
            }
        },
        {"format": WEATHER_PARAMS},
    ),
    ("logprobs", {"logprobs": True}, {"logprobs": True, "top_logprobs": 0}),
    ("top_logprobs", {"logprobs": True, "top_logprobs": 3}, {"logprobs": True, "top_logprobs": 3}),
    ("logprobs_false", {"logprobs": False}, {}),
    ("tools", {"tools": [WEATHER]}, {"tools": [WEATHER]}),
    ("tool_choice_auto", {"tools": [WEATHER], "tool_choice": "auto"}, {"tools": [WEATHER]}),
    ("tool_choice_none", {"tools": [WEATHER], "tool_choice": "none"}, {}),
    (
        "tool_choice_named",
        {"tools": [WEATHER, TIME], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"format": WEATHER_PARAMS},
    ),
    ("tool_choice_required_one_tool", {"tools": [WEATHER], "tool_choice": "required"}, {"format": WEATHER_PARAMS}),
    ("parallel_tool_calls", {"tools": [WEATHER], "parallel_tool_calls": False}, {"tools": [WEATHER]}),
    ("n_1", {"n": 1}, {}),
    ("stream_false", {"stream": False}, {}),
    ("user", {"user": "u-1"}, {}),
    ("safety_identifier", {"safety_identifier": "hash"}, {}),
    ("prompt_cache_key", {"prompt_cache_key": "k"}, {}),
    ("metadata", {"metadata": {"k": "v"}}, {}),
    ("store_false", {"store": False}, {}),
    ("service_tier_auto", {"service_tier": "auto"}, {}),
    ("service_tier_default", {"service_tier": "default"}, {}),
    ("modalities_text", {"modalities": ["text"]}, {}),
    ("stream_options", {"stream_options": {"include_usage": True}}, {}),
]


@pytest.mark.parametrize(("fields", "expected"), [row[1:] for row in HONOURED], ids=[row[0] for row in HONOURED])
async def test_honoured_parameter_reaches_ollama(http, ollama, fields, expected):
    response = await post(http, **fields)
    assert response.status_code == 200, response.text
    body = sent(ollama)
    assert set(body) == PLAIN_KEYS | set(expected), "nothing else is sent"
    assert body["stream"] is True and body["keep_alive"] == -1 and body["model"] == "llama3.1:8b"
    assert body["messages"] == MESSAGES
    wanted = {"options": PLAIN_OPTIONS, **expected}
    if "tools" in expected:
        wanted["tools"] = [
            {"type": "function", "function": {"description": "", "parameters": {}, **t["function"]}}
            for t in expected["tools"]
        ]
    assert {k: body[k] for k in wanted} == wanted


# -- every refused parameter: 400 naming it, nothing sent to Ollama -----------------------------

REFUSED = [
    ("n", {"n": 2}),
    ("logit_bias", {"logit_bias": {"50256": -100}}),
    ("audio", {"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}),
    ("modalities", {"modalities": ["text", "audio"]}),
    ("prediction", {"prediction": {"type": "content", "content": "x"}}),
    ("reasoning_effort", {"reasoning_effort": "low"}),
    ("verbosity", {"verbosity": "low"}),
    ("web_search_options", {"web_search_options": {}}),
    ("functions", {"functions": [WEATHER["function"]]}),
    ("function_call", {"function_call": "auto"}),
    ("store", {"store": True}),
    ("service_tier", {"service_tier": "flex"}),
    ("top_logprobs", {"top_logprobs": 2}),
    ("top_logprobs", {"logprobs": True, "top_logprobs": 21}),
    ("tool_choice", {"tools": [WEATHER, TIME], "tool_choice": "required"}),
    ("tool_choice", {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
    ("response_format", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
    ("response_format.type", {"response_format": {"type": "grammar"}}),
    ("temperature", {"temperature": 2.5}),
    ("top_p", {"top_p": 1.5}),
    ("max_tokens", {"max_tokens": 0}),
    ("frequency_penalty", {"frequency_penalty": 3}),
    ("messages", {"messages": []}),
    ("messages.0.role", {"messages": [{"role": "function", "content": "x", "name": "f"}]}),
    (
        "messages.0.content.image_url",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
                }
            ]
        },
    ),
    (
        "messages.0.content.image_url",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}
            ]
        },
    ),
    (
        "messages.0.content.input_audio",
        {
            "messages": [
                {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}
            ]
        },
    ),
    ("bogus_field", {"bogus_field": 1}),
    ("messages.0.name", {"messages": [{"role": "user", "content": "x", "name": "alice"}]}),
    (
        "messages.0.function_call",
        {"messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": ""}}]},
    ),
    ("messages.0.bogus", {"messages": [{"role": "user", "content": "x", "bogus": 1}]}),
]


@pytest.mark.parametrize(("param", "fields"), REFUSED, ids=[f"{p}-{i}" for i, (p, _) in enumerate(REFUSED)])
async def test_refused_parameter_is_named(http, ollama, param, fields):
    response = await post(http, **fields)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert error["code"] is None and error["message"]
    assert ollama.stats()["started"] == 0, "a refused request never reaches Ollama"


async def test_refusal_through_the_openai_client(client, ollama):
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=LLAMA, messages=MESSAGES, n=3)
    assert refused.value.param == "n" and refused.value.status_code == 400


# -- plain completions ----------------------------------------------------------------------------


async def test_models_lists_the_served_ids(client):
    assert [m.id for m in (await client.models.list()).data] == [LLAMA]


async def test_model_by_id(client, http):
    model = await client.models.retrieve(LLAMA)
    assert (model.id, model.object, model.owned_by) == (LLAMA, "model", "llm-runner")
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("meta-llama/nope")
    missing = (await http.get("/v1/models/meta-llama/nope")).json()["error"]
    assert (missing["type"], missing["param"]) == ("not_found_error", "model")


async def test_non_stream_completion(client, ollama):
    completion = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, max_tokens=5)
    assert completion.model == LLAMA and completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].logprobs is None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (14, 5)
    assert sent(ollama)["options"]["num_predict"] == 5


async def test_stop_ends_the_answer(client, ollama):
    completion = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, stop=["tok3"], seed=7)
    assert completion.choices[0].message.content == "tok0 tok1 tok2 "
    assert completion.choices[0].finish_reason == "stop"


async def test_stream_with_include_usage(client, ollama):
    stream = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"tok{i} " for i in range(12))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.total_tokens == 26
    assert all(c.usage is None for c in chunks[:-1])


async def test_usage_on_the_finish_chunk_without_include_usage(http, ollama):
    chunks = await sse(http, max_tokens=3)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["choices"] for c in chunks), "no empty-choices chunk unless asked for"
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "length" and last["choices"][0]["delta"] == {}
    assert last["usage"] == {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17}
    assert all("usage" not in c for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)


async def test_usage_in_its_own_chunk_with_include_usage(http, ollama):
    chunks = await sse(http, max_tokens=3, stream_options={"include_usage": True})
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "length" and "usage" not in finish
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3


async def test_content_parts_and_developer_role_are_accepted(client, ollama):
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
    ]
    await client.chat.completions.create(model=LLAMA, messages=messages, max_tokens=2)
    assert sent(ollama)["messages"] == MESSAGES


# -- tools ----------------------------------------------------------------------------------------


async def test_tool_call_non_stream(client, ollama):
    ollama.script(tool_call=PARIS)
    completion = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, tools=[WEATHER])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == PARIS["arguments"]
    assert sent(ollama)["tools"][0]["function"]["parameters"] == WEATHER_PARAMS


async def test_tool_call_stream(client, ollama):
    ollama.script(tool_call=PARIS)
    stream = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, tools=[WEATHER], stream=True)
    chunks = [chunk async for chunk in stream]
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or ()]
    assert len(deltas) == 1
    (delta,) = deltas
    assert (delta.index, delta.type, delta.function.name) == (0, "function", "get_weather")
    assert delta.id.startswith("call_") and json.loads(delta.function.arguments) == PARIS["arguments"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.completion_tokens > 0


async def test_ollama_call_ids_are_kept(client, ollama):
    ollama.script(tool_call={**PARIS, "id": "call_from_ollama"})
    completion = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, tools=[WEATHER])
    assert completion.choices[0].message.tool_calls[0].id == "call_from_ollama"


async def test_parallel_tool_calls(client, ollama):
    ollama.script(tool_call=[PARIS, {"name": "get_time", "arguments": {}}])
    both = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, tools=[WEATHER, TIME])
    assert [c.function.name for c in both.choices[0].message.tool_calls] == ["get_weather", "get_time"]
    assert len({c.id for c in both.choices[0].message.tool_calls}) == 2
    stream = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, tools=[WEATHER, TIME], stream=True)
    deltas = [d for c in [c async for c in stream] for d in c.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.function.name) for d in deltas] == [(0, "get_weather"), (1, "get_time")]
    one = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    assert [c.function.name for c in one.choices[0].message.tool_calls] == ["get_weather"]
    stream = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, tools=[WEATHER, TIME], stream=True, parallel_tool_calls=False
    )
    deltas = [d for c in [c async for c in stream] for d in c.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.function.name) for d in deltas] == [(0, "get_weather")]


async def test_tool_result_round_trip(client, ollama):
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    completion = await client.chat.completions.create(model=LLAMA, messages=messages, tools=[WEATHER, TIME])
    assert completion.choices[0].message.content.startswith("tok0")
    assert sent(ollama)["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "noon", "tool_name": "get_time"},
        {"role": "tool", "content": "18C", "tool_name": "get_weather"},
    ]


@pytest.mark.parametrize("choice", [{"type": "function", "function": {"name": "get_weather"}}, "required"])
async def test_forced_tool_choice(client, ollama, choice):
    tools = [WEATHER] if choice == "required" else [WEATHER, TIME]
    completion = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, tools=tools, tool_choice=choice)
    body = sent(ollama)
    assert "tools" not in body and body["format"] == WEATHER_PARAMS
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls" and message.content is None
    (call,) = message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMS)


async def test_forced_tool_choice_stream(client, ollama):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    stream = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, tools=[WEATHER], tool_choice=choice, stream=True, logprobs=True
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "", "the JSON is the call, not text"
    (call,) = [d for c in chunks for d in c.choices[0].delta.tool_calls or ()]
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMS)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_tool_choice_none_answers_in_text(client, ollama):
    ollama.script(tool_call=PARIS)
    completion = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, tools=[WEATHER], tool_choice="none"
    )
    assert completion.choices[0].message.tool_calls is None and completion.choices[0].finish_reason == "stop"
    assert "tools" not in sent(ollama)


async def test_tools_on_a_model_without_them(client, ollama):
    ollama.script(capabilities=["completion"])
    with pytest.raises(openai.BadRequestError, match="does not support tools"):
        await client.chat.completions.create(model=LLAMA, messages=MESSAGES, tools=[WEATHER])


# -- structured output ----------------------------------------------------------------------------


async def test_json_object(client, ollama):
    completion = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(completion.choices[0].message.content), dict)
    stream = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, response_format={"type": "json_object"}, stream=True
    )
    parts = [c.choices[0].delta.content for c in [c async for c in stream] if c.choices[0].delta.content]
    assert len(parts) > 3 and isinstance(json.loads("".join(parts)), dict)


async def test_json_schema(client, ollama):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 18},
            "tags": {"type": "array", "items": {"type": "string"}},
            "home": {"$ref": "#/$defs/City"},
        },
        "required": ["name", "age", "tags", "home"],
        "additionalProperties": False,
        "$defs": {"City": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    completion = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, response_format=response_format)
    assert sent(ollama)["format"] == schema
    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)


# -- images ---------------------------------------------------------------------------------------


async def test_image_parts_become_ollama_images(client, ollama):
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
    ]
    await client.chat.completions.create(model=LLAMA, messages=[{"role": "user", "content": content}], max_tokens=2)
    assert sent(ollama)["messages"] == [{"role": "user", "content": "What is this?", "images": [PNG]}]


# -- logprobs -------------------------------------------------------------------------------------


async def test_logprobs_non_stream(client, ollama):
    completion = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, max_tokens=3, logprobs=True, top_logprobs=2
    )
    choice = completion.choices[0]
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content == "tok0 tok1 tok2 "
    assert all(e.logprob <= 0 and bytes(e.bytes).decode() == e.token for e in entries)
    assert all(len(e.top_logprobs) == 2 and e.top_logprobs[0].token == e.token for e in entries)


async def test_logprobs_stream(client, ollama):
    stream = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, max_tokens=3, logprobs=True, stream=True
    )
    scored = [c.choices[0] for c in [c async for c in stream] if c.choices and c.choices[0].delta.content]
    assert [c.logprobs.content[0].token for c in scored] == ["tok0 ", "tok1 ", "tok2 "]
    assert all(c.logprobs.content[0].top_logprobs == [] for c in scored)


# -- paths, statuses, error shapes ----------------------------------------------------------------


async def test_errors_in_openai_shape(client, ollama):
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=LLAMA, messages=MESSAGES, temperature=3)
    ollama.script(chat_status=500, chat_error="llama runner process has terminated")
    with pytest.raises(openai.InternalServerError, match="llama runner process has terminated"):
        await client.chat.completions.create(model=LLAMA, messages=MESSAGES)
    ollama.script(chat_status=200, error_after=2)
    stream = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="error was encountered"):
        async for _ in stream:
            pass


async def test_unknown_paths_and_methods(http):
    for method, path in [("POST", "/v1/completions"), ("GET", "/v1/nope"), ("POST", "/v1/embeddings")]:
        response = await http.request(method, path, json={})
        assert response.status_code == 404, path
        assert response.json()["error"]["type"] == "not_found_error"
    for method, path in [("GET", "/v1/chat/completions"), ("DELETE", "/v1/models"), ("PUT", "/v1/chat/completions")]:
        response = await http.request(method, path)
        assert response.status_code == 405, path
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and method in error["message"]


async def test_unknown_model_is_404(http):
    response = await post(http, model="meta-llama/Other-Model")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


async def test_invalid_json_body(http):
    response = await http.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


async def test_pinned_path(http, ollama):
    base = f"/models/{LLAMA.replace('/', '--')}/v1"
    assert [m["id"] for m in (await http.get(base + "/models")).json()["data"]] == [LLAMA]
    assert (await http.get(f"{base}/models/{LLAMA}")).json()["id"] == LLAMA
    assert (await post(http, base + "/chat/completions", max_tokens=1)).status_code == 200
    refused = await post(http, base + "/chat/completions", model="Qwen/Qwen2.5-7B-Instruct")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"
    chunks = await sse(http, base + "/chat/completions", max_tokens=2)
    assert chunks[-1]["model"] == LLAMA


async def test_root_serves_every_model_and_prefixes_pin_one(own_ollama):
    other = "acme/Tiny-Chat"
    own_ollama.script(models=["llama3.1:8b", "tiny:1b"])
    env = {
        "OLLAMA_HOST": own_ollama.url,
        "MODEL_ID": f"{LLAMA},{other}",
        "LLM_RUNNER_MODEL_MAP": '{"acme/Tiny-Chat": "tiny:1b"}',
    }
    with serving(env) as runner:
        async with httpx.AsyncClient(base_url=runner.url, timeout=30) as http:
            assert {m["id"] for m in (await http.get("/v1/models")).json()["data"]} == {LLAMA, other}
            for model, tag in [(LLAMA, "llama3.1:8b"), (other, "tiny:1b")]:
                answer = await post(http, model=model, max_tokens=1)
                assert answer.json()["model"] == model and sent(own_ollama)["model"] == tag
                pinned = f"/models/{model.replace('/', '--')}/v1"
                assert [m["id"] for m in (await http.get(pinned + "/models")).json()["data"]] == [model]
                elsewhere = other if model == LLAMA else LLAMA
                refused = await post(http, pinned + "/chat/completions", model=elsewhere)
                assert (refused.status_code, refused.json()["error"]["param"]) == (400, "model")
                missing = await http.get(f"{pinned}/models/{elsewhere}")
                assert missing.status_code == 404


async def test_busy_is_429_with_retry_after(http, ollama):
    ollama.script(stall_after=1, stall_seconds=30)
    body = {"model": LLAMA, "messages": MESSAGES, "stream": True}
    async with http.stream("POST", "/v1/chat/completions", json=body) as first:
        assert first.status_code == 200
        await anext(first.aiter_lines())  # the slot is held
        busy = await post(http)
        assert busy.status_code == 429 and busy.headers["retry-after"].isdigit()
        assert busy.json()["error"]["type"] == "rate_limit_error"
    stats = await ollama.until(lambda s: s["open_generations"] == 0 and s["started"] == 2)
    # The busy request never reached Ollama: the second call is the cut stream's one-token prompt count.
    stream, count = stats["chat_bodies"][-2:]
    assert stream["options"]["num_predict"] != 1 and count["options"]["num_predict"] == 1


async def test_not_ready_is_503_with_retry_after():
    nowhere = {"OLLAMA_HOST": "http://127.0.0.1:9", "MODEL_ID": LLAMA, "LLM_RUNNER_STARTUP_GRACE_S": "0"}
    with Runner(nowhere) as unready:
        async with httpx.AsyncClient(base_url=unready.url, timeout=30) as http:
            response = await post(http)
            assert response.status_code == 503 and response.headers["retry-after"].isdigit()
            error = response.json()["error"]
            assert error["type"] == "service_unavailable" and "unreachable" in error["message"]


async def test_auth_applies_to_the_openai_endpoint(standin_server):
    env = {"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA, "AUTH_TOKEN": "s3cret"}
    with serving(env) as secured:
        wrong = openai.AsyncOpenAI(base_url=secured.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.list()
        right = openai.AsyncOpenAI(base_url=secured.url + "/v1", api_key="s3cret", max_retries=0)
        completion = await right.chat.completions.create(model=LLAMA, messages=MESSAGES, max_tokens=1)
        assert completion.usage.completion_tokens == 1
