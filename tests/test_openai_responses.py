"""`POST /v1/responses`, stateless, on the same core as chat: text answers and their typed event
stream, `input` as text or messages (earlier outputs sent back included), `instructions`,
`max_output_tokens`, exact usage; what needs stored state or tools is refused by name. Driven by
the official `openai` client and by raw HTTP, with the Ollama stand-in behind the runner."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LLAMA
from tests.support.servers import serving
from tests.test_openai import PNG

TEXT = "".join(f"tok{i} " for i in range(12))
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture
def client(runner):
    return openai.OpenAI(base_url=runner.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
async def http(runner):
    async with httpx.AsyncClient(base_url=runner.url, timeout=30) as session:
        yield session


def sent(ollama) -> dict:
    return ollama.stats()["chat_bodies"][-1]


def test_text_answer_with_instructions_and_usage(client, ollama):
    response = client.responses.create(model=LLAMA, input="hi there", instructions="Be brief.")
    assert response.status == "completed" and response.output_text == TEXT
    assert response.usage.output_tokens == 12 and response.usage.total_tokens == response.usage.input_tokens + 12
    assert response.id.startswith("resp_") and response.output[0].role == "assistant"
    body = sent(ollama)
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    assert "format" not in body


def test_max_output_tokens_makes_it_incomplete(client, ollama):
    response = client.responses.create(model=LLAMA, input="hi", max_output_tokens=3, temperature=0.2, top_p=0.5)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "tok0 tok1 tok2 " and response.usage.output_tokens == 3
    assert sent(ollama)["options"] == {"num_ctx": 4096, "num_predict": 3, "temperature": 0.2, "top_p": 0.5}


def test_a_conversation_carried_in_input(client, ollama):
    """The SDK's documented loop: `context += response.output`, then the next question."""
    ollama.script(tokens=2)
    context: list[Any] = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    for question in ("and then?", "bye"):
        response = client.responses.create(model=LLAMA, input=context)
        context += [*response.output, {"role": "user", "content": [{"type": "input_text", "text": question}]}]
    client.responses.create(model=LLAMA, input=context)
    answer = {"role": "assistant", "content": "tok0 tok1 "}
    assert sent(ollama)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        answer,
        {"role": "user", "content": "and then?"},
        answer,
        {"role": "user", "content": "bye"},
    ]


def test_stream_events_in_order(client, ollama):
    ollama.script(tokens=3)
    events = list(client.responses.create(model=LLAMA, input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "tok0 tok1 tok2 "
    final = events[-1].response
    assert final.output_text == "tok0 tok1 tok2 " and final.usage.output_tokens == 3
    with client.responses.stream(model=LLAMA, input="hi", max_output_tokens=2) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == "tok0 tok1 "


async def test_stream_failure_is_an_error_event_then_failed(http, ollama):
    ollama.script(error_after=2)
    async with http.stream("POST", "/v1/responses", json={"model": LLAMA, "input": "hi", "stream": True}) as reply:
        lines = [line async for line in reply.aiter_lines()]
    kinds = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert kinds[-2:] == ["error", "response.failed"] and "response.completed" not in kinds
    failed = json.loads([line for line in lines if line.startswith("data: ")][-1][6:])
    assert (
        failed["response"]["status"] == "failed" and "error was encountered" in failed["response"]["error"]["message"]
    )


def test_json_schema_text_format(client, ollama):
    fmt = {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True}
    response = client.responses.create(model=LLAMA, input="a city", text={"format": fmt})
    assert "city" in json.loads(response.output_text)
    assert sent(ollama)["format"] == SCHEMA and response.text.format.type == "json_schema"


async def test_image_part_and_inline_reasoning_sent_back(http, ollama):
    image = {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"}
    earlier = {"role": "assistant", "content": [{"type": "output_text", "text": "<think>hm</think>\n\nA cat."}]}
    question = {"role": "user", "content": [{"type": "input_text", "text": "And this?"}, image]}
    response = await http.post("/v1/responses", json={"model": LLAMA, "input": [earlier, question]})
    assert response.status_code == 200, response.text
    assert sent(ollama)["messages"] == [
        {"role": "assistant", "content": "A cat.", "thinking": "hm"},
        {"role": "user", "content": "And this?", "images": [PNG]},
    ]


async def test_pinned_path(http, ollama):
    base = f"/models/{LLAMA.replace('/', '--')}/v1/responses"
    assert (await http.post(base, json={"model": LLAMA, "input": "hi"})).json()["status"] == "completed"
    other = await http.post(base, json={"model": "other/model", "input": "hi"})
    assert other.status_code == 400 and other.json()["error"]["param"] == "model"


def one_part(part: dict[str, Any]) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": [part]}]}


REFUSED = [
    ("store", {"store": True}),
    ("previous_response_id", {"previous_response_id": "resp_1"}),
    ("tools", {"tools": [{"type": "function", "name": "f", "parameters": {}}]}),
    ("tool_choice", {"tool_choice": "required"}),
    ("reasoning.effort", {"reasoning": {"effort": "high"}}),
    ("text.format.schema", {"text": {"format": {"type": "json_schema", "name": "x"}}}),
    ("text.format.bogus", {"text": {"format": {"type": "text", "bogus": 1}}}),
    ("stream_options.include_obfuscation", {"stream": True, "stream_options": {"include_obfuscation": True}}),
    ("input.1.type", {"input": [{"role": "user", "content": "hi"}, {"type": "function_call_output", "call_id": "c"}]}),
    ("input.0.bogus", {"input": [{"role": "user", "content": "hi", "bogus": 1}]}),
    ("input.0.content.0.type", one_part({"type": "input_file", "file_id": "f"})),
    ("input.0.content.0.file_id", one_part({"type": "input_image", "file_id": "f"})),
    ("input.0.content.0.image_url", one_part({"type": "input_image", "image_url": "https://example.com/a.png"})),
    ("input.0.content.0.image_url", one_part({"type": "input_text", "text": "hi", "image_url": "x"})),
    ("truncation", {"truncation": "auto"}),
    ("bogus", {"bogus": 1}),
]


@pytest.mark.parametrize(("param", "fields"), REFUSED, ids=[f"{p}-{i}" for i, (p, _) in enumerate(REFUSED)])
async def test_refused_field_is_named(http, ollama, param, fields):
    response = await http.post("/v1/responses", json={"model": LLAMA, "input": "hi", **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert ollama.stats()["started"] == 0, "a refused request never reaches Ollama"


async def test_accepted_fields_that_ask_nothing(http, ollama):
    fields = {"store": False, "metadata": {"k": "v"}, "user": "u", "truncation": "disabled", "tools": []}
    fields |= {"tool_choice": "auto", "parallel_tool_calls": True, "reasoning": {}, "include": []}
    response = await http.post("/v1/responses", json={"model": LLAMA, "input": "hi", **fields})
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"k": "v"} and response.json()["store"] is False


def test_auth_applies(standin_server):
    env = {"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA, "AUTH_TOKEN": "s3cret"}
    with serving(env) as secured:
        wrong = openai.OpenAI(base_url=secured.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.responses.create(model=LLAMA, input="hi")
        right = openai.OpenAI(base_url=secured.url + "/v1", api_key="s3cret", max_retries=0)
        assert right.responses.create(model=LLAMA, input="hi", max_output_tokens=1).usage.output_tokens == 1
