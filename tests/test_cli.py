"""Start-up configuration and the model catalog, through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llm_runner.engine.launcher import free_port
from tests.conftest import LLAMA, go_body
from tests.support.servers import ROOT, Server, serving


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("LLM_RUNNER_", "OLLAMA_", "MODEL_ID", "AUTH_TOKEN"))
    }
    return subprocess.run(
        [sys.executable, "-m", "llm_runner", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def serve_fails(env: dict[str, str]) -> str:
    """`serve` must refuse to start, with exit code 2 and a message on stderr."""
    result = cli("serve", "--port", "1", env={"OLLAMA_HOST": "http://127.0.0.1:9", **env})
    assert result.returncode == 2, result.stderr
    return result.stderr


def test_unknown_model_id_is_a_startup_error_saying_how_to_map_it():
    message = serve_fails({"MODEL_ID": "acme/Unknown-7B"})
    assert "acme/Unknown-7B" in message and "LLM_RUNNER_MODEL_MAP" in message


def test_model_id_differing_only_in_case_names_the_right_one():
    message = serve_fails({"MODEL_ID": "meta-llama/meta-llama-3.1-8b-instruct"})
    assert "case-sensitive" in message and LLAMA in message


def test_ollama_tag_as_model_id_points_to_the_hf_id():
    assert "meta-llama/Llama-3.2-3B-Instruct" in serve_fails({"MODEL_ID": "llama3.2:3b"})


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LLM_RUNNER_NUM_CTXX": "8192"}, "LLM_RUNNER_NUM_CTXX"),
        ({"LLM_RUNNER_NUM_CTX": "lots"}, "num_ctx"),
        ({"LLM_RUNNER_BACKEND": "vllm"}, "backend"),
        ({"VERSION": "latest"}, "semver"),
        ({"LLM_RUNNER_KEEP_ALIVE": "forever"}, "keep_alive"),
        ({"LLM_RUNNER_MODEL_MAP": "{not json"}, "model_map"),
    ],
)
def test_invalid_settings_fail_at_start_with_a_clear_message(env, needle):
    assert needle in serve_fails({"MODEL_ID": LLAMA, **env})


@pytest.mark.parametrize(("command", "value"), [("serve", "http://"), ("doctor", "http://"), ("serve", "HTTPS:")])
def test_an_ollama_host_with_a_scheme_but_no_server_is_refused_in_one_line(command, value):
    # read as a bare host name it used to become http://http:11434, unreachable and unexplained
    result = cli(
        command, *(["--port", "1"] if command == "serve" else []), env={"OLLAMA_HOST": value, "MODEL_ID": LLAMA}
    )
    assert result.returncode == 2 and not result.stdout, result.stdout
    (line,) = result.stderr.strip().splitlines()  # one line: no traceback
    assert f"OLLAMA_HOST {value!r} names no server" in line and "http://127.0.0.1:11434" in line, line


async def test_gguf_repos_and_overrides_map_to_ollama_names(ollama, client, tmp_path):
    ollama.script(models=["hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M", "my-llama:latest", "mine:q8"])
    overrides = tmp_path / "map.json"
    overrides.write_text(json.dumps({"acme/Fine-Tune-8B": "my-llama:latest"}))
    ids = ["bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M", "acme/Fine-Tune-8B", "acme/Other"]
    tags = ["hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M", "my-llama:latest", "mine:q8"]
    env = {
        "OLLAMA_HOST": ollama.url,
        "MODEL_ID": ",".join(ids),
        "LLM_RUNNER_MODEL_MAP_FILE": str(overrides),
        "LLM_RUNNER_MODEL_MAP": json.dumps({"acme/Other": "mine:q8"}),
    }
    with serving(env) as runner:
        for model_id, tag in zip(ids, tags, strict=True):
            answer = (await client.post(runner.url + "/llm", json=go_body(model=model_id))).json()
            assert answer["model"] == model_id  # always the HF id, never the tag
            assert ollama.stats()["chat_bodies"][-1]["model"] == tag


def test_models_lists_the_catalog_and_marks_what_fits():
    result = cli("models", "--vram", "8")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "/" in line and ":" in line]
    assert len(rows) >= 20
    llama_row = next(line for line in rows if LLAMA in line)
    assert "llama3.1:8b" in llama_row and "yes" in llama_row
    assert "no" in next(line for line in rows if "Llama-3.3-70B" in line)
    # on an 80-column terminal: every column still there, wrapped within the width (it was 200 wide)
    narrow = cli("models", "--vram", "8", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "VRAM GB" in narrow and "fits 8 GB" in narrow and "llama3.1:8b" in narrow and "6.3" in narrow


def test_serve_listens_on_this_machine_only_unless_told(ollama):
    port = free_port()
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA}
    server = Server(["-m", "llm_runner", "serve", "--port", str(port)], port, env, ready_path="/health").start()
    try:
        assert f"listening on 127.0.0.1:{port}: this machine only" in server.wait_log("listening on")
        assert "AUTH_TOKEN is not set" in server.wait_log("AUTH_TOKEN")
    finally:
        server.stop()
    assert "--host" in cli("serve", "--help").stdout and "0.0.0.0" in cli("serve", "--help").stdout
