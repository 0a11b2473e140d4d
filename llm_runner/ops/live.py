"""`llm-runner runners-json`: the static live-runner registration, one entry per served model,
checked with go-livepeer's own rules (ai/runner/live_runner.go) before it is printed or merged."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_runner.hardware import gpu_info
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
from llm_runner.settings import DEFAULT_OLLAMA_MODEL
from llm_runner.upstream.catalog import Catalog, CatalogError


def register(commands: argparse._SubParsersAction) -> None:
    live = commands.add_parser("runners-json", help="print (or merge into a file) the live-runner runners.json")
    live.add_argument("--model-id", action="append", help="HF model id (repeat for several; default MODEL_ID)")
    live.add_argument("--url", default="http://llm_runner:8000", help="runner base url as the orchestrator reaches it")
    live.add_argument("--capacity", action="append", help=CAPACITY_HELP)
    live.add_argument("--label", action="append", help="label per model, in --model-id order (default: the slug)")
    live.add_argument("--routing", choices=["label", "runner-id"], default="label")
    live.add_argument("--price", type=float, default=None, help="price_info.price in USD per unit (on-chain)")
    live.add_argument("--unit", choices=["hour", "720p", "fixed"], default="hour")
    live.add_argument("--metadata", default=None, help="public text (<= 1 KiB) shown in discovery")
    live.add_argument("--on-chain", action="store_true", help="apply the on-chain rules (a positive price)")
    live.add_argument("--no-gpu", action="store_true", help="leave out the gpu facts read from NVML")
    live.add_argument("--write", type=Path, default=None, help="merge into this runners.json by label (atomic)")
    live.set_defaults(run=runners_json)


def runners_json(args: argparse.Namespace) -> int:
    settings = load_settings()
    given = [m.strip() for item in args.model_id or [] for m in item.split(",") if m.strip()]
    ids = given or settings.model_ids or [DEFAULT_OLLAMA_MODEL]
    if not is_http_url(args.url):
        example = args.url if "://" in args.url else "http://" + args.url
        return fail(f"--url {args.url!r} is not an absolute http(s) URL with a host: e.g. --url {example}")
    labels = args.label or []
    if labels and len(labels) != len(ids):
        return fail(f"--label given {len(labels)} time(s) for {len(ids)} model(s)")
    try:
        catalog = Catalog.load(settings.model_map, settings.model_map_file)
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
                price=args.price,
                unit=args.unit,
                metadata=args.metadata,
                on_chain=args.on_chain,
            )
            entries += entries_for([model_id], options)
        validate_entries(entries, on_chain=args.on_chain)  # labels unique across the models
        if args.write:
            merged = merge_into_file(args.write, entries, on_chain=args.on_chain)
            count = len(merged["runners"])
            print(f"wrote {len(entries)} runner(s) to {args.write} ({count} in all)", file=sys.stderr)
            return 0
        print(json.dumps(document(entries), indent=2))
    except (CatalogError, RunnersJSONError) as exc:
        return fail(str(exc))
    return 0
