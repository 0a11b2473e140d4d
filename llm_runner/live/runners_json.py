"""runners.json entries for go-livepeer Live Runners (v0.9.0+), checked with go-livepeer's own rules.

go-livepeer loads `-liveRunnerConfig PATH` (or the same JSON at `POST /registerLiveRunners` on its CLI
port) with `ParseStaticLiveRunnerConfig` + `RegisterStaticRunners` (ai/runner/live_runner.go at tag
v0.9.1, e2fe336c). The document is an *object* `{"runners": [...]}` (live_runner.go:143-145), decoded
with encoding/json: unknown fields are ignored, keys match case-insensitively, a value of the wrong
JSON type fails the whole file. Every entry is then validated, and one bad entry refuses the whole
batch, which at start-up stops the node (cmd/livepeer/starter/starter.go:2051-2058).

One served model becomes one single-shot entry:

    label       <slug>                       (HF id with "/" → "--", or given)
    routing     label                        (so clients call /apps/<label>/app/...)
    app         llm/<HF id>
    runner_url  <base>/models/<slug>
    health_url  <base>/models/<slug>/ready   (polled every 5 s, 3 s timeout, exact status)
    mode        single-shot
    capacity, version, gpu, price_info, metadata as given

Everything but `merge_into_file` is pure.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from llm_runner.upstream.catalog import model_slug

APP_PREFIX = "llm/"
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
    if not isinstance(model_id, str) or not model_id or model_id != _go_trim(model_id):
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
# validation: the rules of ai/runner/live_runner.go (v0.9.1)

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


def _go_trim(s: str) -> str:
    return s.strip(_GO_SPACE)


def _decode_object(value: Any, fields: Mapping[str, str], where: str) -> dict[str, Any]:
    """encoding/json into a struct: case-insensitive keys (last wins), unknown keys ignored, null → zero."""
    if not isinstance(value, Mapping):
        raise RunnersJSONError(f"{where}: must be a JSON object, got {_json_type(value)}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key in fields else next((f for f in fields if f.lower() == str(key).lower()), None)
        if name is None:
            continue  # unknown fields are ignored
        out[name] = _decode_value(item, fields[name], f"{where}.{name}")
    return out


def _json_type(value: Any) -> str:
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
            raise RunnersJSONError(f"{where}: must be a string, got {_json_type(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise RunnersJSONError(f"{where}: must be true or false, got {_json_type(value)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise RunnersJSONError(f"{where}: must be an integer, got {value!r}")
        if not _INT64[0] <= value <= _INT64[1]:
            raise RunnersJSONError(f"{where}: {value} is out of range")
        return value
    if kind == "number":  # json.Number: a JSON number, or a string holding a valid JSON number
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise RunnersJSONError(f"{where}: must be a number, got {_json_type(value)}")
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


# Go's net/url, as far as go-livepeer's checks see it -------------------------------------------

_HOST_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\"")
_USERINFO_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@")
_HEX = set("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class _URL:
    scheme: str
    host: str
    path: str


def _unescape(s: str, host: bool) -> None:
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise ValueError("invalid URL escape")
            if host and int(s[i + 1], 16) < 8 and s[i : i + 3] != "%25":
                raise ValueError("invalid URL escape in host")
            i += 3
            continue
        if host and ord(c) < 0x80 and c not in _HOST_OK:
            raise ValueError(f"invalid character {c!r} in host name")
        i += 1


def _valid_port(colon_port: str) -> bool:
    return colon_port == "" or (colon_port.startswith(":") and all("0" <= c <= "9" for c in colon_port[1:]))


def _parse_host(host: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise ValueError("missing ']' in host")
        if not _valid_port(host[end + 1 :]):
            raise ValueError("invalid port")
    else:
        colon = host.rfind(":")
        if colon != -1 and not _valid_port(host[colon:]):
            raise ValueError("invalid port")
    _unescape(host, host=True)
    return host


def _parse_url(raw: str, via_request: bool) -> _URL:
    """url.Parse (via_request=False, fragment cut) or url.ParseRequestURI (True); ValueError if Go errs."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ValueError("invalid control character in URL")
    if not via_request:
        raw, _, fragment = raw.partition("#")
        _unescape(fragment, host=False)
    if raw == "" and via_request:
        raise ValueError("empty url")
    if raw == "*":
        return _URL("", "", "*")
    scheme, rest = "", raw
    for i, c in enumerate(raw):
        if "a" <= c <= "z" or "A" <= c <= "Z":
            continue
        if "0" <= c <= "9" or c in "+-.":
            if i == 0:
                break
            continue
        if c == ":":
            if i == 0:
                raise ValueError("missing protocol scheme")
            scheme, rest = raw[:i].lower(), raw[i + 1 :]
        break
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return _URL(scheme, "", "")  # opaque ("http:foo"): no host
        if via_request:
            raise ValueError("invalid URI for request")
        if ":" in rest.partition("/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    host = ""
    if (scheme or (not via_request and not rest.startswith("///"))) and rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        at = authority.rfind("@")
        if at >= 0:
            userinfo = authority[:at]
            if any(c not in _USERINFO_OK and ord(c) < 0x80 for c in userinfo):
                raise ValueError("invalid userinfo")
            _unescape(userinfo, host=False)
        host = _parse_host(authority[at + 1 :])
    _unescape(rest, host=False)
    return _URL(scheme, host, rest)


def _http_url(raw: str) -> bool:
    """url.ParseRequestURI succeeds, with a host and an http(s) scheme (live_runner.go:836-839, 859-862)."""
    try:
        u = _parse_url(raw, via_request=True)
    except ValueError:
        return False
    return bool(u.host) and u.scheme in ("http", "https")


def _resolve_health_url(runner_url: str, health_url: str) -> str:
    """staticRunnerHealthURL (live_runner.go:512-528): "/path" is appended to runner_url."""
    try:
        u = _parse_url(health_url, via_request=False)
    except ValueError:
        raise RunnersJSONError("invalid health_url") from None
    if u.scheme or not u.path.startswith("/") or u.host:
        return health_url
    if not _http_url(runner_url):
        raise RunnersJSONError("invalid runner_url")
    return runner_url.rstrip("/") + health_url


def _check_metadata(metadata: str) -> None:
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
    price = _go_trim(price_info.get("price") or "")
    if not price:
        raise RunnersJSONError("price_info.price is required")
    if Decimal(price) <= 0:
        raise RunnersJSONError("price_info.price must be a positive decimal")
    currency = _go_trim(price_info.get("currency") or "").lower() or "usd"
    if currency != "usd":
        raise RunnersJSONError("price_info.currency must be usd")
    unit = _go_trim(price_info.get("unit") or "").lower() or "hour"
    if unit not in PRICE_UNITS:
        raise RunnersJSONError("price_info.unit must be hour, 720p, or fixed")
    return {"price": price, "currency": currency, "unit": unit}


def _normalize_entry(entry: dict[str, Any], on_chain: bool) -> dict[str, Any]:
    """buildStaticRunner + normalizeHeartbeat (live_runner.go:829-903) on a decoded entry."""
    label = entry.get("label") or ""
    if not label or label != _go_trim(label):
        raise RunnersJSONError("label is required and must be trimmed")
    health_url = entry.get("health_url") or ""
    if not health_url:
        raise RunnersJSONError("health_url is required")
    if not _http_url(health_url):
        raise RunnersJSONError("invalid health_url")
    if not 100 <= entry["healthy_status_code"] <= 599:
        raise RunnersJSONError("healthy_status_code must be a valid HTTP status code")
    if not _http_url(entry.get("runner_url") or ""):
        raise RunnersJSONError("invalid runner_url")
    app = entry.get("app") or ""
    if not app or app != _go_trim(app):
        raise RunnersJSONError("app must be trimmed")
    _check_metadata(entry.get("metadata") or "")
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
        raise RunnersJSONError(f'runners.json must be a JSON object {{"runners": [...]}}, got {_json_type(doc)}')
    runners: Any = None
    for key, value in doc.items():
        if str(key).lower() == "runners":
            runners = value
    if runners is None:
        return []
    if not isinstance(runners, list | tuple):
        raise RunnersJSONError(f'"runners" must be an array, got {_json_type(runners)}')
    decoded = [
        _decode_object(item, _FIELDS, f"runners[{i}]") if item is not None else {} for i, item in enumerate(runners)
    ]
    # normalizeStaticLiveRunnerConfig runs over every entry before any entry is built (live_runner.go:491-510)
    for i, entry in enumerate(decoded):
        routing = _go_trim(entry.get("routing") or "") or ROUTING_RUNNER_ID
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


# --------------------------------------------------------------------------------------------------
# merging into a file


def merge(existing: Mapping[str, Any] | None, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`existing` with `entries` upserted by label: the same label is replaced in place, new labels are
    appended, other entries and other top-level keys are kept (go-livepeer's upsert is by label too)."""
    doc = dict(existing or {})
    runners_key = next((k for k in doc if str(k).lower() == "runners"), "runners")
    current = doc.pop(runners_key, None)
    current = [] if current is None else current
    if not isinstance(current, list):
        raise RunnersJSONError(f'"runners" must be an array, got {_json_type(current)}')
    new = {e["label"]: dict(e) for e in entries}
    merged: list[Any] = []
    for item in current:
        label = _label_of(item)
        if label in new:
            merged.append(new.pop(label))
        else:
            merged.append(item)
    merged.extend(new.values())
    return {"runners": merged, **{k: v for k, v in doc.items()}}


def _label_of(item: Any) -> Any:
    if not isinstance(item, Mapping):
        return None
    label = None
    for key, value in item.items():
        if str(key).lower() == "label":
            label = value
    return label


def merge_into_file(
    path: str | os.PathLike[str], entries: Sequence[Mapping[str, Any]], *, on_chain: bool = False
) -> dict[str, Any]:
    """Upsert `entries` by label into the runners.json at `path` (created if missing), atomically.

    A file that is not JSON, not an object, or whose merged content go-livepeer would refuse is left
    unchanged and RunnersJSONError says why. Returns the document written."""
    path = Path(path)
    entries = [dict(e) for e in entries]
    validate_entries(entries, on_chain=on_chain)
    existing: Any = None
    mode = 0o644
    if path.exists():
        mode = path.stat().st_mode & 0o777
        text = path.read_bytes().decode("utf-8", errors="replace")
        if text.strip():
            try:
                existing = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RunnersJSONError(
                    f"{path} is not valid JSON ({exc}); fix or remove it, it was left as is"
                ) from None
    if existing is not None and not isinstance(existing, Mapping):
        raise RunnersJSONError(
            f'{path} must hold a JSON object {{"runners": [...]}} (go-livepeer refuses {_json_type(existing)}); '
            "it was left as is"
        )
    merged = merge(existing, entries)
    try:
        validate_document(merged, on_chain=on_chain)
    except RunnersJSONError as exc:
        raise RunnersJSONError(f"{path}: go-livepeer would refuse the merged file ({exc}); it was left as is") from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(merged, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return merged
