"""Everything one running service owns: settings, served models, upstreams, lifecycle, router,
admission and the generation loop.

Built synchronously by `create_app` (so configuration errors surface before the port opens) and
started/stopped by the app's lifespan.
"""

from __future__ import annotations

import importlib.util
import logging

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from llm_runner.core.admission import Admission
from llm_runner.core.loop import GenerationLoop
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.core.request import ServedModel
from llm_runner.live.wiring import registrations
from llm_runner.settings import (
    DEFAULT_EMBEDDED_MODEL,
    DEFAULT_OLLAMA_HOST,
    DEFAULT_OLLAMA_MODEL,
    Settings,
    UpstreamSpec,
)
from llm_runner.upstream.base import ModelInfo, Upstream
from llm_runner.upstream.catalog import Catalog, check_identity
from llm_runner.upstream.lifecycle import Lifecycle
from llm_runner.upstream.ollama import OllamaUpstream
from llm_runner.upstream.router import UpstreamRouter
from llm_runner.upstream.states import ERROR, LOADING, OK

log = logging.getLogger("llm_runner")


class ConfigurationError(ValueError):
    """Settings that cannot work; raised before the service starts listening."""


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
            self.catalog = Catalog.load(settings.model_map, settings.model_map_file)
            self.models = [ServedModel(i, self.catalog.resolve(i)) for i in ids]
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self.by_id = {m.model_id: m for m in self.models}
        self.upstreams = self._build_upstreams()
        self.metrics = RunnerMetrics()
        self.lifecycle = Lifecycle(
            self.upstreams,
            {m.model_id: m.tag for m in self.models},
            pull=settings.pull,
            warm=settings.warm,
            think_off=settings.think == "off",
            interval_s=settings.health_interval_s,
            startup_grace_s=settings.startup_grace_s,
            identity=self.check_identity,
        )
        self.router = UpstreamRouter(self.upstreams, self.lifecycle)
        self.admission = Admission(self.router, settings.max_queue, settings.queue_timeout_s)
        self.lifecycle.listeners.append(self.admission.poke)
        tags = {m.model_id: m.tag for m in self.models}
        self.loop = GenerationLoop(tags, self.lifecycle, self.admission, self.metrics, settings)
        try:
            self.registrations = registrations(settings, self.models, self.live_state)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        for registration in self.registrations:
            self.lifecycle.listeners.append(registration.poke)
        self._bind_metrics()

    def live_state(self, model_id: str) -> tuple[bool, int]:
        """What a live-runner registration reports: ready (servable, not draining) and ready slots."""
        ready = self.lifecycle.is_ready(model_id) and not self.loop.draining
        return ready, self.lifecycle.capacity(model_id) if ready else 0

    def check_identity(self, model_id: str, info: ModelInfo) -> str | None:
        """None when the tag serves the model paid for; a mismatch on an operator's own mapping is
        served with a warning (they chose it), on a built-in row it is refused."""
        entry = self.catalog.entry(model_id)
        mismatch = check_identity(entry, info.details, info.model_info, capabilities=info.capabilities)
        if mismatch and not entry.enforced:
            log.warning("%s: %s", model_id, mismatch)
            return None
        return mismatch

    def _build_upstreams(self) -> list[Upstream]:
        settings = self.settings
        if self.backend_kind == "embedded":
            from llm_runner.upstream.embedded import EmbeddedUpstream

            return [EmbeddedUpstream(settings, settings.default_slots)]
        specs = settings.upstreams or [UpstreamSpec(DEFAULT_OLLAMA_HOST)]
        unknown = sorted({m for s in specs for m in s.models or ()} - set(self.by_id))
        if unknown:
            raise ConfigurationError(f"OLLAMA_HOST names models this runner does not serve: {', '.join(unknown)}")
        for model in self.models:
            if not any(s.models is None or model.model_id in s.models for s in specs):
                raise ConfigurationError(f"no upstream in OLLAMA_HOST serves {model.model_id}")
        return [
            OllamaUpstream(s.url, settings, slots=s.parallel or settings.default_slots, model_ids=s.models)
            for s in specs
        ]

    @property
    def backend_description(self) -> str:
        if self.backend_kind == "embedded":
            return "embedded llama.cpp engine on CPU (no Ollama found); for GPUs run Ollama and set OLLAMA_HOST"
        return "ollama at " + ", ".join(u.name for u in self.upstreams)

    def begin_drain(self) -> None:
        if not self.loop.draining:
            log.warning(
                "shutting down: draining %d in-flight generation(s) for up to %gs",
                self.admission.in_flight,
                self.settings.drain_timeout_s,
            )
        self.loop.drain(self.settings.drain_timeout_s)
        for registration in self.registrations:
            registration.poke()  # tell the orchestrator now: no new sessions

    async def start(self) -> None:
        if self.backend_kind == "embedded":
            log.warning(
                "NO OLLAMA: starting the embedded llama.cpp engine on CPU. It is for trying llm-runner "
                "and for tests; serve real traffic from Ollama on a GPU (set OLLAMA_HOST)."
            )
        for upstream in self.upstreams:
            await upstream.start()
        self.lifecycle.start()
        for registration in self.registrations:
            await registration.start()
        served = ", ".join(f"{m.model_id} ({m.tag})" for m in self.models)
        log.info("serving %s via %s", served, ", ".join(u.name for u in self.upstreams))

    async def stop(self) -> None:
        for registration in self.registrations:
            await registration.stop()  # unregister: the orchestrator stops routing at once
        await self.lifecycle.stop()
        for upstream in self.upstreams:
            await upstream.aclose()

    def _bind_metrics(self) -> None:
        metrics, lifecycle, admission = self.metrics, self.lifecycle, self.admission
        metrics.gauge("llm_runner_in_flight", "Generations running.", lambda: admission.in_flight)
        metrics.gauge("llm_runner_queued", "Requests waiting for a generation slot.", lambda: admission.waiting)
        metrics.gauge("llm_runner_capacity", "Slots on upstreams with a ready model.", lambda: lifecycle.capacity())

        def families():
            model_state = GaugeMetricFamily(
                "llm_runner_model_state", "1 for each model's current state.", labels=["model", "state"]
            )
            upstream_state = GaugeMetricFamily(
                "llm_runner_upstream_state",
                "1 for each upstream × model state.",
                labels=["upstream", "model", "state"],
            )
            down = GaugeMetricFamily(
                "llm_runner_upstream_down_seconds", "How long each upstream has been down (0: up).", labels=["upstream"]
            )
            in_flight = GaugeMetricFamily(
                "llm_runner_upstream_in_flight", "Generations running per upstream.", labels=["upstream"]
            )
            flips = CounterMetricFamily(
                "llm_runner_readiness_flips",
                "Times each model went from ready to not ready or back.",
                labels=["model"],
            )
            for model_id in lifecycle.tags:
                status = lifecycle.status(model_id)
                for name in (LOADING, OK, ERROR):
                    model_state.add_metric([model_id, name], 1.0 if status == name else 0.0)
                flips.add_metric([model_id], lifecycle.flips[model_id])
            for health in lifecycle.health.values():
                down.add_metric([health.name], health.down_for_s())
                in_flight.add_metric([health.name], health.in_flight)
                for state in health.models.values():
                    for name in (LOADING, OK, ERROR):
                        upstream_state.add_metric(
                            [health.name, state.model_id, name], 1.0 if state.status == name else 0.0
                        )
            return [model_state, upstream_state, down, in_flight, flips]

        metrics.collect(families)
