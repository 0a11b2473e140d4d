"""An Ollama that never answers (nothing listens at OLLAMA_HOST) is not "loading": after the start's
grace /health says ERROR (Docker's HEALTHCHECK counts it unhealthy), /ready is 503, /status says
why, requests are refused at once naming the fix, and the log says it once when it goes down and
once when it comes back."""

from __future__ import annotations

import time

from llm_runner.engine.launcher import free_port
from tests.conftest import LLAMA, go_body
from tests.support.servers import Runner, StandIn

V1_BODY = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


async def test_an_unreachable_ollama_is_an_error_after_the_grace_and_recovers(client):
    port = free_port()  # nothing listens there yet
    url = f"http://127.0.0.1:{port}"
    env = {"OLLAMA_HOST": url, "MODEL_ID": LLAMA, "LLM_RUNNER_STARTUP_GRACE_S": "1", "LLM_RUNNER_LOADING_WAIT_S": "30"}
    with Runner(env) as runner:
        began = time.monotonic()
        runner.wait_status("ERROR")
        print(f"\n/health ERROR {time.monotonic() - began:.1f} s after start (grace 1 s)")
        assert (await client.get(runner.url + "/ready")).status_code == 503
        (upstream,) = (await client.get(runner.url + "/status")).json()["upstreams"]
        assert upstream["down_since"] is not None and "unreachable" in upstream["last_error"]

        asked = time.monotonic()
        llm = await client.post(runner.url + "/llm", json=go_body())
        v1 = await client.post(runner.url + "/v1/chat/completions", json=V1_BODY)
        took = time.monotonic() - asked
        print(f"/llm and /v1 refused in {took * 1e3:.0f} ms: {llm.json()['detail']['msg']}")
        assert took < 2.0
        assert llm.status_code == 500
        message = llm.json()["detail"]["msg"]
        assert url in message and "unreachable" in message and "OLLAMA_HOST" in message, message
        assert v1.status_code == 503 and v1.headers["retry-after"]

        with StandIn(port):
            runner.wait_status("OK")
            assert (await client.post(runner.url + "/llm", json=go_body())).status_code == 200
            log = runner.log()
    assert log.count(f"upstream {url} is down") == 1
    assert log.count(f"upstream {url} reachable") == 1
