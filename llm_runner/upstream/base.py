"""The upstream interface: what the core and the lifecycle need from a token source.

`OllamaUpstream` (one Ollama server) and `OpenAIUpstream` (vLLM, SGLang, llama-server...) implement
it; the embedded engine is an Ollama-API server in a child process behind `EmbeddedUpstream`, and
several upstreams are routed by `UpstreamRouter`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_runner.core.errors import UpstreamError
from llm_runner.core.events import Event
from llm_runner.core.request import GenerationRequest, Tool
from llm_runner.upstream.http1 import ConnectFailed, ConnectionLost, ProtocolError, ReadTimeout


class UpstreamSettings(Protocol):
    """What an upstream reads of the runner's settings (`Settings` is one): its timeouts, the context
    every request gets, how long a model stays loaded and what to do with thinking."""

    connect_timeout_s: float
    first_token_timeout_s: float
    inter_token_timeout_s: float
    queue_timeout_s: float
    num_ctx: int
    think: str

    @property
    def ollama_keep_alive(self) -> int | float | str: ...


@dataclass(frozen=True)
class ModelInfo:
    """What an upstream says about a tag (Ollama's /api/show)."""

    tag: str
    capabilities: tuple[str, ...] = ()
    quantization: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    model_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resident:
    """A model loaded in an upstream's memory (Ollama's /api/ps)."""

    tag: str
    size: int  # bytes it takes in all
    size_vram: int  # of which on the GPU: less means partly offloaded to the CPU (several times slower)
    expires_at: str = ""

    @property
    def offload_fraction(self) -> float:
        """The share of the model on the CPU (0: all on the GPU)."""
        return max(0.0, 1 - self.size_vram / self.size) if self.size > 0 else 0.0


@dataclass(frozen=True)
class PullProgress:
    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0


class Peer(Protocol):
    """What messages about an upstream's failures need of it."""

    name: str  # its base URL
    peer: str  # how messages name it: "Ollama", "engine"

    async def version(self) -> str: ...


class Upstream(Protocol):
    kind: str  # "ollama", "embedded" or "openai" (an OpenAI-compatible engine)
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

    async def unload(self, tag: str) -> None:
        """Free the model's memory once its requests are done (Ollama: keep_alive 0)."""
        ...

    async def ps(self) -> list[Resident]:
        """What is loaded now, and how much of each is on the GPU."""
        ...

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


def function_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Tools as OpenAI's function definitions: what Ollama's /api/chat and every OpenAI-compatible
    engine take alike."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters or {}},
        }
        for t in tools
    ]


def sampling(request: GenerationRequest) -> dict[str, Any]:
    """The sampling fields a request sets, named as Ollama's options and OpenAI's body both name
    them; a field left unset is not sent (the model's own default applies)."""
    fields: dict[str, Any] = {}
    for name in ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    if request.top_k is not None and request.top_k > 0:
        fields["top_k"] = request.top_k
    if request.stop:
        fields["stop"] = list(request.stop)
    return fields


def unreachable(upstream: Peer, exc: BaseException) -> str:
    return (
        f"{upstream.peer} at {upstream.name} is unreachable ({type(exc).__name__}: {exc}): start it there, "
        "or set OLLAMA_HOST to where it runs"
    )


@asynccontextmanager
async def transport_errors(upstream: Peer, tag: str) -> AsyncIterator[None]:
    """A generation's transport failures as the UpstreamError kinds the core acts on, alike for
    every upstream. A connection closed before a byte of answer (the pool already retried a reused
    one) is what a dying server does, but also a live one whose handler crashed: the upstream is
    asked, and only a dead one is reported unreachable (and so marked down, which /health shows)."""
    peer = upstream.peer
    try:
        yield
    except ConnectFailed as exc:
        raise UpstreamError("unreachable", unreachable(upstream, exc)) from exc
    except ReadTimeout as exc:
        raise UpstreamError("timeout", f"{peer} sent nothing for {exc.waited_s:g}s for {tag} ({exc!r})") from exc
    except ConnectionLost as exc:
        if exc.responded:
            raise UpstreamError("truncated", f"connection to {peer} broke during {tag}: {exc!r}") from exc
        try:
            version = await upstream.version()
        except UpstreamError as down:
            raise UpstreamError("unreachable", f"{down.msg}; it had closed {tag}'s connection unanswered") from exc
        raise UpstreamError(
            "truncated", f"{peer} {version} at {upstream.name} closed {tag}'s connection without answering ({exc})"
        ) from exc
    except ProtocolError as exc:
        raise UpstreamError("truncated", f"connection to {peer} broke during {tag}: {exc!r}") from exc
    except json.JSONDecodeError as exc:
        raise UpstreamError("protocol", f"{peer} sent a line that is not JSON: {exc}") from exc
