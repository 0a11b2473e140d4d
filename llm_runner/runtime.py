"""Everything one running service owns: settings, served models, backend, lifecycle, limits.

Built synchronously by `create_app` (so configuration errors surface before the port opens) and
started/stopped by the app's lifespan.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import httpx

from llm_runner.core.admission import Admission
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.engine.launcher import EngineProcess
from llm_runner.settings import (
    DEFAULT_EMBEDDED_MODEL,
    DEFAULT_OLLAMA_HOST,
    DEFAULT_OLLAMA_MODEL,
    Settings,
)
from llm_runner.upstream.catalog import Catalog, model_slug
from llm_runner.upstream.lifecycle import ModelLifecycle
from llm_runner.upstream.ollama import OllamaBackend

log = logging.getLogger("llm_runner")


class ConfigurationError(ValueError):
    """Settings that cannot work; raised before the service starts listening."""


@dataclass(frozen=True)
class ServedModel:
    model_id: str
    tag: str

    @property
    def slug(self) -> str:
        return model_slug(self.model_id)


def engine_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def resolve_backend(settings: Settings) -> str:
    """`ollama` or `embedded`, following LLM_RUNNER_BACKEND (auto probes the default address)."""
    if settings.backend != "auto":
        return settings.backend
    if settings.ollama_host:
        return "ollama"
    try:
        httpx.get(f"{DEFAULT_OLLAMA_HOST}/api/version", timeout=1.0).raise_for_status()
        return "ollama"
    except httpx.HTTPError:
        return "embedded"


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backend_kind = resolve_backend(settings)
        if self.backend_kind == "embedded" and not engine_available():
            raise ConfigurationError(
                f"no Ollama answers at {settings.ollama_host or DEFAULT_OLLAMA_HOST} and the embedded engine "
                "is not installed: set OLLAMA_HOST to your Ollama, or install llama-cpp-python "
                "(pip install 'llm-runner[embedded]')"
            )
        default_id = DEFAULT_EMBEDDED_MODEL if self.backend_kind == "embedded" else DEFAULT_OLLAMA_MODEL
        ids = settings.model_ids or [default_id]
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"MODEL_ID lists a model twice: {settings.model_id}")
        try:
            catalog = Catalog.load(settings.model_map, settings.model_map_file)
            self.models = [ServedModel(i, catalog.resolve(i)) for i in ids]
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self.by_id = {m.model_id: m for m in self.models}
        self.admission = Admission(settings.concurrency, settings.max_queue, settings.queue_timeout_s)
        self.metrics = RunnerMetrics()
        self.draining = False
        self.engine: EngineProcess | None = None
        self.backend: OllamaBackend
        self.lifecycle: ModelLifecycle

    @property
    def backend_description(self) -> str:
        if self.backend_kind == "embedded":
            return "embedded llama.cpp engine on CPU (no Ollama found); for GPUs run Ollama and set OLLAMA_HOST"
        return f"ollama at {self.backend.base_url}"

    async def start(self) -> None:
        settings = self.settings
        if self.backend_kind == "embedded":
            log.warning(
                "NO OLLAMA: starting the embedded llama.cpp engine on CPU. It is for trying llm-runner "
                "and for tests; serve real traffic from Ollama on a GPU (set OLLAMA_HOST)."
            )
            self.engine = EngineProcess(settings)
            self.engine.start()
            base_url = self.engine.base_url
        else:
            base_url = settings.ollama_host or DEFAULT_OLLAMA_HOST
        self.backend = OllamaBackend(base_url, settings)
        self.lifecycle = ModelLifecycle(
            self.backend,
            {m.model_id: m.tag for m in self.models},
            pull=settings.pull,
            warm=settings.warm,
            think_off=settings.think == "off",
            interval_s=settings.health_interval_s,
        )
        self.metrics.bind(self.admission, self.lifecycle)
        self.lifecycle.start()
        log.info("serving %s via %s", ", ".join(f"{m.model_id} ({m.tag})" for m in self.models), base_url)

    async def stop(self) -> None:
        await self.lifecycle.stop()
        await self.backend.aclose()
        if self.engine is not None:
            await self.engine.stop()
