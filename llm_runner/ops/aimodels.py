"""aiModels.json entries for url-based runners, checked against go-livepeer's parsing rules.

go-livepeer (`core.ParseAIModelConfigs`) reads a JSON array; `price_per_unit` and
`pixels_per_unit` are parsed from the raw JSON with big.Rat, so a quoted price fails there;
`pipeline` and `model_id` must match what gateways send byte for byte. One llm unit is one
requested `max_tokens`, so `price_per_unit` is charged per requested token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_runner.core.request import model_slug
from llm_runner.ops.files import read_json, write_json

PIPELINE = "llm"


class AIModelsError(ValueError):
    """An entry or file go-livepeer would refuse, or that we refuse to overwrite."""


@dataclass(frozen=True)
class EntryOptions:
    url: str = "http://llm_runner:8000"
    capacity: int = 1
    capacities: dict[str, int] | None = None  # per model, over `capacity`
    warm: bool = True
    price_per_unit: float = 0.18
    pixels_per_unit: int = 1_000_000
    currency: str = "USD"
    token: str | None = None


def entries_for(model_ids: list[str], options: EntryOptions) -> list[dict[str, Any]]:
    """One entry per model; with several models each gets its own path prefix on the runner."""
    base = options.url.rstrip("/")
    entries = []
    for model_id in model_ids:
        entry: dict[str, Any] = {
            "pipeline": PIPELINE,
            "model_id": model_id,
            "url": base if len(model_ids) == 1 else f"{base}/models/{model_slug(model_id)}",
            "warm": options.warm,
            "capacity": (options.capacities or {}).get(model_id, options.capacity),
            "price_per_unit": options.price_per_unit,
            "pixels_per_unit": options.pixels_per_unit,
            "currency": options.currency,
        }
        if options.token:
            entry["token"] = options.token
        validate_entry(entry)
        entries.append(entry)
    return entries


def validate_entry(entry: Any) -> None:
    """Raise AIModelsError for what go-livepeer would reject or silently misread."""
    if not isinstance(entry, dict):
        raise AIModelsError(f"entry must be an object, got {type(entry).__name__}")
    name = entry.get("model_id", "?")
    for key in ("pipeline", "model_id"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise AIModelsError(f"{name}: {key} must be a non-empty string")
    for key in ("price_per_unit", "pixels_per_unit"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AIModelsError(f"{name}: {key} must be a JSON number, not {value!r} (go-livepeer cannot parse it)")
        if value is not None and value < 0:
            raise AIModelsError(f"{name}: {key} must not be negative")
    pixels = entry.get("pixels_per_unit")
    if pixels is not None and (not float(pixels).is_integer() or pixels <= 0):
        raise AIModelsError(f"{name}: pixels_per_unit must be a positive integer")
    capacity = entry.get("capacity")
    if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1):
        raise AIModelsError(f"{name}: capacity must be an integer >= 1")
    if "warm" in entry and not isinstance(entry["warm"], bool):
        raise AIModelsError(f"{name}: warm must be true or false")
    for key in ("url", "token", "currency"):
        if key in entry and not isinstance(entry[key], str):
            raise AIModelsError(f"{name}: {key} must be a string")
    if entry.get("pipeline") == PIPELINE and entry.get("url", "").rstrip("/").endswith("/llm"):
        raise AIModelsError(f"{name}: url must be the runner's base url; go-livepeer appends /llm itself")


def merge(existing: list[Any], new_entries: list[dict[str, Any]]) -> list[Any]:
    """Keep other pipelines' and models' entries untouched; replace same pipeline+model_id."""
    replaced = {(e["pipeline"], e["model_id"]) for e in new_entries}
    kept = [e for e in existing if not (isinstance(e, dict) and (e.get("pipeline"), e.get("model_id")) in replaced)]
    return kept + new_entries


def write_merged(path: Path, new_entries: list[dict[str, Any]]) -> list[Any]:
    """Merge into `path` atomically; a file that is not a JSON array is refused and left as is."""
    existing = read_json(path, AIModelsError)
    if existing is None:
        existing = []
    elif not isinstance(existing, list):
        raise AIModelsError(f"{path} must hold a JSON array of entries; it was left as is")
    merged = merge(existing, new_entries)
    for entry in merged:
        if isinstance(entry, dict) and entry.get("pipeline") == PIPELINE:
            validate_entry(entry)
    write_json(path, merged)
    return merged
