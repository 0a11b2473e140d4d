"""`import ollama` with OLLAMA_HOST hidden.

The ollama package builds a module-level client from OLLAMA_HOST when it is imported, and cannot
parse the runner's comma-separated list of upstreams: a plain import would stop the service with
a traceback before its own settings could say anything. Import it from here instead.
"""

from __future__ import annotations

import os

_host = os.environ.pop("OLLAMA_HOST", None)
try:
    import ollama
finally:
    if _host is not None:
        os.environ["OLLAMA_HOST"] = _host

__all__ = ["ollama"]
