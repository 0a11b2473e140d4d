"""Prometheus metrics, one registry per app (no process globals for tests to reset)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llm_runner.core.admission import Admission
from llm_runner.upstream.lifecycle import ERROR, LOADING, OK, ModelLifecycle

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class RunnerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm_runner_requests", "HTTP requests by endpoint and status.", ["endpoint", "status"], registry=r
        )
        self.ttft = Histogram(
            "llm_runner_time_to_first_token_seconds",
            "From request arrival to the first token from the backend.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "llm_runner_generation_duration_seconds",
            "From request arrival to the end of the generation.",
            ["model", "finish_reason"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.completion_tokens = Counter(
            "llm_runner_completion_tokens", "Tokens generated (Ollama's eval_count).", ["model"], registry=r
        )
        self.prompt_tokens = Counter(
            "llm_runner_prompt_tokens",
            "Prompt tokens evaluated (Ollama's prompt_eval_count).",
            ["model"],
            registry=r,
        )
        self.context_full = Counter(
            "llm_runner_context_full",
            "Generations that filled num_ctx (Ollama silently drops old messages to fit).",
            ["model"],
            registry=r,
        )
        self.upstream_errors = Counter("llm_runner_upstream_errors", "Ollama failures by kind.", ["kind"], registry=r)

    def bind(self, admission: Admission, lifecycle: ModelLifecycle) -> None:
        """Live gauges read at scrape time."""
        in_flight = Gauge("llm_runner_in_flight", "Generations running.", registry=self.registry)
        in_flight.set_function(lambda: admission.in_flight)
        queued = Gauge("llm_runner_queued", "Requests waiting for a generation slot.", registry=self.registry)
        queued.set_function(lambda: admission.waiting)
        self.registry.register(_ModelStateCollector(lifecycle))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ModelStateCollector(Collector):
    def __init__(self, lifecycle: ModelLifecycle) -> None:
        self.lifecycle = lifecycle

    def collect(self):  # type: ignore[override]
        family = GaugeMetricFamily(
            "llm_runner_model_state", "1 for each model's current state.", labels=["model", "state"]
        )
        for state in self.lifecycle.states.values():
            for name in (LOADING, OK, ERROR):
                family.add_metric([state.model_id, name], 1.0 if state.status == name else 0.0)
        yield family
