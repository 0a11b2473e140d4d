"""Fixtures: real servers on loopback (see support/servers.py) and a go-livepeer-style client.

The upstream behind `ollama`, `own_ollama` and `runner` is Ollama's stand-in, or, in a module marked
`each_upstream_kind`, each kind in turn: the Ollama stand-in, then the scripted OpenAI-compatible
engine (tests/support/openai_standin.py). A test there about Ollama itself is marked `ollama_only(reason)`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import OpenAIStandIn, Runner, StandIn, serving

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"
SHARED = {"ollama": "standin_server", "openai": "engine_server"}  # the session's stand-in of each kind
RUNNERS = {"ollama": "ollama_runner", "openai": "engine_runner"}


def go_body(**fields: object) -> dict:
    """A /llm body as go-livepeer marshals it (keys in Go struct order, nil pointers omitted)."""
    body: dict = {"max_tokens": 32, "messages": [{"content": "Tell a robot story.", "role": "user"}]}
    body |= {"model": LLAMA, "stream": False}
    body.update(fields)
    return body


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test of an `each_upstream_kind` module that uses the stand-ins runs once per kind; an
    `ollama_only` one shows its engine run as skipped, with the reason."""
    if "upstream_kind" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("each_upstream_kind") is None:
        return
    only = metafunc.definition.get_closest_marker("ollama_only")
    engine = pytest.param("openai", marks=pytest.mark.skip(reason=f"Ollama only: {only.args[0]}")) if only else "openai"
    metafunc.parametrize("upstream_kind", ["ollama", engine])


@pytest.fixture
def upstream_kind() -> str:
    """Ollama, unless the module is marked each_upstream_kind (then pytest_generate_tests sets it)."""
    return "ollama"


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


@pytest.fixture(scope="session")
def engine_server() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn() as server:
        yield server


@pytest.fixture
def ollama(upstream_kind: str, request: pytest.FixtureRequest) -> Iterator[StandIn]:
    """The shared stand-in, reset to its defaults (the Llama model present, 12 tokens per answer)
    before and after the test, so no script leaks into the next one."""
    server: StandIn = request.getfixturevalue(SHARED[upstream_kind])
    server.reset()
    yield server
    server.reset()


def own(kind: type[StandIn]) -> Iterator[StandIn]:
    """A stand-in of the test's own, to stop, kill and start again (it keeps its port)."""
    server = kind().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_ollama(upstream_kind: str) -> Iterator[StandIn]:
    yield from own(StandIn if upstream_kind == "ollama" else OpenAIStandIn)


@pytest.fixture
def own_engine() -> Iterator[StandIn]:
    """An OpenAI-compatible engine stand-in of the test's own (tests/support/openai_standin.py)."""
    yield from own(OpenAIStandIn)


def serving_default(server: StandIn) -> Iterator[Runner]:
    """A runner serving the default Llama model from `server`, once it is ready."""
    server.reset()
    with serving({"OLLAMA_HOST": server.entry, "MODEL_ID": LLAMA, "LLM_RUNNER_LOADING_WAIT_S": "2"}) as runner:
        yield runner


@pytest.fixture(scope="session")
def ollama_runner(standin_server: StandIn) -> Iterator[Runner]:
    yield from serving_default(standin_server)


@pytest.fixture(scope="session")
def engine_runner(engine_server: OpenAIStandIn) -> Iterator[Runner]:
    yield from serving_default(engine_server)


@pytest.fixture
def runner(upstream_kind: str, request: pytest.FixtureRequest) -> Runner:
    """The session's runner serving the default Llama model from the shared stand-in."""
    return request.getfixturevalue(RUNNERS[upstream_kind])


@pytest.fixture
async def client() -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=30) as http:
        yield http
