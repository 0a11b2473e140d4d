"""The embedded llama.cpp engine as an upstream: an Ollama-API server in a supervised child
process, reached over the same HTTP path as a real Ollama. Unlike an Ollama server it tells the
lifecycle when its process exits and when it is started again, so the model is re-warmed and
health is honest meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from llm_runner.core.errors import UpstreamError
from llm_runner.engine.launcher import EngineProcess
from llm_runner.engine.registry import missing_model_hint
from llm_runner.settings import Settings
from llm_runner.upstream.base import PullProgress
from llm_runner.upstream.ollama import OllamaUpstream


class EmbeddedUpstream(OllamaUpstream):
    kind = "embedded"

    def __init__(self, settings: Settings, slots: int) -> None:
        self.process = EngineProcess(settings)
        super().__init__(self.process.base_url, settings, slots=slots)

    def watch(self, notify: Callable[[bool], None]) -> None:
        self.process.notify = notify

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
