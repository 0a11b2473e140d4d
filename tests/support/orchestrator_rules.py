"""The stand-in orchestrator's reading of go-livepeer v0.9.1's rules (ai/runner/live_runner.go, e2fe336c):
encoding/json into the Go structs, then the checks and normalisation of a runners.json entry or a
heartbeat. Refusals are go's RunnerError: a status and go's message.

This module does not import llm_runner. It is an independent second reading of the Go source, on
purpose: llm_runner.live has its own, and each is tested against the other.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from tests.support.orchestrator_url import go_url, http_url_ok

PERSISTENT, SINGLE_SHOT = "persistent", "single-shot"
ROUTING_ID, ROUTING_LABEL = "runner-id", "label"
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
GO_SPACE += "\u2028\u2029\u202f\u205f\u3000"
JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")


class Refused(Exception):
    """A RunnerError: status code and go's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def trim(s: str) -> str:
    return s.strip(GO_SPACE)


# ---------------------------------------------------------------------------------------------------
# decoding and validating (encoding/json into the Go structs, then go's checks)

ENTRY_FIELDS = {
    "label": "str",
    "routing": "str",
    "proxy": "bool",
    "runner_url": "str",
    "version": "str",
    "metadata": "str",
    "mode": "str",
    "gpu": "gpu",
    "app": "str",
    "capacity": "int",
    "price_info": "price",
    "health_url": "str",
    "healthy_status_code": "int",
}
HEARTBEAT_FIELDS = {
    "runner_id": "str",
    "label": "str",
    "proxy": "bool",
    "runner_url": "str",
    "version": "str",
    "metadata": "str",
    "status": "str",
    "mode": "str",
    "gpu": "gpu",
    "app": "str",
    "capacity": "int",
    "price_info": "price",
    "session_ids": "strlist",
}


