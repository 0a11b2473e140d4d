"""The upstream interface: what the core and the lifecycle need from a token source.

`OllamaUpstream` (one Ollama server) implements it; the embedded engine is an Ollama-API server
in a child process behind `EmbeddedUpstream`, and several upstreams are routed by `UpstreamPool`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_runner.core.events import Event
from llm_runner.core.request import GenerationRequest


@dataclass(frozen=True)
class ModelInfo:
    """What an upstream says about a tag (Ollama's /api/show)."""

    tag: str
    capabilities: tuple[str, ...] = ()
    quantization: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    model_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PullProgress:
    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0


class Upstream(Protocol):
    name: str  # its base URL: in logs, /status and metric labels
    slots: int  # generations it runs in parallel (its OLLAMA_NUM_PARALLEL)
    model_ids: frozenset[str] | None  # the served models it may serve; None: all of them

    def serves(self, model_id: str) -> bool: ...

    async def version(self) -> str:
        """Its version; raises UpstreamError(unreachable). Never fails on a stale pooled connection."""
        ...

    async def show(self, tag: str) -> ModelInfo | None: ...

    def pull(self, tag: str) -> AsyncIterator[PullProgress]: ...

    async def warm(self, tag: str, think_off: bool) -> None: ...

    def chat(self, tag: str, request: GenerationRequest, *, think_off: bool) -> AsyncIterator[Event]:
        """Stream one generation: deltas, then exactly one End(stop|length), or UpstreamError.
        Closing the iterator closes the upstream connection, which stops the generation."""
        ...

    def watch(self, notify: Callable[[bool], None]) -> None:
        """Have notify(False) called when the upstream is known to have died, notify(True) when it
        is back (a supervised child process); servers that give no such signal ignore this."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
