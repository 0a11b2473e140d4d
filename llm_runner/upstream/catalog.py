"""HuggingFace model id → Ollama tag.

go-livepeer and gateways name models by HF id, byte for byte; Ollama names them by library tag.
The built-in table holds common instruct models with the VRAM they need at Ollama's default
quantisation (weights + ~1 GB of KV cache and CUDA context at 4k context, one slot). Operators add
their own rows (file or env), and GGUF repos pass through as Ollama's `hf.co/...` names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CatalogEntry:
    hf_id: str
    tag: str
    vram_gb: float | None = None
    note: str = ""


BUILTIN: tuple[CatalogEntry, ...] = (
    CatalogEntry("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama3.1:8b", 6.0, "Livepeer's default llm model"),
    CatalogEntry("meta-llama/Llama-3.1-8B-Instruct", "llama3.1:8b", 6.0),
    CatalogEntry("meta-llama/Llama-3.2-1B-Instruct", "llama3.2:1b", 2.0),
    CatalogEntry("meta-llama/Llama-3.2-3B-Instruct", "llama3.2:3b", 3.0),
    CatalogEntry("meta-llama/Llama-3.3-70B-Instruct", "llama3.3:70b", 45.0),
    CatalogEntry("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5:0.5b", 1.0),
    CatalogEntry("Qwen/Qwen2.5-1.5B-Instruct", "qwen2.5:1.5b", 1.8),
    CatalogEntry("Qwen/Qwen2.5-3B-Instruct", "qwen2.5:3b", 2.8),
    CatalogEntry("Qwen/Qwen2.5-7B-Instruct", "qwen2.5:7b", 5.5),
    CatalogEntry("Qwen/Qwen2.5-14B-Instruct", "qwen2.5:14b", 10.5),
    CatalogEntry("Qwen/Qwen3-0.6B", "qwen3:0.6b", 1.2, "thinking model"),
    CatalogEntry("Qwen/Qwen3-1.7B", "qwen3:1.7b", 2.2, "thinking model"),
    CatalogEntry("Qwen/Qwen3-4B", "qwen3:4b", 3.5, "thinking model"),
    CatalogEntry("Qwen/Qwen3-8B", "qwen3:8b", 6.5, "thinking model"),
    CatalogEntry("Qwen/Qwen3-14B", "qwen3:14b", 11.0, "thinking model"),
    CatalogEntry("mistralai/Mistral-7B-Instruct-v0.3", "mistral:7b", 5.5),
    CatalogEntry("google/gemma-2-2b-it", "gemma2:2b", 2.6),
    CatalogEntry("google/gemma-2-9b-it", "gemma2:9b", 8.5, "KV-heavy: tight on 8 GB"),
    CatalogEntry("google/gemma-3-270m-it", "gemma3:270m", 0.8),
    CatalogEntry("google/gemma-3-1b-it", "gemma3:1b", 1.5),
    CatalogEntry("google/gemma-3-4b-it", "gemma3:4b", 4.5),
    CatalogEntry("google/gemma-3-12b-it", "gemma3:12b", 10.0),
    CatalogEntry("microsoft/Phi-3-mini-4k-instruct", "phi3:3.8b", 3.5),
    CatalogEntry("microsoft/Phi-3.5-mini-instruct", "phi3.5:3.8b", 4.0, "KV-heavy (no GQA)"),
    CatalogEntry("microsoft/Phi-4-mini-instruct", "phi4-mini:3.8b", 3.5),
    CatalogEntry("microsoft/phi-4", "phi4:14b", 11.0),
    CatalogEntry("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-r1:1.5b", 2.0, "thinking model"),
    CatalogEntry("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek-r1:7b", 5.5, "thinking model"),
    CatalogEntry("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "deepseek-r1:14b", 10.5, "thinking model"),
    CatalogEntry("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2:135m", 0.5, "bundled with the embedded engine"),
    CatalogEntry("HuggingFaceTB/SmolLM2-360M-Instruct", "smollm2:360m", 1.0),
    CatalogEntry("HuggingFaceTB/SmolLM2-1.7B-Instruct", "smollm2:1.7b", 2.5),
    CatalogEntry("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tinyllama:1.1b", 1.2),
)

_HF_TAG = re.compile(r"^(?:hf\.co|huggingface\.co)/[\w.-]+/[\w.-]+(?::[\w.-]+)?$")
_GGUF_REPO = re.compile(r"^([\w.-]+/[\w.-]+-GGUF)(:[\w.-]+)?$", re.IGNORECASE)


def model_slug(model_id: str) -> str:
    """Path-safe form of an HF id, for the per-model prefix `/models/<slug>/`."""
    return model_id.replace("/", "--")


class CatalogError(ValueError):
    """A model id we cannot map; the message says how to fix it."""


class Catalog:
    """The built-in table plus operator overrides (overrides win)."""

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.entries: dict[str, CatalogEntry] = {e.hf_id: e for e in BUILTIN}
        for hf_id, tag in (overrides or {}).items():
            known = self.entries.get(hf_id)
            self.entries[hf_id] = CatalogEntry(hf_id, tag, known.vram_gb if known else None, "override")

    @classmethod
    def load(cls, overrides: dict[str, str], override_file: Path | None) -> Catalog:
        merged: dict[str, str] = {}
        if override_file is not None:
            try:
                data = json.loads(override_file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise CatalogError(f"cannot read model map file {override_file}: {exc}") from exc
            if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()
            ):
                raise CatalogError(f'model map file {override_file} must be a JSON object {{"org/Model": "tag"}}')
            merged.update(data)
        merged.update(overrides)
        return cls(merged)

    def resolve(self, model_id: str) -> str:
        """The Ollama tag for `model_id`, or a CatalogError that says what to do."""
        entry = self.entries.get(model_id)
        if entry is not None:
            return entry.tag
        if _HF_TAG.match(model_id):
            return model_id
        gguf = _GGUF_REPO.match(model_id)
        if gguf:
            return f"hf.co/{gguf.group(1)}{gguf.group(2) or ''}"
        for hf_id in self.entries:
            if hf_id.lower() == model_id.lower():
                raise CatalogError(
                    f"unknown model id {model_id!r}: HF ids are case-sensitive, did you mean {hf_id!r}? "
                    "The id must match aiModels.json's model_id byte for byte."
                )
        as_tag = [e.hf_id for e in self.entries.values() if e.tag == model_id]
        hint = f" {model_id!r} is an Ollama tag; use its HF id {as_tag[0]!r}." if as_tag else ""
        raise CatalogError(
            f"unknown model id {model_id!r}: no Ollama tag is known for it.{hint} Add a mapping with "
            f'LLM_RUNNER_MODEL_MAP=\'{{"{model_id}": "<ollama tag>"}}\' or a JSON file named by '
            "LLM_RUNNER_MODEL_MAP_FILE, or use a GGUF repo id such as hf.co/<owner>/<repo>-GGUF:Q4_K_M. "
            "`llm-runner models` lists the built-in table."
        )

    def vram_gb(self, model_id: str) -> float | None:
        entry = self.entries.get(model_id)
        return entry.vram_gb if entry else None
