"""`llm-runner compose`: a Compose file for one host with several GPUs, and its aiModels.json.

One Ollama per GPU (`ollama-<gpu>`, its own `device_ids`, its own OLLAMA_NUM_PARALLEL, one models
volume shared by all of them), one runner whose OLLAMA_HOST lists every Ollama with its slots, and
go-livepeer (pinned, configured as in compose/llm-pipeline.yml) with an aiModels.json entry whose
capacity is the sum of the slots.

The YAML comes from a plain dict through ops/yaml_out.py (comments and dclint's quoting rules,
which PyYAML's emitter cannot follow).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_runner.ops.aimodels import AIModelsError, EntryOptions, entries_for, write_merged
from llm_runner.ops.console import fail
from llm_runner.ops.files import write_atomic
from llm_runner.ops.yaml_out import Folded, to_yaml
from llm_runner.settings import DEFAULT_OLLAMA_MODEL
from llm_runner.upstream.catalog import Catalog, CatalogError
from llm_runner.upstream.hosts import parse_upstreams

OLLAMA_IMAGE = "ollama/ollama:0.12.6"
GO_LIVEPEER_IMAGE = "livepeer/go-livepeer:v0.9.1"  # the last release that serves the batch `llm` pipeline
RUNNER_IMAGE = "llm-runner:local"
MODELS_VOLUME = "ollama-models"
PROJECT = "livepeer-llm-gpus"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class ComposeOptions:
    gpus: tuple[str, ...]
    model_ids: tuple[str, ...] = (DEFAULT_OLLAMA_MODEL,)
    parallel: int = 1
    auth_token: str = ""
    ai_models_mount: str = "./aiModels.json"  # relative to the compose file's folder
    build_context: str | None = None  # relative to the compose file's folder; None: image only
    image: str = RUNNER_IMAGE


def service_names(gpus: tuple[str, ...]) -> list[str]:
    """`ollama-<gpu>` for GPU indexes, `ollama-<position>` for UUIDs and other ids."""
    names = [f"ollama-{gpu}" if gpu.isdigit() else f"ollama-{i}" for i, gpu in enumerate(gpus)]
    if len(set(names)) != len(names):
        raise ValueError(f"GPU ids give clashing service names: {', '.join(gpus)}")
    return names


def ollama_host(gpus: tuple[str, ...], parallel: int) -> str:
    """The runner's OLLAMA_HOST: every Ollama on the compose network, with its slots."""
    return ",".join(f"http://{name}:11434?parallel={parallel}" for name in service_names(gpus))


def capacity(options: ComposeOptions) -> int:
    """What go-livepeer may send at once: the slots of every upstream (as Settings.slots_for counts)."""
    return sum(spec.parallel or 1 for spec in parse_upstreams(ollama_host(options.gpus, options.parallel)))


def _literal(value: str) -> str:
    """A value Compose must not interpolate."""
    return value.replace("$", "$$")


def compose_document(options: ComposeOptions) -> dict[str, Any]:
    names = service_names(options.gpus)
    runner: dict[str, Any] = {"image": options.image}
    if options.build_context is not None:
        runner["build"] = {"context": options.build_context, "dockerfile": "Dockerfile"}
    # Started, not healthy: the runner serves from the Ollamas that are up and picks up the others later.
    runner["depends_on"] = {name: {"condition": "service_started"} for name in sorted(names)}
    runner["environment"] = {
        "OLLAMA_HOST": ollama_host(options.gpus, options.parallel),
        "LLM_RUNNER_BACKEND": "ollama",
        "MODEL_ID": _literal(",".join(options.model_ids)),
        "AUTH_TOKEN": _literal(options.auth_token),
        "LLM_RUNNER_NUM_CTX": "${LLM_RUNNER_NUM_CTX:-4096}",
    }
    runner["ports"] = ["127.0.0.1:8000:8000"]
    runner["restart"] = "unless-stopped"
    runner["deploy"] = _devices({"driver": "nvidia", "count": "all", "capabilities": ["utility"]})
    services: dict[str, Any] = {"llm_runner": runner}
    for name, gpu in zip(names, options.gpus, strict=True):
        services[name] = {
            "image": OLLAMA_IMAGE,
            "volumes": [f"{MODELS_VOLUME}:/root/.ollama/models"],
            "environment": {
                "OLLAMA_KEEP_ALIVE": "-1",
                "OLLAMA_NUM_PARALLEL": str(options.parallel),
                "OLLAMA_MAX_LOADED_MODELS": str(len(options.model_ids)),
                "OLLAMA_FLASH_ATTENTION": "1",
                "OLLAMA_KV_CACHE_TYPE": "q8_0",
                "OLLAMA_NO_CLOUD": "1",
            },
            "restart": "unless-stopped",
            "healthcheck": {
                "test": ["CMD", "ollama", "list"],
                "interval": "10s",
                "timeout": "5s",
                "retries": 5,
            },
            "deploy": _devices({"driver": "nvidia", "device_ids": [gpu], "capabilities": ["gpu"]}),
        }
    overrides = json.dumps({"batch": {"llm": options.image}}, separators=(",", ":"))
    services["orchestrator"] = {
        "image": GO_LIVEPEER_IMAGE,
        "depends_on": {"llm_runner": {"condition": "service_healthy"}},
        "volumes": [
            f"{options.ai_models_mount}:/cfg/aiModels.json:ro",
            "/var/run/docker.sock:/var/run/docker.sock",
            "lpdata:/root/.lpData",
        ],
        "ports": ["0.0.0.0:8935:8935"],
        "command": Folded.of(
            [
                "-orchestrator",
                "-aiWorker",
                "-aiModels /cfg/aiModels.json",
                f"-aiRunnerImageOverrides '{_literal(overrides)}'",
                "-serviceAddr ${ORCH_SERVICE_ADDR:-orchestrator:8935}",
                "-httpAddr 0.0.0.0:8935",
                "-cliAddr ${LIVEPEER_CLI_ADDR:-127.0.0.1:7935}",
                "-monitor=${LIVEPEER_MONITOR:-false}",
                "-network ${LIVEPEER_NETWORK:-offchain}",
                "-v 6",
                "${LIVEPEER_EXTRA_FLAGS:-}",
            ]
        ),
        "restart": "unless-stopped",
    }
    return {"name": PROJECT, "services": services, "volumes": {MODELS_VOLUME: None, "lpdata": None}}


