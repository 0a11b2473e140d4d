"""llama.cpp's own log, kept quiet and honest.

llama.cpp writes about a hundred lines per model load (the loader's metadata dump, the tokenizer,
the tensors) through one process-wide callback. llama-cpp-python's callback prints them all to
stderr until a model is built with verbose=False, and from then on its outdated level table drops
llama.cpp's real errors too. Ours drops everything below error and logs errors on the engine's
logger, except during a load: there they are kept, because they are the reason the load failed
(llama.cpp itself then says only "failed to load model").
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import llama_cpp

log = logging.getLogger("llm_runner.engine")
_ERROR, _CONTINUED = 4, 5  # ggml_log_level values (NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5)
_PREFIX = re.compile(r"^\w+: (error loading model: )?")  # "llama_model_load: error loading model: "
_local = threading.local()  # per thread: the last level, a line not yet ended, the load's errors


@llama_cpp.llama_log_callback
def _on_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    if level == _CONTINUED:
        level = getattr(_local, "level", 0)
    _local.level = level
    if level < _ERROR:
        return
    pending = getattr(_local, "pending", "") + text.decode(errors="replace")
    if not pending.endswith("\n"):
        _local.pending = pending
        return
    _local.pending = ""
    kept: list[str] | None = getattr(_local, "kept", None)
    for line in filter(None, (part.strip() for part in pending.splitlines())):
        if kept is None:
            log.error("llama.cpp: %s", line)
        else:
            kept.append(line)


def install() -> None:
    """Route llama.cpp's log through `_on_log` (after llama_cpp's import installed its own)."""
    llama_cpp.llama_log_set(_on_log, ctypes.c_void_p(0))


@contextmanager
def load_errors() -> Iterator[list[str]]:
    """Keep llama.cpp's errors from this thread in the yielded list instead of logging them."""
    kept: list[str] = []
    _local.kept = kept
    try:
        yield kept
    finally:
        _local.kept = None


def reason(errors: list[str]) -> str:
    """llama.cpp's first error, without its function-name prefix: the cause, not the aftermath."""
    return _PREFIX.sub("", errors[0]) if errors else "llama.cpp gave no reason"
