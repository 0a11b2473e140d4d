"""What every command shares: settings from the environment, and one-line errors."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from llm_runner.settings import Settings
from llm_runner.upstream.catalog import Catalog


def fail(message: str) -> int:
    print(f"llm-runner: error: {message}", file=sys.stderr)
    return 2


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 with a clear message."""
    try:
        return Settings.from_env()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise SystemExit(fail(f"invalid settings: {problems}")) from None
    except ValueError as exc:
        raise SystemExit(fail(str(exc))) from None


def load_catalog(settings: Settings) -> Catalog:
    """The catalog with the operator's mappings, or exit 2 with one line naming the file and the problem."""
    try:
        return Catalog.load(settings.model_map, settings.model_map_file)
    except ValueError as exc:  # CatalogError, and a file that is not UTF-8
        message, path = str(exc), settings.model_map_file
        if path is not None and str(path) not in message:
            message = f"model map file {path} (LLM_RUNNER_MODEL_MAP_FILE): {message}"
        raise SystemExit(fail(message)) from None
