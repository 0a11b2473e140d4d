"""Prometheus metrics, one registry per app (no process globals for tests to reset).

The loop records every end of a request here; live gauges (queue, capacity, upstream and model
states, what is loaded where, swaps, measured speed) are read at scrape time (`bind_live`) from
the lifecycle and admission, through the narrow views below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from llm_runner.core.speed import Speed

STATES = ("LOADING", "OK", "ERROR")  # a model's states, as /health words them

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class RunnerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        counter, histogram = self._counter, self._histogram
        self.requests = counter("llm_runner_requests", "HTTP requests by endpoint and status.", "endpoint", "status")
        self.generations = counter(
            "llm_runner_generations",
            "Requests by how they ended: stop, length, error, cancelled (client gone), drained, busy, "
            "unavailable, invalid.",
            "model",
            "face",
            "reason",
        )
        self.ttft = histogram(
            "llm_runner_time_to_first_token_seconds",
            "From request arrival to the first token from the upstream.",
            "model",
        )
        self.duration = histogram(
            "llm_runner_generation_duration_seconds",
            "From request arrival to the end of the generation.",
            "model",
            "finish_reason",
        )
        self.completion_tokens = counter(
            "llm_runner_completion_tokens", "Tokens generated (the upstream's eval_count).", "model"
        )
        self.prompt_tokens = counter(
            "llm_runner_prompt_tokens", "Prompt tokens evaluated (prompt_eval_count).", "model"
        )
        self.context_full = counter(
            "llm_runner_context_full",
            "Generations that filled num_ctx (Ollama silently drops old messages to fit).",
            "model",
        )
        self.upstream_errors = counter("llm_runner_upstream_errors", "Upstream failures by kind.", "upstream", "kind")
        self.upstream_tokens = counter("llm_runner_upstream_tokens", "Tokens generated per upstream.", "upstream")

    def _counter(self, name: str, doc: str, *labels: str) -> Children:
        return Children(Counter(name, doc, labels, registry=self.registry))

    def _histogram(self, name: str, doc: str, *labels: str) -> Children:
        return Children(Histogram(name, doc, labels, buckets=_LATENCY_BUCKETS, registry=self.registry))

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        Gauge(name, doc, registry=self.registry).set_function(read)

    def collect(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        """Register families built at scrape time (labelled states)."""
        self.registry.register(_Families(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Children:
    """A labelled metric whose children are found once: prometheus_client's `labels()` rebuilds
    the key and takes a lock on every call, and the loop calls it several times per request."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class _Families(Collector):
    def __init__(self, read: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self.read = read

    def collect(self):  # type: ignore[override]
        yield from self.read()


class LiveStates(Protocol):
    """What the metrics read of the lifecycle: each model's state and each upstream's health
    (`health` values have name, in_flight, swaps, unplanned_unloads, down_for_s() and `models`,
    whose values have model_id, status, resident, offload and load_s)."""

    tags: Mapping[str, str]
    flips: Mapping[str, int]
    health: Mapping[str, Any]

    def status(self, model_id: str | None = None) -> str: ...

    def capacity(self, model_id: str | None = None) -> int: ...


class Queue(Protocol):
    in_flight: int
    waiting: int


def bind_live(
    metrics: RunnerMetrics,
    lifecycle: LiveStates,
    admission: Queue,
    speed: Speed,
    advertised_now: Callable[[], dict[str, int]],
) -> None:
    """Register the gauges and families read at scrape time from the running service."""
    metrics.gauge("llm_runner_in_flight", "Generations running.", lambda: admission.in_flight)
    metrics.gauge("llm_runner_queued", "Requests waiting for a generation slot.", lambda: admission.waiting)
    metrics.gauge("llm_runner_capacity", "Slots on upstreams with a ready model.", lambda: lifecycle.capacity())

    def families():
        def gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=list(labels))

        def counter(name: str, doc: str, *labels: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=list(labels))

        model_state = gauge("llm_runner_model_state", "1 for each model's current state.", "model", "state")
        upstream_state = gauge(
            "llm_runner_upstream_state", "1 for each upstream × model state.", "upstream", "model", "state"
        )
        down = gauge("llm_runner_upstream_down_seconds", "How long each upstream has been down (0: up).", "upstream")
        in_flight = gauge("llm_runner_upstream_in_flight", "Generations running per upstream.", "upstream")
        flips = counter("llm_runner_readiness_flips", "Times each model went from ready to not ready or back.", "model")
        resident = gauge(
            "llm_runner_model_resident", "1 while the model is loaded on the upstream (/api/ps).", "upstream", "model"
        )
        offload = gauge(
            "llm_runner_model_offload_ratio",
            "Share of the loaded model on the CPU (0: all on the GPU).",
            "upstream",
            "model",
        )
        load_s = gauge("llm_runner_model_load_seconds", "The model's last load, in seconds.", "upstream", "model")
        swaps = counter("llm_runner_model_swaps", "Model swaps the runner made on the upstream.", "upstream")
        unplanned = counter(
            "llm_runner_unplanned_unloads",
            "Served models the upstream unloaded without the runner asking (Ollama's own eviction).",
            "upstream",
        )
        advertised = gauge(
            "llm_runner_advertised_capacity", "Requests at once each model's registration advertises.", "model"
        )
        tokens_per_s = gauge(
            "llm_runner_model_tokens_per_second", "Measured decode speed (moving average over requests).", "model"
        )
        ttft = gauge("llm_runner_model_ttft_p50_seconds", "Median time to first token over the last requests.", "model")
        shares = advertised_now()
        for model_id in lifecycle.tags:
            status = lifecycle.status(model_id)
            for name in STATES:
                model_state.add_metric([model_id, name], 1.0 if status == name else 0.0)
            flips.add_metric([model_id], lifecycle.flips[model_id])
            advertised.add_metric([model_id], shares.get(model_id, 0))
            measured = speed.of(model_id)
            if measured.tokens_per_s is not None:
                tokens_per_s.add_metric([model_id], measured.tokens_per_s)
            if measured.ttft_p50_s is not None:
                ttft.add_metric([model_id], measured.ttft_p50_s)
        for health in lifecycle.health.values():
            down.add_metric([health.name], health.down_for_s())
            in_flight.add_metric([health.name], health.in_flight)
            swaps.add_metric([health.name], health.swaps)
            unplanned.add_metric([health.name], health.unplanned_unloads)
            for state in health.models.values():
                for name in STATES:
                    upstream_state.add_metric([health.name, state.model_id, name], 1.0 if state.status == name else 0.0)
                resident.add_metric([health.name, state.model_id], 1.0 if state.resident else 0.0)
                offload.add_metric([health.name, state.model_id], state.offload)
                if state.load_s is not None:
                    load_s.add_metric([health.name, state.model_id], state.load_s)
        return [
            model_state,
            upstream_state,
            down,
            in_flight,
            flips,
            resident,
            offload,
            load_s,
            swaps,
            unplanned,
            advertised,
            tokens_per_s,
            ttft,
        ]

    metrics.collect(families)
