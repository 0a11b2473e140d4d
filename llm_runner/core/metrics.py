"""Prometheus metrics, one registry per app (no process globals for tests to reset).

The loop records every end of a request here; live gauges (queue, capacity, upstream and model
states) are read at scrape time from collectors the runtime registers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
