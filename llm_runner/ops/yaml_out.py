"""A small block-style YAML emitter for the Compose files the CLI writes: plain scalars where YAML
reads them back as the same string, double quotes elsewhere (so ports are always quoted and volumes
never, as dclint wants), a blank line between services, and `# comments` after chosen keys: what
PyYAML's emitter cannot do (and PyYAML is not a runtime dependency)."""

from __future__ import annotations

import json
import re
from typing import Any


class Folded(str):
    """A string emitted as a folded block scalar (`>-`), one part per line."""

    __slots__ = ()

    @classmethod
    def of(cls, parts: list[str]) -> Folded:
        return cls("\n".join(parts))


_PLAIN = re.compile(r"(?:[A-Za-z/]|\.\.?/)[A-Za-z0-9_./:@+-]*")
_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    plain = _PLAIN.fullmatch(text) and not text.endswith(":") and not _NUMBER.fullmatch(text)
    return text if plain and text.lower() not in _RESERVED else json.dumps(text)


def to_yaml(document: dict[str, Any], comments: dict[tuple[str, ...], str] | None = None, head: list[str] = ()) -> str:
    """Block-style YAML for dicts, lists and scalars; `comments` adds `# ...` after a key's line."""
    lines = [f"# {line}".rstrip() for line in head]
    _mapping(document, 0, (), lines, comments or {})
    return "\n".join(lines) + "\n"


def _mapping(value: dict, indent: int, path: tuple[str, ...], lines: list[str], comments: dict) -> None:
    pad = " " * indent
    for index, (key, item) in enumerate(value.items()):
        here = (*path, str(key))
        if index and path in ((), ("services",)):
            lines.append("")  # a blank line between top-level keys and between services
        comment = f"  # {comments[here]}" if here in comments else ""
        name = scalar(str(key))
        if isinstance(item, Folded):
            lines.append(f"{pad}{name}: >-{comment}")
            lines.extend(f"{pad}  {part}" for part in item.split("\n"))
        elif isinstance(item, dict) and item:
            lines.append(f"{pad}{name}:{comment}")
            _mapping(item, indent + 2, here, lines, comments)
        elif isinstance(item, list) and item:
            lines.append(f"{pad}{name}:{comment}")
            _sequence(item, indent + 2, here, lines, comments)
        elif item is None:
            lines.append(f"{pad}{name}:{comment}")
        else:
            empty = "{}" if isinstance(item, dict) else "[]" if isinstance(item, list) else None
            lines.append(f"{pad}{name}: {empty or scalar(item)}{comment}")


def _sequence(value: list, indent: int, path: tuple[str, ...], lines: list[str], comments: dict) -> None:
    pad = " " * indent
    for item in value:
        if isinstance(item, dict) and item:
            start = len(lines)
            _mapping(item, indent + 2, path, lines, comments)
            lines[start] = f"{pad}- {lines[start][indent + 2 :]}"
        elif isinstance(item, list | dict | Folded):
            raise ValueError("nested empty collections and folded strings in lists are not supported")
        else:
            lines.append(f"{pad}- {scalar(item)}")
