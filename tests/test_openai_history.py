"""Conversations round-trip: an answer sent back as the client got it (every field of OpenAI's
response message, empty ones included) is accepted; reasoning of earlier turns reaches Ollama as
`thinking`; nested objects are checked like the top level, each refusal naming the path the
request holds; answers carry the fields OpenAI's spec requires. Raw HTTP and the `openai` SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LLAMA
from tests.test_openai import MESSAGES, PARIS, WEATHER, post, sent, sse

ANSWER = {"role": "assistant", "content": "tok0 tok1 "}
ASKED = [*MESSAGES, ANSWER, {"role": "user", "content": "and then?"}]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


@pytest.fixture
async def http(runner):
    async with httpx.AsyncClient(base_url=runner.url, timeout=30) as session:
        yield session


def with_answer(**fields: Any) -> list[dict[str, Any]]:
    """The conversation with fields added to its assistant turn (messages.2)."""
    return [*MESSAGES, {**ANSWER, **fields}, ASKED[-1]]


# -- history fields that carry nothing are accepted ----------------------------------------------

EMPTY = {
    "refusal": None,
    "annotations": [],
    "audio": None,
    "function_call": None,
    "tool_calls": [],
    "reasoning_content": None,
    "reasoning": "",
    "name": None,
}


async def test_empty_response_fields_are_accepted(http, ollama):
    response = await post(http, messages=with_answer(**EMPTY))
    assert response.status_code == 200, response.text
    assert sent(ollama)["messages"] == ASKED, "nothing of the empty fields reaches Ollama"


@pytest.mark.parametrize(
    ("fields", "content"),
    [
        ({"content": None, "refusal": "I can't help."}, "I can't help."),
        ({"content": "Partly.", "refusal": "No more."}, "Partly.\n\nNo more."),
        ({"content": [{"type": "refusal", "refusal": "No."}]}, "No."),
    ],
    ids=["refusal_alone", "refusal_and_content", "refusal_part"],
)
async def test_a_refusal_text_is_kept_as_content(http, ollama, fields, content):
    response = await post(http, messages=with_answer(**fields))
    assert response.status_code == 200, response.text
    assert sent(ollama)["messages"][2] == {"role": "assistant", "content": content}


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_of_an_earlier_turn_becomes_thinking(http, ollama, field):
    response = await post(http, messages=with_answer(**{field: "Greet back."}))
    assert response.status_code == 200, response.text
    assert sent(ollama)["messages"][2] == {**ANSWER, "thinking": "Greet back."}
    same = await post(http, messages=with_answer(reasoning="Same.", reasoning_content="Same."))
    assert same.status_code == 200 and sent(ollama)["messages"][2]["thinking"] == "Same."


async def test_client_side_copies_are_accepted(http, ollama):
    """What SDKs keep on an answer they built: `index` of streamed tool-call deltas, the
    `.parse()` copies `parsed` and `parsed_arguments`; each repeats what the message holds."""
    call = {**TOOL_CALL, "index": 0, "function": {**TOOL_CALL["function"], "parsed_arguments": {}}}
    answer = {"role": "assistant", "content": None, "tool_calls": [call], "parsed": None}
    messages = [*MESSAGES, answer, {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]
    response = await post(http, messages=messages, stream_options={"include_obfuscation": False}, stream=True)
    assert response.status_code == 200, response.text
    got = sent(ollama)["messages"]
    assert got[2]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {}}}]
    assert got[3] == {"role": "tool", "content": "18C", "tool_name": "get_weather"}


# -- everything else is refused by the path the request holds ------------------------------------

TEXT_PART = {"type": "text", "text": "hi"}
CHOOSE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}
REFUSED = [
    ("messages.2.audio", {"messages": with_answer(audio={"id": "audio_1"})}),
    ("messages.2.annotations", {"messages": with_answer(annotations=[{"type": "url_citation"}])}),
    ("messages.2.function_call", {"messages": with_answer(function_call={"name": "f", "arguments": ""})}),
    ("messages.2.reasoning", {"messages": with_answer(reasoning="One.", reasoning_content="Two.")}),
    ("messages.2.reasoning", {"messages": with_answer(reasoning={"text": "an object"})}),
    ("messages.1.reasoning_content", {"messages": [MESSAGES[0], {**MESSAGES[1], "reasoning_content": "x"}]}),
    ("messages.2.bogus", {"messages": with_answer(bogus=None)}),
    ("messages.2.tool_calls.0.bogus", {"messages": with_answer(tool_calls=[{**TOOL_CALL, "bogus": 1}])}),
    (
        "messages.2.tool_calls.0.function.bogus",
        {"messages": with_answer(tool_calls=[{**TOOL_CALL, "function": {"name": "f", "bogus": 1}}])},
    ),
    (
        "messages.1.content.0.bogus",
        {"messages": [MESSAGES[0], {"role": "user", "content": [{**TEXT_PART, "bogus": 1}]}]},
    ),
    (
        "messages.1.content.0.image_url",
        {"messages": [MESSAGES[0], {"role": "user", "content": [{**TEXT_PART, "image_url": {"url": "x"}}]}]},
    ),
    (
        "messages.0.content.0.image_url.bogus",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x", "bogus": 1}}]}]},
    ),
    ("stream_options.include_obfuscation", {"stream": True, "stream_options": {"include_obfuscation": True}}),
    ("stream_options.bogus", {"stream": True, "stream_options": {"bogus": 1}}),
    ("tools.0.bogus", {"tools": [{**WEATHER, "bogus": 1}]}),
    ("tools.0.function.bogus", {"tools": [{"type": "function", "function": {"name": "f", "bogus": 1}}]}),
    ("response_format.bogus", {"response_format": {"type": "json_object", "bogus": 1}}),
    ("response_format.json_schema", {"response_format": {"type": "text", "json_schema": {"schema": {}}}}),
    (
        "response_format.json_schema.bogus",
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}, "bogus": 1}}},
    ),
    ("tool_choice.bogus", {"tools": [WEATHER], "tool_choice": {**CHOOSE_WEATHER, "bogus": 1}}),
    (
        "tool_choice.function.bogus",
        {"tools": [WEATHER], "tool_choice": {**CHOOSE_WEATHER, "function": {"name": "f", "bogus": 1}}},
    ),
    ("tool_choice", {"tools": [WEATHER], "tool_choice": "sometimes"}),
    ('""', {"": 1}),
    ("stream", {"stream": "yes"}),
    ("stream", {"stream": 1}),
    ("messages.0.content", {"messages": [{"role": "user", "content": None}]}),
    ('stream_options.""', {"stream": True, "stream_options": {"": True}}),
    ('"a.b"', {"a.b": 1}),
]


@pytest.mark.parametrize(("param", "fields"), REFUSED, ids=[f"{p}-{i}" for i, (p, _) in enumerate(REFUSED)])
async def test_refused_field_is_named_by_its_path(http, ollama, param, fields):
    response = await post(http, **fields)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert param.split(".")[-1].strip('"') in error["message"]
    assert ollama.stats()["started"] == 0, "a refused request never reaches Ollama"


# -- answers carry what the spec requires ---------------------------------------------------------


async def test_answers_carry_a_null_refusal(http, ollama):
    choice = (await post(http, logprobs=True)).json()["choices"][0]
    assert choice["message"]["refusal"] is None and choice["logprobs"]["refusal"] is None
    assert choice["logprobs"]["content"]
    chunks = await sse(http, logprobs=True)
    scored = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0].get("logprobs")]
    assert scored and all(c["logprobs"]["refusal"] is None and c["logprobs"]["content"] for c in scored)


# -- the openai SDK: a conversation loop that appends each answer --------------------------------


def test_sdk_conversation_loop_round_trips(runner, ollama):
    """`messages.append(completion.choices[0].message)` over several turns, a tool call among them:
    the SDK sends each answer back as it parsed it, and Ollama gets the conversation."""
    client = openai.OpenAI(base_url=runner.url + "/v1", api_key="unused", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    ollama.script(tool_call=PARIS)
    completion = client.chat.completions.create(model=LLAMA, messages=messages, tools=[WEATHER])
    messages.append(completion.choices[0].message)
    call_id = completion.choices[0].message.tool_calls[0].id
    messages.append({"role": "tool", "tool_call_id": call_id, "content": "18C"})
    ollama.script(tool_call=None, tokens=3)
    for question in ("Thanks. Tomorrow?", "And in Rome?"):
        completion = client.chat.completions.create(model=LLAMA, messages=messages, tools=[WEATHER])
        assert completion.choices[0].message.refusal is None
        messages += [completion.choices[0].message, {"role": "user", "content": question}]
    with client.chat.completions.stream(model=LLAMA, messages=messages) as stream:
        messages.append(stream.get_final_completion().choices[0].message)
    messages.append({"role": "user", "content": "Bye."})
    client.chat.completions.create(model=LLAMA, messages=messages)
    got = sent(ollama)["messages"]
    assert [m["role"] for m in got] == ["user", "assistant", "tool"] + ["assistant", "user"] * 3
    assert got[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": PARIS["arguments"]}}]
    assert got[2] == {"role": "tool", "content": "18C", "tool_name": "get_weather"}
    assert all(m == {"role": "assistant", "content": "tok0 tok1 tok2 "} for m in got[3::2])


def test_sdk_reasoning_turn_reaches_a_thinking_model(runner, ollama):
    """A history from a server that returns `reasoning_content` (DeepSeek, vLLM): the SDK sends
    the extra key as given, and Ollama gets it as `thinking` on that message."""
    ollama.script(capabilities=["completion", "tools", "thinking"], thinking_tokens=2)
    client = openai.OpenAI(base_url=runner.url + "/v1", api_key="unused", max_retries=0)
    earlier = {"role": "assistant", "content": "Hello!", "reasoning_content": "A greeting; greet back."}
    messages: Any = [{"role": "user", "content": "hi"}, earlier, {"role": "user", "content": "How are you?"}]
    client.chat.completions.create(model=LLAMA, messages=messages, max_tokens=2)
    thought = {"role": "assistant", "content": "Hello!", "thinking": "A greeting; greet back."}
    assert sent(ollama)["messages"][1] == thought


def test_sdk_inline_reasoning_comes_back_as_thinking(runner, ollama):
    """This runner's own answer from a thinking model holds its reasoning inline
    (`<think>…</think>` first); appended and sent back, it reaches Ollama as `thinking`."""
    ollama.script(capabilities=["completion", "tools", "thinking"], thinking_tokens=2, tokens=2)
    client = openai.OpenAI(base_url=runner.url + "/v1", api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": "hi"}]
    completion = client.chat.completions.create(model=LLAMA, messages=messages)
    assert completion.choices[0].message.content.startswith("<think>")
    messages += [completion.choices[0].message, {"role": "user", "content": "How are you?"}]
    client.chat.completions.create(model=LLAMA, messages=messages)
    thought = {"role": "assistant", "content": "tok0 tok1 ", "thinking": "hmm0 hmm1 "}
    assert sent(ollama)["messages"][1] == thought
