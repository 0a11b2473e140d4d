"""What every command shares: settings from the environment, and one-line errors."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from llm_runner.settings import Settings


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
