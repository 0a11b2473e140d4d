"""The model served is the model paid for: after a pull and at every start the runner compares
what Ollama reports for the tag with the catalog row, and refuses a tag that drifted."""

from __future__ import annotations

import json

import httpx

from tests.conftest import LLAMA
from tests.support.servers import Runner, StandIn, serving
from tests.test_cli import cli

QWEN = "Qwen/Qwen2.5-7B-Instruct"
DRIFTED = {"qwen2.5:7b": ["llama", "8.0B", 8030261248, 131072, "Q4_K_M"]}  # the tag now holds other weights


def test_a_tag_that_serves_another_model_is_refused_with_expected_and_found(standin_server: StandIn):
    standin_server.reset()
    standin_server.script(models=["llama3.1:8b", "qwen2.5:7b"], identities=DRIFTED)
    with Runner({"OLLAMA_HOST": standin_server.url, "MODEL_ID": QWEN}) as runner:
        runner.wait_status("ERROR")
        (model,) = httpx.get(runner.url + "/status", timeout=5).json()["models"]
        assert "llama" in model["detail"] and "qwen2" in model["detail"]  # found vs expected
        assert "LLM_RUNNER_MODEL_MAP" in model["detail"]  # the fix
        answer = httpx.post(runner.url + "/llm", json={"model": QWEN, "messages": [{"role": "user", "content": "x"}]})
        assert answer.status_code == 500 and "cannot be served" in answer.json()["detail"]["msg"]
    standin_server.reset()


def test_an_operator_override_is_served_with_a_logged_warning(standin_server: StandIn):
    standin_server.reset()
    standin_server.script(models=["llama3.1:8b", "my-qwen"], identities={"my-qwen": DRIFTED["qwen2.5:7b"]})
    env = {"OLLAMA_HOST": standin_server.url, "MODEL_ID": QWEN, "LLM_RUNNER_MODEL_MAP": json.dumps({QWEN: "my-qwen"})}
    with serving(env) as runner:
        assert "qwen2" in runner.wait_log("WARNING")  # expected qwen2, found llama: served anyway
    standin_server.reset()


def test_a_matching_tag_passes(standin_server: StandIn):
    standin_server.reset()
    standin_server.script(models=["qwen2.5:7b"])
    with serving({"OLLAMA_HOST": standin_server.url, "MODEL_ID": QWEN}):
        pass  # reaching OK is the check
    standin_server.reset()


def test_doctor_shows_the_check(standin_server: StandIn):
    standin_server.reset()
    result = cli(
        "doctor", "--runner-url", "http://127.0.0.1:9", env={"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA}
    )
    assert f"as {LLAMA} names" in result.stdout
    standin_server.script(models=["qwen2.5:7b"], identities=DRIFTED)
    result = cli(
        "doctor", "--runner-url", "http://127.0.0.1:9", env={"OLLAMA_HOST": standin_server.url, "MODEL_ID": QWEN}
    )
    assert result.returncode == 1 and "FAIL" in result.stdout and "qwen2" in result.stdout
    standin_server.reset()
