"""What every command shares: settings from the environment, and one-line errors."""

from __future__ import annotations

import sys

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from llm_runner.settings import Settings
from llm_runner.upstream.catalog import Catalog
from llm_runner.upstream.shares import SharesError, capacities_for


def fail(message: str) -> int:
    print(f"llm-runner: error: {message}", file=sys.stderr)
    return 2


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 with a clear message."""
    try:
        return Settings.from_env()
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise SystemExit(fail(f"invalid settings: {problems}")) from None
    except ValueError as exc:
        raise SystemExit(fail(str(exc))) from None


def _problem(error: ErrorDetails) -> str:
    """A validator's own message as it is (it names the setting); pydantic's with the setting's name."""
    if error["type"] == "value_error" and "ctx" in error:
        return str(error["ctx"]["error"])
    return f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"


def load_catalog(settings: Settings) -> Catalog:
    """The catalog with the operator's mappings, or exit 2 with one line naming the file and the problem."""
    try:
        return Catalog.for_settings(settings)
    except ValueError as exc:  # CatalogError, and a file that is not UTF-8
        message, path = str(exc), settings.model_map_file
        if path is not None and str(path) not in message:
            message = f"model map file {path} (LLM_RUNNER_MODEL_MAP_FILE): {message}"
        raise SystemExit(fail(message)) from None


CAPACITY_HELP = (
    "requests at once: N for every model, or MODEL=N (repeat); default: each upstream's slots split "
    "between the models it serves. Refused when they add up to more than the slots"
)


def capacities(settings: Settings, ids: list[str], given: list[str] | None) -> dict[str, int]:
    """Each model's advertised capacity from --capacity (N, or MODEL=N) or the split of the slots;
    exit 2 with the reason when they would add up to more than the slots."""
    chosen: dict[str, int] = {}
    default: int | None = None
    for value in given or []:
        name, _, number = value.rpartition("=")
        if not number.strip().lstrip("-").isdigit():
            raise SystemExit(fail(f"--capacity {value!r}: a whole number, or MODEL=N"))
        if not name:
            default = int(number)
        elif name not in ids:
            raise SystemExit(fail(f"--capacity {value!r}: {name} is not one of the models ({', '.join(ids)})"))
        else:
            chosen[name] = int(number)
    if default is not None:
        chosen = {m: chosen.get(m, default) for m in ids}
    elif chosen and len(chosen) < len(ids):
        missing = ", ".join(m for m in ids if m not in chosen)
        raise SystemExit(fail(f"--capacity names some models but not {missing}: name every model, or give N"))
    try:
        return capacities_for(settings, ids, chosen or None)
    except SharesError as exc:
        raise SystemExit(fail(str(exc))) from None
