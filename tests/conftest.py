"""Fixtures: real servers on loopback (see servers.py) and a go-livepeer-style client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import Runner, StandIn

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"


def go_body(**fields: object) -> dict:
    """A /llm body as go-livepeer marshals it (keys in Go struct order, nil pointers omitted)."""
    body: dict = {"max_tokens": 32, "messages": [{"content": "Tell a robot story.", "role": "user"}]}
    body |= {"model": LLAMA, "stream": False}
    body.update(fields)
    return body


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


@pytest.fixture
def ollama(standin_server: StandIn) -> Iterator[StandIn]:
    """The shared stand-in, reset to its defaults (llama3.1:8b present, 12 tokens per answer)
    before and after the test, so no script leaks into the next one."""
    standin_server.reset()
    yield standin_server
    standin_server.reset()


@pytest.fixture
def own_ollama() -> Iterator[StandIn]:
    """A stand-in of this test's own, to stop, kill and start again (it keeps its port)."""
    server = StandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def runner(standin_server: StandIn) -> Iterator[Runner]:
    """A runner serving the default Llama model from the shared stand-in."""
    standin_server.reset()
    with Runner({"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA, "LLM_RUNNER_LOADING_WAIT_S": "2"}) as server:
        server.wait_status("OK")
        yield server


@pytest.fixture
async def client() -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=30) as http:
        yield http
