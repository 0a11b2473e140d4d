"""runners.json entries for go-livepeer Live Runners (v0.9.0+), checked with go-livepeer's own rules.

go-livepeer loads `-liveRunnerConfig PATH` (or the same JSON at `POST /registerLiveRunners` on its CLI
port) with `ParseStaticLiveRunnerConfig` + `RegisterStaticRunners` (ai/runner/live_runner.go at tag
v0.9.1, e2fe336c). A file it refuses stops the node at start-up (cmd/livepeer/starter/starter.go:2051-2058),
so every entry built here is checked with those rules (`go_rules`) before it is returned or written.

One served model becomes one single-shot entry:

    label       <slug>                       (HF id with "/" → "--", or given)
    routing     label                        (so clients call /apps/<label>/app/...)
    app         llm/<HF id>
    runner_url  <base>/models/<slug>
    health_url  <base>/models/<slug>/ready   (polled every 5 s, 3 s timeout, exact status)
    mode        single-shot
    capacity, version, gpu, price_info, metadata as given

Everything but `merge_into_file` is pure. The rules themselves are in `go_rules` (and `go_url`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from llm_runner.core.request import model_slug
from llm_runner.live.go_rules import (
    DEFAULT_HEALTHY_STATUS,
    MAX_METADATA_BYTES,
    MODE_PERSISTENT,
    MODE_SINGLE_SHOT,
    PRICE_UNITS,
    ROUTING_LABEL,
    ROUTING_RUNNER_ID,
    RunnersJSONError,
    go_trim,
    json_type,
    loads,
    validate_document,
    validate_entries,
)
from llm_runner.ops.files import read_json, write_json

APP_PREFIX = "llm/"

# --------------------------------------------------------------------------------------------------
# building entries


@dataclass(frozen=True)
class EntryOptions:
    """What every entry shares. `gpus` is the caller's list of GPU dicts: `id`, `name`, and `vram_mb`
    (or `memory_total` in bytes, as hardware.gpu_info() gives); the entry describes `gpus[gpu_index]`
    (go-livepeer takes one GPU per runner, go-livepeer #3986)."""

    base_url: str = "http://llm_runner:8000"
    capacity: int = 1
    version: str = ""
    mode: str = MODE_SINGLE_SHOT
    routing: str | None = ROUTING_LABEL
    labels: Mapping[str, str] = field(default_factory=dict)  # HF id -> label; default: the slug
    gpus: Sequence[Mapping[str, Any]] = ()
    gpu_index: int = 0
    price: float | int | str | Decimal | None = None  # USD per unit; required on-chain
    currency: str = "usd"
    unit: str = "hour"
    # one string for all entries, a mapping (serialised compactly), or a function of the HF id
    metadata: str | Mapping[str, Any] | Callable[[str], str | Mapping[str, Any] | None] | None = None
    healthy_status_code: int | None = None  # None: omitted, go-livepeer uses 200
    on_chain: bool = False


def slug(model_id: str) -> str:
    """The default label and path segment of an HF id (the runner's `/models/<slug>` prefix)."""
    return model_slug(model_id)


def gpu_entry(gpu: Mapping[str, Any]) -> dict[str, Any]:
    """`{id, name, vram_mb}` from one of the caller's GPU dicts; empty values are left out (omitempty)."""
    out: dict[str, Any] = {}
    if gpu.get("id") not in (None, ""):
        out["id"] = str(gpu["id"])
    if gpu.get("name") not in (None, ""):
        out["name"] = str(gpu["name"])
    vram = gpu.get("vram_mb")
    if vram is None and gpu.get("memory_total") is not None:
        vram = int(gpu["memory_total"]) // (1024 * 1024)
    if vram not in (None, 0):
        if isinstance(vram, bool) or not isinstance(vram, int):
            raise RunnersJSONError(f"gpu vram_mb must be an integer, got {vram!r}")
        out["vram_mb"] = vram
    return out


def _price_value(price: float | int | str | Decimal) -> int | float:
    """A JSON number for price_info.price (go-livepeer reads it as json.Number, then big.Rat)."""
    if isinstance(price, bool):
        raise RunnersJSONError(f"price must be a number, got {price!r}")
    try:
        value = Decimal(str(price).strip())
    except InvalidOperation:
        raise RunnersJSONError(f"price must be a decimal number of USD, got {price!r}") from None
    if not value.is_finite() or value <= 0:
        raise RunnersJSONError(f"price must be a positive decimal of USD, got {price!r}")
    return int(value) if value == value.to_integral_value() else float(value)


def _metadata_for(options: EntryOptions, model_id: str) -> str | None:
    metadata = options.metadata(model_id) if callable(options.metadata) else options.metadata
    if metadata is None:
        return None
    if isinstance(metadata, Mapping):
        return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    if not isinstance(metadata, str):
        raise RunnersJSONError(f"metadata must be a string or a mapping, got {type(metadata).__name__}")
    return metadata


def entry_for(model_id: str, options: EntryOptions | None = None, label: str | None = None) -> dict[str, Any]:
    """One single-shot (by default) entry for `model_id`, validated; raises RunnersJSONError."""
    options = options or EntryOptions()
    if not isinstance(model_id, str) or not model_id or model_id != go_trim(model_id):
        raise RunnersJSONError(f"model id must be a non-empty trimmed string, got {model_id!r}")
    if isinstance(options.capacity, bool) or not isinstance(options.capacity, int) or options.capacity < 1:
        # go-livepeer reads 0 as 1 and refuses < 0; we write what we mean.
        raise RunnersJSONError(f"capacity must be an integer >= 1, got {options.capacity!r}")
    base = options.base_url.rstrip("/")
    path = f"/models/{slug(model_id)}"
    label = label if label is not None else options.labels.get(model_id, slug(model_id))
    entry: dict[str, Any] = {"label": label}
    if options.routing is not None:
        entry["routing"] = options.routing
    entry.update(
        {
            "app": APP_PREFIX + model_id,
            "runner_url": base + path,
            "health_url": f"{base}{path}/ready",
            "mode": options.mode,
            "capacity": options.capacity,
        }
    )
    if options.healthy_status_code is not None:
        entry["healthy_status_code"] = options.healthy_status_code
    if options.version:
        entry["version"] = options.version
    metadata = _metadata_for(options, model_id)
    if metadata:
        entry["metadata"] = metadata
    if options.gpus:
        if not 0 <= options.gpu_index < len(options.gpus):
            raise RunnersJSONError(f"gpu_index {options.gpu_index} is not one of the {len(options.gpus)} GPUs given")
        gpu = gpu_entry(options.gpus[options.gpu_index])
        if gpu:
            entry["gpu"] = gpu
    if options.price is not None:
        entry["price_info"] = {"price": _price_value(options.price), "currency": options.currency, "unit": options.unit}
    elif options.on_chain:
        raise RunnersJSONError(f"{label}: an on-chain orchestrator needs a positive price (price_info.price, USD)")
    validate_entries([entry], on_chain=options.on_chain)
    return entry


def entries_for(model_ids: Sequence[str], options: EntryOptions | None = None) -> list[dict[str, Any]]:
    """One entry per model (labels must come out unique); the batch is validated as go-livepeer would."""
    options = options or EntryOptions()
    entries = [entry_for(model_id, options) for model_id in model_ids]
    validate_entries(entries, on_chain=options.on_chain)
    return entries


def document(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The runners.json document around `entries`."""
    return {"runners": [dict(e) for e in entries]}


# --------------------------------------------------------------------------------------------------
# merging into a file


def merge(
    existing: Mapping[str, Any] | None, entries: Sequence[Mapping[str, Any]], *, complete: bool = False
) -> dict[str, Any]:
    """`existing` with `entries` upserted (go-livepeer's upsert is by label too): an entry with the
    same label, or for the same runner_url under another label, is replaced in place (keeping the
    operator's label, the route gateways use, unless a new one was asked for); the rest is kept.
    `complete`: `entries` are every model of their runner, so its other entries are stale (it no
    longer serves them) and dropped."""
    doc = dict(existing or {})
    runners_key = next((k for k in doc if str(k).lower() == "runners"), "runners")
    current = doc.pop(runners_key, None)
    current = [] if current is None else current
    if not isinstance(current, list):
        raise RunnersJSONError(f'"runners" must be an array, got {json_type(current)}')
    new = {e["label"]: dict(e) for e in entries}
    by_url = {e["runner_url"]: e["label"] for e in entries}
    runners = {_runner_base(url) for url in by_url} - {None} if complete else set()
    merged: list[Any] = []
    for item in current:
        label = _label_of(item)
        url = item.get("runner_url") if isinstance(item, Mapping) else None
        if label in new:
            merged.append(_kept(item, new.pop(label)))
        elif url in by_url and by_url[url] in new:
            entry = new.pop(by_url[url])
            default = entry["label"] == url.rstrip("/").rpartition("/")[2]  # the slug: no --label given
            merged.append(_kept(item, {**entry, "label": label} if default else entry))
        elif not (isinstance(url, str) and _runner_base(url) in runners):
            merged.append(item)
    merged.extend(new.values())
    return {"runners": merged, **{k: v for k, v in doc.items()}}


def _kept(old: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """`entry` replacing `old` in place, keeping what the operator added that it does not set
    (metadata, price_info, gpu...): keys compared as go-livepeer does, case-insensitively."""
    if not isinstance(old, Mapping):
        return entry
    ours = {str(k).lower() for k in entry}
    return {**{k: v for k, v in old.items() if str(k).lower() not in ours}, **entry}


def _runner_base(url: str) -> str | None:
    """The runner an entry's runner_url points at (`http://host:8000` of `…/models/<slug>`)."""
    base, found, _ = url.rpartition("/models/")
    return base if found else None


def _label_of(item: Any) -> Any:
    if not isinstance(item, Mapping):
        return None
    label = None
    for key, value in item.items():
        if str(key).lower() == "label":
            label = value
    return label


def merge_into_file(
    path: str | os.PathLike[str],
    entries: Sequence[Mapping[str, Any]],
    *,
    on_chain: bool = False,
    complete: bool = False,
) -> dict[str, Any]:
    """Upsert `entries` into the runners.json at `path` (created if missing), atomically, as `merge` does.

    A file that is not JSON, not an object, or whose merged content go-livepeer would refuse is left
    unchanged and RunnersJSONError says why. Returns the document written."""
    path = Path(path)
    entries = [dict(e) for e in entries]
    validate_entries(entries, on_chain=on_chain)
    existing = read_json(path, RunnersJSONError)
    if existing is not None and not isinstance(existing, Mapping):
        raise RunnersJSONError(
            f'{path} must hold a JSON object {{"runners": [...]}} (go-livepeer refuses {json_type(existing)}); '
            "it was left as is"
        )
    merged = merge(existing, entries, complete=complete)
    try:
        validate_document(merged, on_chain=on_chain)
    except RunnersJSONError as exc:
        raise RunnersJSONError(
            f"{path}: go-livepeer would refuse the merged file ({exc}): fix that entry by hand or remove it, "
            "then run again (the file was left as is)"
        ) from None
    write_json(path, merged)
    return merged


__all__ = [  # the rules are re-exported: callers build, check and merge through this one module
    "APP_PREFIX",
    "DEFAULT_HEALTHY_STATUS",
    "MAX_METADATA_BYTES",
    "MODE_PERSISTENT",
    "MODE_SINGLE_SHOT",
    "PRICE_UNITS",
    "ROUTING_LABEL",
    "ROUTING_RUNNER_ID",
    "EntryOptions",
    "RunnersJSONError",
    "document",
    "entries_for",
    "entry_for",
    "gpu_entry",
    "loads",
    "merge",
    "merge_into_file",
    "slug",
    "validate_document",
    "validate_entries",
]
