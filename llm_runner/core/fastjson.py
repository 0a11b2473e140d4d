"""JSON on the token path: orjson (about 5x faster than `json` per Ollama line and per chunk),
with `json` as the fallback for what orjson refuses and `json` accepts (lone surrogates)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # raises json.JSONDecodeError (a ValueError) when it is not JSON


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (non-ASCII as is, which every JSON reader accepts)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, or a type orjson does not know
        return json.dumps(value, separators=(",", ":")).encode()