def decode_struct(value: Any, fields: dict[str, str], where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"json: cannot unmarshal {type(value).__name__} into {where}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key in fields else next((f for f in fields if f.lower() == key.lower()), None)
        if name is not None:
            out[name] = decode_field(item, fields[name], f"{where}.{name}")
    return out


def decode_field(value: Any, kind: str, where: str) -> Any:
    if value is None:
        return None
    wrong = ValueError(f"json: cannot unmarshal {json.dumps(value)[:40]} into Go struct field {where}")
    if kind == "str":
        if not isinstance(value, str):
            raise wrong
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            raise wrong
        return value
    if kind == "strlist":
        if not isinstance(value, list) or any(v is not None and not isinstance(v, str) for v in value):
            raise wrong
        return [v or "" for v in value]
    if kind == "gpu":
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:
                raise wrong
            return {"id": str(value)}  # a device index (name from the host's GPUs, not looked up here)
        gpu = decode_struct(value, {"id": "str", "name": "str", "vram_mb": "int"}, where)
        return {k: v for k, v in gpu.items() if v not in (None, "", 0)}
    if kind == "price":
        price = decode_struct(value, {"price": "number", "currency": "str", "unit": "str"}, where)
        return price
    if kind == "number":  # json.Number
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise wrong
        text = value if isinstance(value, str) else json.dumps(value)
        if not JSON_NUMBER.match(text):
            raise ValueError(f"json: invalid number literal, trying to unmarshal {json.dumps(value)} into Number")
        return text
    raise AssertionError(kind)


def check_metadata(metadata: str) -> None:
    data = metadata.encode("utf-8", errors="surrogatepass")
    if len(data) > 1024:
        raise ValueError("metadata must be at most 1024 bytes")
    try:
        metadata.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("metadata must be valid UTF-8") from None
    if "\ufffd" in metadata:
        raise ValueError("metadata must not contain Unicode replacement character U+FFFD")


def normalize_request(req: dict[str, Any], onchain: bool) -> dict[str, Any]:
    """normalizeHeartbeat (live_runner.go:858-903)."""
    if not http_url_ok(req.get("runner_url") or ""):
        raise ValueError("invalid runner_url")
    app = req.get("app") or ""
    if not app or app != trim(app):
        raise ValueError("app must be trimmed")
    check_metadata(req.get("metadata") or "")
    status = req.get("status") or ""
    if status != trim(status).lower():
        raise ValueError("status must be lowercase and trimmed")
    mode = req.get("mode") or PERSISTENT
    mode = SINGLE_SHOT if mode == "single_shot" else mode
    if mode not in (PERSISTENT, SINGLE_SHOT):
        raise ValueError(f'mode must be "{PERSISTENT}" or "{SINGLE_SHOT}"')
    capacity = req.get("capacity") or 0
    if capacity < 0:
        raise ValueError("capacity must be >= 0")
    out = {
        "label": req.get("label") or "",
        "proxy": bool(req.get("proxy")),
        "runner_url": req["runner_url"],
        "version": req.get("version") or "",
        "metadata": req.get("metadata") or "",
        "status": status,
        "mode": mode,
        "gpu": req.get("gpu") or None,
        "app": app,
        "capacity": capacity or 1,
        "price_info": req.get("price_info") or {},
    }
    if onchain:
        price_info = out["price_info"]
        price = trim(price_info.get("price") or "")
        if not price:
            raise ValueError("price_info.price is required")
        if Decimal(price) <= 0:
            raise ValueError("price_info.price must be a positive decimal")
        currency = trim(price_info.get("currency") or "").lower() or "usd"
        if currency != "usd":
            raise ValueError("price_info.currency must be usd")
        unit = trim(price_info.get("unit") or "").lower() or "hour"
        if unit not in ("hour", "720p", "fixed"):
            raise ValueError("price_info.unit must be hour, 720p, or fixed")
        out["price_info"] = {"price": price, "currency": currency, "unit": unit}
    return out


def health_url_for(runner_url: str, health_url: str) -> str:
    """staticRunnerHealthURL (live_runner.go:512-528)."""
    try:
        scheme, host, path = go_url(health_url, request_uri=False)
    except ValueError:
        raise ValueError("invalid health_url") from None
    if scheme or not path.startswith("/") or host:
        return health_url
    if not http_url_ok(runner_url):
        raise ValueError("invalid runner_url")
    return runner_url.rstrip("/") + health_url


def parse_static_config(body: bytes | str, onchain: bool) -> list[dict[str, Any]]:
    """ParseStaticLiveRunnerConfig + the validation half of RegisterStaticRunners. Raises Refused(400)."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(400, f"invalid character: {exc}") from None
    return validate_static_config(doc, onchain)


def validate_static_config(doc: Any, onchain: bool) -> list[dict[str, Any]]:
    """An already parsed runners.json, checked and normalised as go-livepeer does. Raises Refused(400)."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise Refused(400, "json: cannot unmarshal array into Go value of type runner.StaticLiveRunnerConfig")
    runners = None
    for key, value in doc.items():
        if key.lower() == "runners":
            runners = value
    if runners is None:
        return []
    if not isinstance(runners, list):
        raise Refused(400, "json: cannot unmarshal into Go struct field StaticLiveRunnerConfig.runners")
    try:
        entries = [decode_struct(item, ENTRY_FIELDS, "StaticLiveRunnerConfigEntry") for item in runners]
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    for i, entry in enumerate(entries):  # normalizeStaticLiveRunnerConfig
        routing = trim(entry.get("routing") or "") or ROUTING_ID
        if routing not in (ROUTING_ID, ROUTING_LABEL):
            raise Refused(400, f'runners[{i}]: routing must be "{ROUTING_ID}" or "{ROUTING_LABEL}"')
        entry["routing"] = routing
        entry["healthy_status_code"] = entry.get("healthy_status_code") or 200
        try:
            entry["health_url"] = health_url_for(entry.get("runner_url") or "", entry.get("health_url") or "")
        except ValueError as exc:
            raise Refused(400, f"runners[{i}]: {exc}") from None
    labels: set[str] = set()
    out = []
    for i, entry in enumerate(entries):  # buildStaticRunner, duplicate label, "/" in a routed label
        try:
            label = entry.get("label") or ""
            if not label or label != trim(label):
                raise ValueError("label is required and must be trimmed")
            if not entry["health_url"]:
                raise ValueError("health_url is required")
            if not http_url_ok(entry["health_url"]):
                raise ValueError("invalid health_url")
            if not 100 <= entry["healthy_status_code"] <= 599:
                raise ValueError("healthy_status_code must be a valid HTTP status code")
            req = normalize_request({**entry, "status": ""}, onchain)
        except ValueError as exc:
            raise Refused(400, f"runners[{i}]: {exc}") from None
        if label in labels:
            raise Refused(400, f'runners[{i}]: duplicate label "{label}"')
        if entry["routing"] == ROUTING_LABEL and "/" in label:
            raise Refused(400, f'runners[{i}]: label cannot contain / when routing is "{ROUTING_LABEL}"')
        labels.add(label)
        out.append({**req, "routing": entry["routing"], "health_url": entry["health_url"],
                    "healthy_status_code": entry["healthy_status_code"]})  # fmt: skip
    return out
