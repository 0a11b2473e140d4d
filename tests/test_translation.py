"""What reaches Ollama: the exact /api/chat body for a Livepeer request."""

from __future__ import annotations

from tests.conftest import LLAMA, go_body
from tests.support.golivepeer import parse_livepeer_stream
from tests.support.servers import serving


async def test_defaults_and_runner_options_reach_ollama(runner, ollama, client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    await client.post(runner.url + "/llm", json={"model": LLAMA, "messages": messages, "max_tokens": 7})
    (body,) = ollama.stats()["chat_bodies"]
    assert body == {
        "model": "llama3.1:8b",
        "messages": messages,
        "stream": True,  # always stream upstream: closing it is how Ollama stops
        "options": {"num_ctx": 4096, "num_predict": 7, "temperature": 0.7, "top_p": 1.0},  # no top_k for -1
        "keep_alive": -1,  # a JSON number: the string "-1" is invalid for Ollama
    }


async def test_client_sampling_values_reach_ollama(runner, ollama, client):
    await client.post(runner.url + "/llm", json=go_body(temperature=0.2, top_p=0.5, top_k=40, max_tokens=9))
    options = ollama.stats()["chat_bodies"][-1]["options"]
    assert options == {"num_ctx": 4096, "num_predict": 9, "temperature": 0.2, "top_p": 0.5, "top_k": 40}


async def test_max_tokens_beyond_the_context_is_capped_at_num_ctx(runner, ollama, client):
    await client.post(runner.url + "/llm", json=go_body(max_tokens=1_000_000))
    assert ollama.stats()["chat_bodies"][-1]["options"]["num_predict"] == 4096


async def test_configured_num_ctx_and_keep_alive_are_sent_on_warm_up_and_every_request(standin_server, client):
    standin_server.reset()
    env = {"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA, "LLM_RUNNER_NUM_CTX": "8192"}
    with serving(env | {"LLM_RUNNER_KEEP_ALIVE": "30m"}) as custom:
        await client.post(custom.url + "/llm", json=go_body())
        body = standin_server.stats()["chat_bodies"][-1]
        assert body["options"]["num_ctx"] == 8192 and body["keep_alive"] == "30m"
        assert standin_server.stats()["warmups"] >= 1


async def test_thinking_is_inlined_in_think_tags(runner, ollama, client):
    ollama.script(thinking_tokens=2, tokens=2)
    stream = parse_livepeer_stream((await client.post(runner.url + "/llm", json=go_body(stream=True))).content)
    assert stream.text == "<think>hmm0 hmm1 </think>\n\ntok0 tok1 "
    assert stream.usage["completion_tokens"] == 4  # Ollama's eval_count, thinking tokens included
