"""The settings table of docs/configuration.md, generated from `Settings` so the two never disagree.

`python -m llm_runner.ops.settings_doc` prints the table; `--write docs/configuration.md` replaces
the part of that file between the markers. tests/test_docs.py fails when the file is out of date.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from llm_runner.settings import ENV_PREFIX, Settings

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
# Defaults that are computed when the service starts, so that the table does not change with them.
COMPUTED_DEFAULTS = {"version": "the package version"}


def env_names(name: str, field: FieldInfo) -> list[str]:
    """Every environment variable that sets the field: its aliases, then LLM_RUNNER_<NAME>."""
    aliases = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
    names = [alias.upper() for alias in aliases if isinstance(alias, str)] + [ENV_PREFIX + name.upper()]
    return list(dict.fromkeys(names))


def default_text(name: str, field: FieldInfo) -> str:
    """The default as one would write it in the environment; "–" when unset."""
    if name in COMPUTED_DEFAULTS:
        return COMPUTED_DEFAULTS[name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "–"
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def table_cell(text: str) -> str:
    """Text safe in a table cell: `|` escaped, and `<` outside code spans shown rather than read as HTML."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


def settings_table() -> str:
    """One row per setting, in the order Settings declares them."""
    rows = ["| environment variable | field | default | description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        variables = "<br>".join(f"`{env}`" for env in env_names(name, field))
        rows.append(f"| {variables} | `{name}` | {default_text(name, field)} | {table_cell(field.description or '')} |")
    return "\n".join(rows) + "\n"


def with_table(document: str) -> str:
    """The document with the table between its markers replaced by the generated one."""
    pattern = re.compile(rf"{re.escape(BEGIN)}\n.*?{re.escape(END)}", re.DOTALL)
    if not pattern.search(document):
        raise ValueError(f"no {BEGIN} … {END} markers")
    return pattern.sub(lambda _: f"{BEGIN}\n{settings_table()}{END}", document, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_runner.ops.settings_doc", description=__doc__)
    parser.add_argument("--write", type=Path, metavar="FILE", help="replace the table between the markers in FILE")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(settings_table())
        return 0
    try:
        args.write.write_text(with_table(args.write.read_text()))
    except (OSError, ValueError) as exc:
        print(f"settings_doc: {args.write}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
