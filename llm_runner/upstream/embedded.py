"""The embedded llama.cpp engine as an upstream: an Ollama-API server in a supervised child
process, reached over the same HTTP path as a real Ollama. Unlike an Ollama server it tells the
lifecycle when its process exits and when it is started again, so the model is re-warmed and
health is honest meanwhile; and while its child is still starting it is not reported down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

from llm_runner.core.errors import UpstreamError
from llm_runner.engine.launcher import EngineProcess, EngineSettings
from llm_runner.engine.registry import UNREADABLE, missing_model_hint
from llm_runner.upstream.base import ModelInfo, PullProgress, UpstreamSettings
from llm_runner.upstream.ollama import OllamaUpstream

START_PROBE_S = 0.05  # how often a starting engine's port is tried


class EmbeddedSettings(UpstreamSettings, EngineSettings, Protocol):
    """What the embedded upstream reads: an upstream's settings and its engine's."""


class EmbeddedUpstream(OllamaUpstream):
    kind = "embedded"

    def __init__(self, settings: EmbeddedSettings, slots: int, served: Mapping[str, str] | None = None) -> None:
        self.process = EngineProcess(settings)
        self.served = dict(served or {})  # tag → the HF id it serves, for the ready line
        super().__init__(self.process.base_url, settings, slots=slots)

    def watch(self, notify: Callable[[bool], None]) -> None:
        self.process.notify = notify

    async def version(self) -> str:
        """Wait while the child is starting (its port not open yet): it is not down, it is coming
        up. Once it answered, or exited, or took too long, not answering is reported as usual."""
        while True:
            try:
                version = await super().version()
            except UpstreamError:
                if not self.process.starting:
                    raise
                await asyncio.sleep(START_PROBE_S)
                continue
            self.process.answers()
            return version

    async def show(self, tag: str) -> ModelInfo | None:
        try:
            return await super().show(tag)
        except UpstreamError as exc:
            raise _final_if_unreadable(exc) from exc

    async def warm(self, tag: str, think_off: bool) -> None:
        try:
            await super().warm(tag, think_off)
        except UpstreamError as exc:
            raise _final_if_unreadable(exc) from exc
        self.process.warmed(f"{self.served[tag]} ({tag})" if tag in self.served else tag)

    async def pull(self, tag: str) -> AsyncIterator[PullProgress]:
        """The engine has no hub: a model it lacks can only be installed, never pulled."""
        raise UpstreamError("no_such_model", f"the embedded engine has no model {tag}: {missing_model_hint(tag)}")
        yield  # an async generator, like every upstream's pull

    async def start(self) -> None:
        self.process.start()

    async def aclose(self) -> None:
        await super().aclose()
        await self.process.stop()

    def _unreachable(self, exc: BaseException) -> str:
        return f"the embedded engine at {self.base_url} is unreachable ({type(exc).__name__}: {exc})"


def _final_if_unreadable(exc: UpstreamError) -> UpstreamError:
    """A GGUF llama.cpp cannot read stays unreadable: an ERROR naming the file and the fix, said
    once, rather than a load retried (and logged) every few seconds."""
    at = exc.msg.find(UNREADABLE)
    if at < 0:
        return exc
    fix = "replace the file and restart llm-runner"
    return UpstreamError("no_such_model", f"the embedded engine {exc.msg[at:]}: {fix}")
