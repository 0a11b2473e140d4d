"""The live gauges of one running service, read at scrape time: queue, capacity, each model's and
upstream's state, what is loaded where (and how much on the CPU), swaps and loads, measured speed."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from llm_runner.core.admission import Admission
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.core.speed import Speed
from llm_runner.upstream.lifecycle import Lifecycle
from llm_runner.upstream.states import ERROR, LOADING, OK


def bind_metrics(
    metrics: RunnerMetrics,
    lifecycle: Lifecycle,
    admission: Admission,
    speed: Speed,
    advertised_now: Callable[[], dict[str, int]],
) -> None:
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
            for name in (LOADING, OK, ERROR):
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
                for name in (LOADING, OK, ERROR):
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
