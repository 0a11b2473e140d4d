"""The upstreams a runner's settings name: which backend (Ollama, an engine list, or the embedded
engine when no Ollama answers), one upstream per OLLAMA_HOST entry, and the residency policy
that says which models fit together on each."""

from __future__ import annotations

import importlib.util
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from llm_runner.core.errors import ConfigurationError
from llm_runner.core.hardware import gpu_info
from llm_runner.core.request import ServedModel
from llm_runner.settings import Settings
from llm_runner.upstream.base import Upstream
from llm_runner.upstream.catalog import Catalog
from llm_runner.upstream.hosts import DEFAULT_OLLAMA_HOST
from llm_runner.upstream.kinds import make_upstream
from llm_runner.upstream.residency import ResidencyPolicy


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def build_upstreams(settings: Settings, backend: str, models: Sequence[ServedModel]) -> list[Upstream]:
    """One upstream per OLLAMA_HOST entry (the embedded engine: one), each serving what it may."""
    if backend == "embedded":
        from llm_runner.upstream.embedded import EmbeddedUpstream

        return [EmbeddedUpstream(settings, settings.default_slots, {m.tag: m.model_id for m in models})]
    specs = settings.upstreams
    served = {m.model_id for m in models}
    unknown = sorted({m for s in specs for m in s.models or ()} - served)
    if unknown:
        raise ConfigurationError(f"OLLAMA_HOST names models this runner does not serve: {', '.join(unknown)}")
    for model in models:
        if not any(s.models is None or model.model_id in s.models for s in specs):
            raise ConfigurationError(f"no upstream in OLLAMA_HOST serves {model.model_id}")
    tags = {m.model_id: m.tag for m in models}
    return [make_upstream(s, settings, tags) for s in specs]


def residency_policy(
    settings: Settings, upstreams: Sequence[Upstream], catalog: Catalog, models: Sequence[ServedModel]
) -> ResidencyPolicy:
    """What decides which models fit together: the catalog's VRAM per model, and per upstream the
    operator's figure, else NVML's for a lone Ollama on this machine, else nothing (learned)."""
    specs = {s.url: s for s in settings.upstreams}
    vram: dict[str, tuple[int | None, str]] = {}
    for upstream in upstreams:
        spec = specs.get(upstream.name)
        if upstream.kind != "ollama":  # an engine, or the embedded one, manages its own memory
            continue
        if spec is not None and spec.vram_mb:
            vram[upstream.name] = (spec.vram_mb, "OLLAMA_HOST vram_mb")
        elif settings.vram_mb:
            vram[upstream.name] = (settings.vram_mb, "LLM_RUNNER_VRAM_MB")
        elif len(upstreams) == 1 and is_loopback(upstream.name):
            gpus = gpu_info()
            if len(gpus) == 1:
                vram[upstream.name] = (int(gpus["0"]["memory_total"]) >> 20, "NVML")
    need = {m.model_id: round(gb * 1024) if (gb := catalog.entry(m.model_id).vram_gb) else None for m in models}
    return ResidencyPolicy(
        need_mb=need,
        vram_mb=vram,
        allow_offload=settings.allow_offload,
        swap_wait_s=settings.swap_wait_s,
        max_swaps_per_minute=settings.max_swaps_per_minute,
    )
