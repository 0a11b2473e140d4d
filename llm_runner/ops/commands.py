"""Operator commands: `ai-models`, `models`, `pull` and `doctor`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from llm_runner.ops.aimodels import AIModelsError, EntryOptions, entries_for, write_merged
from llm_runner.ops.console import CAPACITY_HELP, capacities, fail, load_catalog, load_settings
from llm_runner.settings import DEFAULT_OLLAMA_MODEL, Settings
from llm_runner.upstream.catalog import CatalogError
from llm_runner.upstream.hosts import DEFAULT_OLLAMA_HOST


def register(commands: argparse._SubParsersAction) -> None:
    ai = commands.add_parser("ai-models", help="print (or merge into a file) the aiModels.json entries")
    ai.add_argument("--model-id", action="append", help="HF model id (repeat for several; default MODEL_ID)")
    ai.add_argument("--url", default="http://llm_runner:8000", help="runner base url as go-livepeer reaches it")
    ai.add_argument("--capacity", action="append", help=CAPACITY_HELP)
    ai.add_argument("--price-per-unit", type=float, default=0.18, help="price per pixels_per_unit requested max_tokens")
    ai.add_argument("--pixels-per-unit", type=int, default=1_000_000)
    ai.add_argument("--currency", default="USD")
    ai.add_argument("--no-warm", action="store_true", help='advertise "warm": false')
    ai.add_argument("--token", default=None, help="bearer token (default: AUTH_TOKEN)")
    ai.add_argument("--write", type=Path, default=None, help="merge into this aiModels.json (atomic)")
    ai.set_defaults(run=ai_models)

    models = commands.add_parser("models", help="list the built-in HF id → Ollama tag catalog")
    models.add_argument("--vram", type=float, default=None, help="GPU memory in GB: mark what fits")
    models.set_defaults(run=list_models)

    pull = commands.add_parser("pull", help="pull a model into Ollama, with progress")
    pull.add_argument("model_id")
    pull.set_defaults(run=pull_model)

    health = commands.add_parser("healthcheck", help="exit 0 when the runner answers OK (or LOADING), for Docker")
    health.add_argument("--url", default="http://127.0.0.1:8000/health")
    health.add_argument("--strict", action="store_true", help="only OK counts as healthy")
    health.set_defaults(run=healthcheck)

    doctor = commands.add_parser("doctor", help="check Ollama, models, GPU, aiModels.json, runners.json and the runner")
    doctor.add_argument("--ai-models", type=Path, default=None, help="aiModels.json to check against the runner")
    doctor.add_argument("--runner-url", default="http://127.0.0.1:8000", help="where the runner answers")
    doctor.add_argument("--runners-json", type=Path, default=None, help="runners.json to check as go-livepeer reads it")
    doctor.set_defaults(run=run_doctor)


def _model_ids(settings: Settings, given: list[str] | None) -> list[str]:
    if given:
        return [m.strip() for item in given for m in item.split(",") if m.strip()]
    return settings.model_ids or [DEFAULT_OLLAMA_MODEL]


def ai_models(args: argparse.Namespace) -> int:
    settings = load_settings()
    ids = _model_ids(settings, args.model_id)
    catalog = load_catalog(settings)
    try:
        for model_id in ids:
            catalog.resolve(model_id)
        options = EntryOptions(
            url=args.url,
            capacities=capacities(settings, ids, args.capacity),
            warm=not args.no_warm,
            price_per_unit=args.price_per_unit,
            pixels_per_unit=args.pixels_per_unit,
            currency=args.currency,
            token=args.token if args.token is not None else settings.auth_token,
        )
        entries = entries_for(ids, options)
        if args.write:
            merged = write_merged(args.write, entries)
            print(
                f"wrote {len(entries)} llm entr{'y' if len(entries) == 1 else 'ies'} to {args.write} "
                f"({len(merged)} in all)",
                file=sys.stderr,
            )
            return 0
    except (CatalogError, AIModelsError) as exc:
        return fail(str(exc))
    print(json.dumps(entries, indent=2))
    return 0


def list_models(args: argparse.Namespace) -> int:
    catalog = load_catalog(load_settings())
    table = Table(title="HF model id → Ollama tag: the weights it must serve, and VRAM at 4k context", box=None)
    table.add_column("HF model id", overflow="fold")
    table.add_column("Ollama tag", overflow="fold")
    table.add_column("quant", no_wrap=True)
    table.add_column("model (family, params, context)")
    table.add_column("VRAM GB", justify="right", no_wrap=True)
    if args.vram is not None:
        table.add_column(f"fits {args.vram:g} GB", no_wrap=True)
    table.add_column("note")
    for entry in catalog.entries.values():
        vram = f"{entry.vram_gb:.1f}" if entry.vram_gb is not None else "?"
        identity = entry.identity
        row = [entry.hf_id, entry.tag, identity.quantization or "?", identity.model(), vram]
        if args.vram is not None:
            row.append("?" if entry.vram_gb is None else ("yes" if entry.vram_gb <= args.vram else "no"))
        note = "override: served even if Ollama's tag differs" if entry.overridden else entry.note
        table.add_row(*row, note)
    _table_console().print(table)
    return 0


def _table_console() -> Console:
    """The terminal's width (or COLUMNS) for people; piped into grep or a file, no width at all, so that
    each model stays one whole line instead of being wrapped or cut at an arbitrary column."""
    console = Console()
    return console if console.is_terminal or "COLUMNS" in os.environ else Console(width=100_000)


def pull_model(args: argparse.Namespace) -> int:
    from llm_runner.upstream.ollama_import import ollama

    settings = load_settings()
    try:
        tag = load_catalog(settings).resolve(args.model_id)
    except CatalogError as exc:
        return fail(str(exc))
    ollamas = [s for s in settings.upstreams if s.kind == "ollama" and (s.models is None or args.model_id in s.models)]
    if settings.upstreams and not ollamas:
        return fail(
            f"no Ollama in OLLAMA_HOST serves {args.model_id}: an OpenAI-compatible engine serves the model "
            "it was started with and cannot pull; start it with that model"
        )
    host = ollamas[0].url if ollamas else DEFAULT_OLLAMA_HOST

    async def pull() -> int:
        client = ollama.AsyncClient(host=host)
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns) as progress:
            tasks: dict[str, int] = {}
            try:
                async for update in await client.pull(tag, stream=True):
                    key = update.digest or update.status or ""
                    if key not in tasks:
                        tasks[key] = progress.add_task(update.status or key, total=update.total or None)
                    progress.update(tasks[key], total=update.total or None, completed=update.completed or 0)
            except ollama.ResponseError as exc:
                return fail(f"pulling {tag} failed: {exc.error}")
            except (httpx.HTTPError, ConnectionError) as exc:
                return fail(f"Ollama at {host} is unreachable: {exc}")
        print(f"pulled {tag} for {args.model_id}")
        return 0

    return asyncio.run(pull())


def healthcheck(args: argparse.Namespace) -> int:
    """Healthy while the runner answers and can heal (LOADING: a model is still being pulled)."""
    try:
        status = httpx.get(args.url, timeout=4.0).json()["status"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        print(f"unhealthy: {args.url} did not answer ({type(exc).__name__})")
        return 1
    healthy = status == "OK" or (status == "LOADING" and not args.strict)
    print(f"{'healthy' if healthy else 'unhealthy'}: {status}")
    return 0 if healthy else 1


def run_doctor(args: argparse.Namespace) -> int:
    from llm_runner.ops.doctor import Doctor

    settings = load_settings()
    load_catalog(settings)  # a broken model map file: one line, not a traceback from every check
    return asyncio.run(Doctor(settings, args.ai_models, args.runner_url, args.runners_json).run())
