"""A few of the Livepeer contract tests and live-runner tests again, with an OpenAI-compatible engine
(tests/support/openai_standin.py, scripted like the Ollama stand-in) as the upstream: the same test
functions, collected here with this module's `runner`, `ollama`, `own_ollama` and `live`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LLAMA
from tests.support.orchestrator import Orchestrator
from tests.support.servers import OpenAIStandIn, Runner, serving
from tests.test_contract import (  # noqa: F401  (collected here)
    test_health_version_hardware,
    test_non_stream_answer_echoes_hf_id_with_exact_usage,
    test_stream_ends_with_stop_and_done,
    test_stream_failing_mid_way_ends_with_error_chunk_and_done,
    test_stream_hits_max_tokens_with_length,
)
from tests.test_live_runner import (  # noqa: F401  (collected here)
    test_a_dead_upstream_is_reported_within_one_poll_and_never_routed,
    test_the_stock_openai_client_is_served_through_the_orchestrator_with_exact_usage,
    write_runners_json,
)


@pytest.fixture(scope="module")
def engine() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn() as server:
        yield server


@pytest.fixture
def ollama(engine: OpenAIStandIn) -> Iterator[OpenAIStandIn]:
    """The contract tests' upstream, here the engine, reset around each test."""
    engine.reset()
    yield engine
    engine.reset()


@pytest.fixture(scope="module")
def runner(engine: OpenAIStandIn) -> Iterator[Runner]:
    env = {"OLLAMA_HOST": f"{engine.entry}?models={LLAMA}", "MODEL_ID": LLAMA, "LLM_RUNNER_LOADING_WAIT_S": "2"}
    with serving(env) as server:
        yield server


@pytest.fixture
def own_ollama() -> Iterator[OpenAIStandIn]:
    server = OpenAIStandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live(tmp_path: Path, own_ollama: OpenAIStandIn) -> Iterator[tuple[OpenAIStandIn, Runner, Orchestrator]]:
    """As tests/test_live_runner.py's, with the engine as the upstream."""
    env = {"OLLAMA_HOST": own_ollama.entry, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": "2"}
    with serving(env) as runner:
        path = write_runners_json(tmp_path / "runners.json", runner)
        with Orchestrator(runners=path, health_interval=0.1, health_timeout=3.0) as orch:
            yield own_ollama, runner, orch
