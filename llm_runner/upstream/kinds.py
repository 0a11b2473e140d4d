"""One upstream per OLLAMA_HOST entry, of the kind the entry names: serve and doctor build them here,
so both talk to an engine the same way."""

from __future__ import annotations

from collections.abc import Mapping

from llm_runner.settings import Settings
from llm_runner.upstream.base import Upstream
from llm_runner.upstream.hosts import UpstreamSpec
from llm_runner.upstream.ollama import OllamaUpstream
from llm_runner.upstream.openai_engine import OpenAIUpstream


def make_upstream(spec: UpstreamSpec, settings: Settings, tags: Mapping[str, str]) -> Upstream:
    """`tags`: the runner's served models (HF id → tag). An OpenAI engine is asked for the HF id
    (its --served-model-name in vLLM's docs) unless the entry names it with served_model=."""
    slots = spec.parallel or settings.default_slots
    if spec.kind == "openai":
        served = {
            tag: spec.served_model or model_id
            for model_id, tag in tags.items()
            if spec.models is None or model_id in spec.models
        }
        key = spec.api_key or settings.upstream_api_key  # the entry's own, else the one for every engine
        return OpenAIUpstream(spec.url, settings, slots=slots, model_ids=spec.models, served=served, api_key=key)
    return OllamaUpstream(spec.url, settings, slots=slots, model_ids=spec.models)