def _devices(device: dict[str, Any]) -> dict[str, Any]:
    return {"resources": {"reservations": {"devices": [device]}}}


def ai_model_entries(options: ComposeOptions) -> list[dict[str, Any]]:
    slots = capacity(options)
    entry_options = EntryOptions(capacities=dict.fromkeys(options.model_ids, slots), token=options.auth_token or None)
    return entries_for(list(options.model_ids), entry_options)


def header(options: ComposeOptions, command: str) -> list[str]:
    gpus = ", ".join(options.gpus)
    return [
        f"Generated by `{command}`: edit the command line and run it again rather than this file.",
        f"The `llm` pipeline on one host with {len(options.gpus)} GPU(s) ({gpus}): one Ollama per GPU with "
        f"{options.parallel} slot(s) each,",
        "sharing one models volume; llm-runner in front of all of them (OLLAMA_HOST lists them) and",
        f"go-livepeer v0.9.1 with an aiModels.json whose capacity is {capacity(options)}, the sum of the slots.",
        "  docker compose -f <this file> up -d",
    ]


def render(options: ComposeOptions, command: str = "llm-runner compose") -> str:
    comments = {}
    if options.build_context is not None:
        # Both build and image: the built image gets the fixed local tag -aiRunnerImageOverrides names.
        comments[("services", "llm_runner", "build")] = "dclint disable-line no-build-and-image"
    return to_yaml(compose_document(options), comments, header(options, command))


# --- the command --------------------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction) -> None:
    compose = commands.add_parser(
        "compose", help="write a Compose file with one Ollama per GPU, the runner and go-livepeer, and aiModels.json"
    )
    compose.add_argument("--gpus", required=True, help="GPU indexes or UUIDs, comma-separated: 0,1,2,3")
    compose.add_argument("--model-id", action="append", help="HF model id (repeat for several; default MODEL_ID)")
    compose.add_argument(
        "--auth-token", default=None, help="bearer token for runner and aiModels.json (default: AUTH_TOKEN)"
    )
    compose.add_argument("--parallel", type=int, default=1, help="slots per GPU: each Ollama's OLLAMA_NUM_PARALLEL")
    compose.add_argument("--out", type=Path, default=None, help="write the Compose file here (default: print it)")
    compose.add_argument(
        "--ai-models", type=Path, default=None, help="merge the entries into this aiModels.json (default: beside --out)"
    )
    compose.add_argument("--image", default=RUNNER_IMAGE, help="the runner's image tag")
    compose.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    gpus = tuple(g.strip() for g in args.gpus.split(",") if g.strip())
    if not gpus:
        return fail("--gpus needs at least one GPU index or UUID, e.g. --gpus 0,1")
    if len(set(gpus)) != len(gpus):
        return fail(f"--gpus lists a GPU twice: {args.gpus}")
    if args.parallel < 1:
        return fail("--parallel must be >= 1")
    given = args.model_id or [os.environ.get("MODEL_ID") or DEFAULT_OLLAMA_MODEL]
    model_ids = tuple(m.strip() for item in given for m in item.split(",") if m.strip())
    if len(set(model_ids)) != len(model_ids):
        return fail(f"a model is listed twice: {', '.join(model_ids)}")
    token = args.auth_token if args.auth_token is not None else os.environ.get("AUTH_TOKEN", "")
    out_dir = (args.out.parent if args.out else Path.cwd()).resolve()
    ai_models = args.ai_models or (args.out.parent / "aiModels.json" if args.out else None)
    try:
        catalog = Catalog.load({}, None)
        for model_id in model_ids:
            catalog.resolve(model_id)
        service_names(gpus)
    except (CatalogError, ValueError) as exc:
        return fail(str(exc))
    options = ComposeOptions(
        gpus=gpus,
        model_ids=model_ids,
        parallel=args.parallel,
        auth_token=token,
        ai_models_mount=_relative(ai_models.resolve() if ai_models else out_dir / "aiModels.json", out_dir),
        build_context=_relative(REPO_ROOT, out_dir) if (REPO_ROOT / "Dockerfile").is_file() else None,
        image=args.image,
    )
    command = " ".join(["llm-runner compose", f"--gpus {','.join(gpus)}", f"--parallel {args.parallel}"])
    text = render(options, command)
    try:
        entries = ai_model_entries(options)
        if ai_models:
            write_merged(ai_models, entries)
    except AIModelsError as exc:
        return fail(str(exc))
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.out, text)
    total = capacity(options)
    where = f" and {ai_models}" if ai_models else " (no aiModels.json written: pass --ai-models)"
    print(
        f"{args.out or 'stdout'}{where}: {len(gpus)} Ollama(s) x {args.parallel} slot(s) = capacity {total}",
        file=sys.stderr,
    )
    return 0


def _relative(target: Path, folder: Path) -> str:
    """`target` as Compose reads a path relative to the file's folder (`./x`, `../x`)."""
    relative = os.path.relpath(target, folder)
    return relative if relative == "." or relative.startswith("..") else f"./{relative}"
