"""The OpenAI-compatible endpoint, driven by the official `openai` client."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import LLAMA
from tests.servers import Runner

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]


@pytest.fixture
def client(runner):
    return openai.AsyncOpenAI(base_url=runner.url + "/v1", api_key="unused", max_retries=0)


async def test_models_lists_the_served_ids(client):
    assert [m.id for m in (await client.models.list()).data] == [LLAMA]


async def test_non_stream_completion(client, ollama):
    completion = await client.chat.completions.create(model=LLAMA, messages=MESSAGES, max_tokens=5)
    assert completion.model == LLAMA and completion.object == "chat.completion"
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    assert completion.choices[0].finish_reason == "length"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (14, 5)
    assert ollama.stats()["chat_bodies"][-1]["options"]["num_predict"] == 5


async def test_stream_with_usage(client, ollama):
    stream = await client.chat.completions.create(
        model=LLAMA, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"tok{i} " for i in range(12))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.total_tokens == 26


async def test_content_parts_and_developer_role_are_accepted(client, ollama):
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
    ]
    await client.chat.completions.create(model=LLAMA, messages=messages, max_tokens=2)
    assert ollama.stats()["chat_bodies"][-1]["messages"] == MESSAGES


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


async def test_auth_applies_to_the_openai_endpoint(standin_server):
    env = {"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA, "AUTH_TOKEN": "s3cret"}
    with Runner(env) as secured:
        secured.wait_status("OK")
        wrong = openai.AsyncOpenAI(base_url=secured.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.list()
        right = openai.AsyncOpenAI(base_url=secured.url + "/v1", api_key="s3cret", max_retries=0)
        completion = await right.chat.completions.create(model=LLAMA, messages=MESSAGES, max_tokens=1)
        assert completion.usage.completion_tokens == 1
