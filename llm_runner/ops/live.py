"""`llm-runner runners-json`: the static live-runner registration, one entry per served model,
checked with go-livepeer's own rules (ai/runner/live_runner.go) before it is printed or merged."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from llm_runner.core.hardware import gpu_info
from llm_runner.live.go_url import is_http_url
from llm_runner.live.runners_json import (
    EntryOptions,
    RunnersJSONError,
    document,
    entries_for,
    merge_into_file,
    validate_entries,
)
from llm_runner.ops.console import CAPACITY_HELP, capacities, fail, load_settings
from llm_runner.settings import DEFAULT_OLLAMA_MODEL, Settings
from llm_runner.upstream.catalog import Catalog, CatalogError


def add_entry_arguments(parser: argparse.ArgumentParser) -> None:
    """What every runners.json writer asks (runners-json, price): where, how many, how labelled."""
    parser.add_argument("--model-id", action="append", help="HF model id (repeat for several; default MODEL_ID)")
    parser.add_argument(
        "--url", default="http://llm_runner:8000", help="runner base url as the orchestrator reaches it"
    )
    parser.add_argument("--capacity", action="append", help=CAPACITY_HELP)
    parser.add_argument("--label", action="append", help="label per model, in --model-id order (default: the slug)")
    parser.add_argument("--routing", choices=["label", "runner-id"], default="label")
    parser.add_argument("--metadata", default=None, help="public text (<= 1 KiB) shown in discovery")
    parser.add_argument("--on-chain", action="store_true", help="apply the on-chain rules (a positive price)")
    parser.add_argument("--no-gpu", action="store_true", help="leave out the gpu facts read from NVML")


def register(commands: argparse._SubParsersAction) -> None:
    live = commands.add_parser("runners-json", help="print (or merge into a file) the live-runner runners.json")
    add_entry_arguments(live)
    live.add_argument("--price", type=float, default=None, help="price_info.price in USD per unit (on-chain)")
    live.add_argument("--unit", choices=["hour", "720p", "fixed"], default="hour")
    live.add_argument("--write", type=Path, default=None, help="merge into this runners.json by label (atomic)")
    live.set_defaults(run=runners_json)


def served_ids(settings: Settings, given: list[str] | None) -> list[str]:
    """--model-id (repeatable, comma-separated), else MODEL_ID, else the Ollama default."""
    ids = [m.strip() for item in given or [] for m in item.split(",") if m.strip()]
    return ids or settings.model_ids or [DEFAULT_OLLAMA_MODEL]


def runners_json(args: argparse.Namespace) -> int:
    settings = load_settings()
    ids = served_ids(settings, args.model_id)
    try:
        entries = build_entries(settings, ids, args, {m: args.price for m in ids}, args.unit)
        return emit(entries, args.write, on_chain=args.on_chain)
    except (CatalogError, RunnersJSONError) as exc:
        return fail(str(exc))


def build_entries(
    settings: Settings,
    ids: list[str],
    args: argparse.Namespace,
    prices: Mapping[str, float | Decimal | None],
    unit: str,
) -> list[dict[str, Any]]:
    """One entry per model from the shared arguments (add_entry_arguments) and each model's price;
    raises CatalogError or RunnersJSONError, exits on a bad --url, --label or --capacity."""
    if not is_http_url(args.url):
        example = args.url if "://" in args.url else "http://" + args.url
        raise SystemExit(fail(f"--url {args.url!r} is not an absolute http(s) URL with a host: e.g. --url {example}"))
    labels = args.label or []
    if labels and len(labels) != len(ids):
        raise SystemExit(fail(f"--label given {len(labels)} time(s) for {len(ids)} model(s)"))
    catalog = Catalog.for_settings(settings)
    for model_id in ids:
        catalog.resolve(model_id)
    advertised = capacities(settings, ids, args.capacity)
    entries = []
    for model_id in ids:
        options = EntryOptions(
            base_url=args.url,
            capacity=advertised[model_id],
            version=settings.version,
            routing=args.routing,
            labels=dict(zip(ids, labels, strict=True)) if labels else {},
            gpus=[] if args.no_gpu else list(gpu_info().values()),
            price=prices.get(model_id),
            unit=unit,
            metadata=args.metadata,
            on_chain=args.on_chain,
        )
        entries += entries_for([model_id], options)
    validate_entries(entries, on_chain=args.on_chain)  # labels unique across the models
    return entries


def emit(entries: list[dict[str, Any]], write: Path | None, *, on_chain: bool) -> int:
    """Merge the entries into `write` (atomic, by label), or print the document."""
    if write:
        merged = merge_into_file(write, entries, on_chain=on_chain, complete=True)
        print(f"wrote {len(entries)} runner(s) to {write} ({len(merged['runners'])} in all)", file=sys.stderr)
        return 0
    print(json.dumps(document(entries), indent=2))
    return 0
