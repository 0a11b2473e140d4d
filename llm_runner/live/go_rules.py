"""go-livepeer v0.9.1's rules for live runners (ai/runner/live_runner.go, e2fe336c), ported so that what
we write or send is what go-livepeer accepts. runners.json is an *object* `{"runners": [...]}`
(live_runner.go:143-145) decoded with encoding/json: unknown fields are ignored, keys match
case-insensitively, a value of the wrong JSON type fails the whole file. Every entry is then checked
and normalised, and one bad entry refuses the whole batch."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from llm_runner.live.go_url import is_http_url, parse_url

MODE_PERSISTENT = "persistent"
MODE_SINGLE_SHOT = "single-shot"
_MODE_SINGLE_SHOT_ALIAS = "single_shot"  # accepted, normalised (live_runner.go:46, 876-878)
ROUTING_RUNNER_ID = "runner-id"
ROUTING_LABEL = "label"
PRICE_UNITS = ("hour", "720p", "fixed")  # live_runner.go:115-121
MAX_METADATA_BYTES = 1024  # live_runner.go:40, 905-918
DEFAULT_HEALTHY_STATUS = 200  # live_runner.go:33

_INT64 = (-(2**63), 2**63 - 1)
# Go's unicode.IsSpace (strings.TrimSpace); Python's str.strip() also strips \x1c-\x1f.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u2028\u2029\u202f\u205f\u3000"
)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


class RunnersJSONError(ValueError):
    """An entry or document go-livepeer would refuse (or one we refuse to write)."""


# --------------------------------------------------------------------------------------------------
# decoding: encoding/json into the Go structs

_FIELDS: dict[str, str] = {  # StaticLiveRunnerConfigEntry (live_runner.go:147-161): json name -> kind
    "label": "string",
    "routing": "string",
    "proxy": "bool",
    "runner_url": "string",
    "version": "string",
    "metadata": "string",
    "mode": "string",
    "gpu": "gpu",
    "app": "string",
    "capacity": "int",
    "price_info": "price_info",
    "health_url": "string",
    "healthy_status_code": "int",
}
_GPU_FIELDS = {"id": "string", "name": "string", "vram_mb": "int"}  # live_runner.go:76-80
_PRICE_FIELDS = {"price": "number", "currency": "string", "unit": "string"}  # live_runner.go:82-86


def go_trim(s: str) -> str:
    """strings.TrimSpace: go-livepeer's "must be trimmed" checks use Go's idea of white space."""
    return s.strip(_GO_SPACE)


def _decode_object(value: Any, fields: Mapping[str, str], where: str) -> dict[str, Any]:
    """encoding/json into a struct: case-insensitive keys (last wins), unknown keys ignored, null → zero."""
    if not isinstance(value, Mapping):
        raise RunnersJSONError(f"{where}: must be a JSON object, got {json_type(value)}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key in fields else next((f for f in fields if f.lower() == str(key).lower()), None)
        if name is None:
            continue  # unknown fields are ignored
        out[name] = _decode_value(item, fields[name], f"{where}.{name}")
    return out


def json_type(value: Any) -> str:
    """A JSON value's type, as error messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _decode_value(value: Any, kind: str, where: str) -> Any:
    if value is None:
        return None  # JSON null leaves Go's zero value
    if kind == "string":
        if not isinstance(value, str):
            raise RunnersJSONError(f"{where}: must be a string, got {json_type(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise RunnersJSONError(f"{where}: must be true or false, got {json_type(value)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise RunnersJSONError(f"{where}: must be an integer, got {value!r}")
        if not _INT64[0] <= value <= _INT64[1]:
            raise RunnersJSONError(f"{where}: {value} is out of range")
        return value
    if kind == "number":  # json.Number: a JSON number, or a string holding a valid JSON number
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise RunnersJSONError(f"{where}: must be a number, got {json_type(value)}")
        text = value if isinstance(value, str) else json.dumps(value) if not isinstance(value, Decimal) else str(value)
        if not _JSON_NUMBER.fullmatch(text):
            raise RunnersJSONError(f"{where}: invalid number literal {value!r}")
        return text
    if kind == "gpu":  # an integer device index, or an object (live_runner.go:680-694)
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT64[0] <= value <= _INT64[1]:
                raise RunnersJSONError(f"{where}: {value} is out of range")
            return {"id": str(value)}
        return _decode_object(value, _GPU_FIELDS, where)
    if kind == "price_info":
        return _decode_object(value, _PRICE_FIELDS, where)
    raise AssertionError(kind)


# --------------------------------------------------------------------------------------------------
# validation: buildStaticRunner, normalizeHeartbeat, RegisterStaticRunners


def _resolve_health_url(runner_url: str, health_url: str) -> str:
    """staticRunnerHealthURL (live_runner.go:512-528): "/path" is appended to runner_url."""
    try:
        u = parse_url(health_url, via_request=False)
    except ValueError:
        raise RunnersJSONError("invalid health_url") from None
    if u.scheme or not u.path.startswith("/") or u.host:
        return health_url
    if not is_http_url(runner_url):
        raise RunnersJSONError("invalid runner_url")
    return runner_url.rstrip("/") + health_url


def check_metadata(metadata: str) -> None:
    """Discovery shows metadata to everyone: go-livepeer caps it at 1 KiB of valid UTF-8."""
    if "\ufffd" in metadata:
        raise RunnersJSONError("metadata must not contain Unicode replacement character U+FFFD")
    try:
        data = metadata.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not valid UTF-8
        raise RunnersJSONError("metadata must be valid UTF-8") from None
    if len(data) > MAX_METADATA_BYTES:
        raise RunnersJSONError(f"metadata must be at most {MAX_METADATA_BYTES} bytes (it is {len(data)} in UTF-8)")


def _normalize_price(price_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """priceRat + normalizeLiveRunnerPriceInfo (live_runner.go:88-125), applied on-chain only (:891-898)."""
    price_info = price_info or {}
    price = go_trim(price_info.get("price") or "")
    if not price:
        raise RunnersJSONError("price_info.price is required")
    if Decimal(price) <= 0:
        raise RunnersJSONError("price_info.price must be a positive decimal")
    currency = go_trim(price_info.get("currency") or "").lower() or "usd"
    if currency != "usd":
        raise RunnersJSONError("price_info.currency must be usd")
    unit = go_trim(price_info.get("unit") or "").lower() or "hour"
    if unit not in PRICE_UNITS:
        raise RunnersJSONError("price_info.unit must be hour, 720p, or fixed")
    return {"price": price, "currency": currency, "unit": unit}


def _normalize_entry(entry: dict[str, Any], on_chain: bool) -> dict[str, Any]:
    """buildStaticRunner + normalizeHeartbeat (live_runner.go:829-903) on a decoded entry."""
    label = entry.get("label") or ""
    if not label or label != go_trim(label):
        raise RunnersJSONError("label is required and must be trimmed")
    health_url = entry.get("health_url") or ""
    if not health_url:
        raise RunnersJSONError("health_url is required")
    if not is_http_url(health_url):
        raise RunnersJSONError("invalid health_url")
    if not 100 <= entry["healthy_status_code"] <= 599:
        raise RunnersJSONError("healthy_status_code must be a valid HTTP status code")
    if not is_http_url(entry.get("runner_url") or ""):
        raise RunnersJSONError("invalid runner_url")
    app = entry.get("app") or ""
    if not app or app != go_trim(app):
        raise RunnersJSONError("app must be trimmed")
    check_metadata(entry.get("metadata") or "")
    mode = entry.get("mode") or MODE_PERSISTENT
    if mode == _MODE_SINGLE_SHOT_ALIAS:
        mode = MODE_SINGLE_SHOT
    if mode not in (MODE_PERSISTENT, MODE_SINGLE_SHOT):
        raise RunnersJSONError(f'mode must be "{MODE_PERSISTENT}" or "{MODE_SINGLE_SHOT}"')
    capacity = entry.get("capacity") or 0
    if capacity < 0:
        raise RunnersJSONError("capacity must be >= 0")
    out = {**entry, "mode": mode, "capacity": capacity or 1}
    if on_chain:
        out["price_info"] = _normalize_price(entry.get("price_info"))
    return out


def validate_document(doc: Any, *, on_chain: bool = False) -> list[dict[str, Any]]:
    """Validate a parsed runners.json as go-livepeer v0.9.1 does; return the normalised entries
    (routing and mode defaulted, health_url resolved, capacity 0 → 1). RunnersJSONError otherwise."""
    if doc is None:
        return []  # `null` decodes to an empty config
    if not isinstance(doc, Mapping):
        raise RunnersJSONError(f'runners.json must be a JSON object {{"runners": [...]}}, got {json_type(doc)}')
    runners: Any = None
    for key, value in doc.items():
        if str(key).lower() == "runners":
            runners = value
    if runners is None:
        return []
    if not isinstance(runners, list | tuple):
        raise RunnersJSONError(f'"runners" must be an array, got {json_type(runners)}')
    decoded = [
        _decode_object(item, _FIELDS, f"runners[{i}]") if item is not None else {} for i, item in enumerate(runners)
    ]
    # normalizeStaticLiveRunnerConfig runs over every entry before any entry is built (live_runner.go:491-510)
    for i, entry in enumerate(decoded):
        routing = go_trim(entry.get("routing") or "") or ROUTING_RUNNER_ID
        if routing not in (ROUTING_RUNNER_ID, ROUTING_LABEL):
            raise RunnersJSONError(f'runners[{i}]: routing must be "{ROUTING_RUNNER_ID}" or "{ROUTING_LABEL}"')
        entry["routing"] = routing
        entry["healthy_status_code"] = entry.get("healthy_status_code") or DEFAULT_HEALTHY_STATUS
        try:
            entry["health_url"] = _resolve_health_url(entry.get("runner_url") or "", entry.get("health_url") or "")
        except RunnersJSONError as exc:
            raise RunnersJSONError(f"runners[{i}]: {exc}") from None
    # RegisterStaticRunners (live_runner.go:722-734): build, then unique label, then "/" with label routing
    seen: set[str] = set()
    out = []
    for i, entry in enumerate(decoded):
        try:
            normalized = _normalize_entry(entry, on_chain)
        except RunnersJSONError as exc:
            raise RunnersJSONError(f"runners[{i}]: {exc}") from None
        label = normalized["label"]
        if label in seen:
            raise RunnersJSONError(f"runners[{i}]: duplicate label {label!r}")
        if normalized["routing"] == ROUTING_LABEL and "/" in label:
            raise RunnersJSONError(f'runners[{i}]: label cannot contain / when routing is "{ROUTING_LABEL}"')
        seen.add(label)
        out.append(normalized)
    return out


def validate_entries(entries: Sequence[Mapping[str, Any]], *, on_chain: bool = False) -> list[dict[str, Any]]:
    """validate_document({"runners": entries})."""
    return validate_document({"runners": list(entries)}, on_chain=on_chain)


def loads(text: str | bytes, *, on_chain: bool = False) -> list[dict[str, Any]]:
    """Parse and validate runners.json text (invalid UTF-8 becomes U+FFFD, as encoding/json does)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunnersJSONError(f"runners.json is not valid JSON: {exc}") from None
    return validate_document(doc, on_chain=on_chain)
