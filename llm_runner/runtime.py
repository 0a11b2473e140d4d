"""Everything one running service owns: settings, served models, upstreams, lifecycle, router,
admission and the generation loop.

Built synchronously by `create_app` (so configuration errors surface before the port opens) and
started/stopped by the app's lifespan.
"""

from __future__ import annotations

import json
import logging

from llm_runner.core.admission import Admission
from llm_runner.core.errors import ConfigurationError
from llm_runner.core.loop import GenerationLoop
from llm_runner.core.metrics import RunnerMetrics, bind_live
from llm_runner.core.request import ServedModel
from llm_runner.live.heartbeat_protocol import STATUS_READY, RunnerSnapshot
from llm_runner.live.wiring import registrations
from llm_runner.settings import DEFAULT_EMBEDDED_MODEL, DEFAULT_OLLAMA_MODEL, Settings
from llm_runner.upstream.base import ModelInfo
from llm_runner.upstream.build import build_upstreams, engine_available, residency_policy, resolve_backend
from llm_runner.upstream.canary import CanaryPolicy
from llm_runner.upstream.catalog import Catalog, check_identity
from llm_runner.upstream.hosts import DEFAULT_OLLAMA_HOST
from llm_runner.upstream.lifecycle import Lifecycle
from llm_runner.upstream.router import UpstreamRouter
from llm_runner.upstream.shares import split_slots
from llm_runner.upstream.states import OK

log = logging.getLogger("llm_runner")


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
            self.catalog = Catalog.for_settings(settings)
            self.models = [ServedModel(i, self.catalog.resolve(i)) for i in ids]
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self.by_id = {m.model_id: m for m in self.models}
        self._promised: dict[str, int] = {}  # per model: the capacity its registration last told
        self.upstreams = build_upstreams(settings, self.backend_kind, self.models)
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
            residency=residency_policy(settings, self.upstreams, self.catalog, self.models),
            canary=CanaryPolicy(settings.canary_idle_s, settings.canary_timeout_s, settings.canary_failures),
        )
        self.router = UpstreamRouter(self.upstreams, self.lifecycle)
        self.admission = Admission(self.router, settings.max_queue, settings.queue_timeout_s)
        self.lifecycle.listeners.append(self.admission.poke)
        self.lifecycle.residency.demand = self.admission
        tags = {m.model_id: m.tag for m in self.models}
        self.loop = GenerationLoop(tags, self.lifecycle, self.admission, self.metrics, settings)
        try:
            self.registrations = registrations(settings, self.models, self.live_state, self._told)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        for registration in self.registrations:
            self.lifecycle.listeners.append(registration.poke)
        bind_live(self.metrics, self.lifecycle, self.admission, self.loop.speed, self.advertised)

    def advertised(self) -> dict[str, int]:
        """The capacity each model's registration advertises now: the slots of the upstreams that are
        up, split between the models ready on each (loaded ones first), so that all registrations
        together never advertise more than the slots (go-livepeer counts capacity per registration)."""
        slots, serves = {}, {}
        for health in self.lifecycle.health.values():
            if health.down_since is None:
                ready = sorted((s for s in health.models.values() if s.status == OK), key=lambda s: not s.resident)
                slots[health.name], serves[health.name] = health.slots, [s.model_id for s in ready]
        return split_slots(slots, serves, strict=False)

    def live_state(self, model_id: str) -> tuple[bool, int, str]:
        """What a live-runner registration reports: ready (servable, not draining), its capacity now
        and its public metadata (measured speed and residency). A share that grows waits until the
        others' shrinking was told: heartbeats are not atomic, and the orchestrator must never hold
        capacities adding up past the slots, not even between two heartbeats."""
        slots = sum(h.slots for h in self.lifecycle.health.values() if h.down_since is None)
        others = sum(told for m, told in self._promised.items() if m != model_id)
        capacity = min(self.advertised().get(model_id, 0), slots - others)
        ready = self.lifecycle.is_ready(model_id) and not self.loop.draining and capacity > 0
        return ready, capacity if ready else 0, self.public_metadata(model_id)

    def _told(self, model_id: str, snap: RunnerSnapshot, accepted: bool) -> None:
        """What the orchestrator may hold for a model: exactly what it accepted, or, after a failed
        heartbeat (maybe applied, maybe not), the larger of the two."""
        told = snap.capacity if snap.status == STATUS_READY else 0
        self._promised[model_id] = told if accepted else max(told, self._promised.get(model_id, 0))

    def public_metadata(self, model_id: str) -> str:
        """What discovery shows of a model, under go-livepeer's 1 KiB: measured, not claimed."""
        states = self.lifecycle.states(model_id)
        speed = self.loop.speed.of(model_id)
        ttft = speed.ttft_p50_s
        facts = {
            "model": model_id,
            "tag": self.by_id[model_id].tag,
            "quantization": next((s.quantization for s in states if s.quantization), ""),
            "context": self.settings.num_ctx,
            "tokens_per_s": round(speed.tokens_per_s, 1) if speed.tokens_per_s else None,
            "ttft_p50_ms": round(ttft * 1000) if ttft is not None else None,
            "resident": any(s.resident for s in states),
        }
        return json.dumps(facts, separators=(",", ":"))

    def check_identity(self, model_id: str, info: ModelInfo) -> str | None:
        """None when the tag serves the model paid for; a mismatch on an operator's own mapping is
        served with a warning (they chose it), on a built-in row it is refused."""
        entry = self.catalog.entry(model_id)
        mismatch = check_identity(entry, info.details, info.model_info, capabilities=info.capabilities)
        if mismatch and not entry.enforced:
            log.warning("%s: %s", model_id, mismatch)
            return None
        return mismatch

    @property
    def backend_description(self) -> str:
        if self.backend_kind == "embedded":
            return "embedded llama.cpp engine on CPU (no Ollama found); for GPUs run Ollama and set OLLAMA_HOST"
        names = {"ollama": "Ollama", "openai": "OpenAI-compatible engine"}
        return ", ".join(f"{names.get(u.kind, u.kind)} at {u.name}" for u in self.upstreams)

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
