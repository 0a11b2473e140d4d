"""Operator kit: aiModels.json generator, compose wiring, Dockerfile commands, doctor."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import LLAMA
from tests.support.servers import ROOT, serving
from tests.test_cli import cli

COMPOSE = ROOT / "compose"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


def ai_models(*args: str, env: dict[str, str] | None = None) -> list[dict]:
    result = cli("ai-models", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_entry_follows_go_livepeer_rules():
    (entry,) = ai_models("--model-id", LLAMA, env={"AUTH_TOKEN": "s3cret", "LLM_RUNNER_CONCURRENCY": "2"})
    assert entry == {
        "pipeline": "llm",
        "model_id": LLAMA,
        "url": "http://llm_runner:8000",
        "warm": True,
        "capacity": 2,  # the runner's own concurrency limit
        "price_per_unit": 0.18,  # a JSON number: go-livepeer cannot parse a quoted price
        "pixels_per_unit": 1000000,
        "currency": "USD",
        "token": "s3cret",
    }


def test_several_models_get_their_own_path_prefix():
    env = {"OLLAMA_HOST": "http://127.0.0.1:11434?parallel=2"}
    entries = ai_models("--model-id", f"{LLAMA},{QWEN}", "--url", "http://gpu-box:8000/", env=env)
    assert [e["capacity"] for e in entries] == [1, 1]  # the two slots split, not two each
    assert [e["url"] for e in entries] == [
        "http://gpu-box:8000/models/meta-llama--Meta-Llama-3.1-8B-Instruct",
        "http://gpu-box:8000/models/Qwen--Qwen2.5-7B-Instruct",
    ]


def test_unknown_model_is_refused():
    result = cli("ai-models", "--model-id", "meta-llama/meta-llama-3.1-8b-instruct")
    assert result.returncode == 2 and "case-sensitive" in result.stderr


def test_write_merges_keeps_others_and_replaces_same_model(tmp_path):
    target = tmp_path / "aiModels.json"
    others = [
        {"pipeline": "text-to-image", "model_id": "ByteDance/SDXL-Lightning", "warm": True},
        {"pipeline": "llm", "model_id": QWEN, "url": "http://other:8000", "price_per_unit": 1},
        {"pipeline": "llm", "model_id": LLAMA, "url": "http://old:8000", "price_per_unit": 5},
    ]
    target.write_text(json.dumps(others))
    result = cli("ai-models", "--model-id", LLAMA, "--write", str(target), "--price-per-unit", "0.2")
    assert result.returncode == 0, result.stderr
    merged = json.loads(target.read_text())
    assert merged[:2] == others[:2]  # untouched, in order
    assert len(merged) == 3 and merged[2]["url"] == "http://llm_runner:8000" and merged[2]["price_per_unit"] == 0.2
    assert not list(tmp_path.glob(".aiModels.json.*"))  # no temp file left behind


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('{"pipeline": "llm"}', "JSON array"),
        (json.dumps([{"pipeline": "llm", "model_id": QWEN, "price_per_unit": "0.5e-2USD"}]), "JSON number"),
    ],
)
def test_write_refuses_a_broken_file_and_leaves_it_alone(tmp_path, content, needle):
    target = tmp_path / "aiModels.json"
    target.write_text(content)
    result = cli("ai-models", "--model-id", LLAMA, "--write", str(target))
    assert result.returncode == 2 and needle in result.stderr
    assert target.read_text() == content


def _dotenv(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_compose_wiring_agrees_with_ai_models_json_and_env_example():
    compose = yaml.safe_load((COMPOSE / "llm-pipeline.yml").read_text())
    env = _dotenv(COMPOSE / ".env.example")
    services = compose["services"]
    assert set(services) == {"ollama", "llm_runner", "orchestrator"}  # monitoring.yml's are included
    # all three on the project's one default network
    assert not any("networks" in service or "network_mode" in service for service in services.values())

    runner = services["llm_runner"]
    runner_env = runner["environment"]
    assert urlsplit(runner_env["OLLAMA_HOST"]).hostname == "ollama"
    assert urlsplit(runner_env["OLLAMA_HOST"]).port == 11434
    assert runner_env["MODEL_ID"] == "${MODEL_ID:-" + env["MODEL_ID"] + "}"
    assert runner_env["AUTH_TOKEN"].startswith("${AUTH_TOKEN")
    assert "ollama" in runner["depends_on"]
    assert services["ollama"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert services["ollama"]["environment"]["OLLAMA_NUM_PARALLEL"] == runner_env["LLM_RUNNER_CONCURRENCY"]

    orchestrator = services["orchestrator"]
    args = shlex.split(orchestrator["command"])
    assert "-orchestrator" in args and "-aiWorker" in args
    models_path = args[args.index("-aiModels") + 1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in orchestrator["volumes"]}
    assert mounts[models_path] == "./aiModels.json"
    assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"

    (entry,) = json.loads((COMPOSE / "aiModels.json").read_text())
    url = urlsplit(entry["url"])
    assert url.hostname == "llm_runner" and url.port == 8000  # the service name and the runner's port
    assert entry["model_id"] == env["MODEL_ID"]
    assert entry.get("token", "") == env["AUTH_TOKEN"]
    assert entry["capacity"] == int(env["OLLAMA_NUM_PARALLEL"])


def test_committed_ai_models_json_is_what_the_generator_writes(tmp_path):
    env = _dotenv(COMPOSE / ".env.example")
    target = tmp_path / "aiModels.json"
    gen_env = {
        "MODEL_ID": env["MODEL_ID"],
        "AUTH_TOKEN": env["AUTH_TOKEN"],
        "OLLAMA_NUM_PARALLEL": env["OLLAMA_NUM_PARALLEL"],
    }
    result = cli("ai-models", "--write", str(target), env=gen_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text()) == json.loads((COMPOSE / "aiModels.json").read_text())


def test_dockerfile_commands_run(standin_server, ollama):
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    health_cmd = json.loads(
        next(line for line in lines if line.strip().startswith('CMD ["llm-runner", "healthcheck')).strip()[4:]
    )
    serve_cmd = json.loads(next(line for line in lines if line.startswith("CMD ")).strip()[4:])
    assert serve_cmd[:2] == ["llm-runner", "serve"] and "EXPOSE 8000" in lines
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    with serving({"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA}) as runner:
        result = cli(*health_cmd[1:], "--url", runner.url + "/health")
        assert result.returncode == 0 and "healthy: OK" in result.stdout
    down = cli(*health_cmd[1:], "--url", runner.url + "/health")
    assert down.returncode == 1


def test_doctor_reports_real_checks(standin_server, ollama, tmp_path):
    models_file = tmp_path / "aiModels.json"
    models_file.write_text(
        json.dumps([{"pipeline": "llm", "model_id": LLAMA.lower(), "url": "http://llm_runner:8000"}])
    )
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA}
    with serving(env) as runner:
        result = cli("doctor", "--ai-models", str(models_file), "--runner-url", runner.url, env=env)
        other = cli("doctor", "--runner-url", runner.url, env=env | {"MODEL_ID": QWEN})
    assert other.returncode == 1  # a runner serving another model than these settings name: both named
    assert f"FAIL  runner /version reports model_id {LLAMA!r}, expected {QWEN!r}" in other.stdout
    lines = result.stdout.splitlines()
    assert f"PASS  settings valid: serving {LLAMA} through Ollama at {ollama.url}" in lines
    assert f"PASS  runner /version reports model_id {LLAMA!r}, as expected" in lines
    assert result.returncode == 1  # the aiModels.json entry has the wrong case
    assert any(line.startswith("PASS") and "Ollama 0.12.6 reachable" in line for line in lines)
    assert any(line.startswith("PASS") and "llama3.1:8b present" in line and "Q4_K_M" in line for line in lines)
    assert any(line.startswith("FAIL") and "case-sensitive" in line for line in lines)
    assert any(line.startswith("PASS") and "/health" in line and "OK" in line for line in lines)
    assert any(line.startswith("WARN") and "GPU" in line for line in lines)

    ollama.script(models=[])
    missing = cli("doctor", env=env | {"OLLAMA_HOST": ollama.url})
    assert missing.returncode == 1 and "llm-runner pull" in missing.stdout


def test_pull_through_ollama_with_progress(ollama):
    ollama.script(models=[])
    result = cli("pull", QWEN, env={"OLLAMA_HOST": ollama.url})
    assert result.returncode == 0, result.stderr
    assert "pulled qwen2.5:7b" in result.stdout
    assert "qwen2.5:7b" in ollama.script()["models"]
    ollama.script(pull_fail="pull model manifest: file does not exist")
    failed = cli("pull", LLAMA, env={"OLLAMA_HOST": ollama.url})
    assert failed.returncode == 2 and "file does not exist" in failed.stderr
