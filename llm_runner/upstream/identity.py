"""Which weights an HF id names, and whether the tag Ollama serves for it holds them.

A catalog row promises a model: go-livepeer pays for `meta-llama/Meta-Llama-3.1-8B-Instruct`, and
the tag must serve that, not whatever the tag points to today. Ollama's tags have been re-pointed
to other models (`qwen3:4b` became Qwen3-4B-Thinking-2507) and re-quantised in place (`mistral:7b`
went from Q4_0 to Q4_K_M), so each row carries an `Identity` and the tag is checked against what
Ollama's `/api/show` reports: `details` (family, parameter_size, quantization_level) and
`model_info` (`general.architecture`, `general.parameter_count`, `<arch>.context_length`).

The check can only tell apart what this metadata tells apart: two fine-tunes of one base at one
quantisation (Phi-3-mini-128k and Phi-3.5-mini, Qwen2.5-7B and DeepSeek-R1-Distill-Qwen-7B) look
the same. It catches a tag that moved to another size, family, generation or quantisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Ollama's quantization_level names (GGUF file types), with the bits per weight llama.cpp reports
# for each: the weights of a model take about params × bits / 8 bytes.
QUANT_BITS: dict[str, float] = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.69, "Q5_K_S": 5.54,
    "Q5_1": 6.0, "Q5_0": 5.5, "Q4_K_M": 4.85, "Q4_K_S": 4.58, "Q4_1": 5.0, "Q4_0": 4.5, "Q3_K_L": 4.27,
    "Q3_K_M": 3.91, "Q3_K_S": 3.5, "Q2_K": 3.35, "IQ4_XS": 4.25, "IQ4_NL": 4.5, "IQ3_M": 3.66,
    "IQ3_S": 3.44, "IQ3_XS": 3.3, "IQ3_XXS": 3.06, "IQ2_M": 2.7, "IQ2_S": 2.5, "IQ2_XS": 2.31,
    "IQ2_XXS": 2.06, "IQ1_M": 1.75, "IQ1_S": 1.56, "MXFP4": 4.25,
}  # fmt: skip

_SIZE = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+(?:\.\d+)?)\s*([KMBT])\s*$", re.IGNORECASE)
_SCALE = {"K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}


def normalize_quant(name: str | None) -> str | None:
    """`q4_K_M` → `Q4_K_M`, `fp16` → `F16`; None for empty or Ollama's "unknown"."""
    if not name:
        return None
    quant = name.strip().upper()
    quant = {"FP16": "F16", "FP32": "F32"}.get(quant, quant)
    return None if quant in ("", "UNKNOWN") else quant


def quant_from_tag(tag: str) -> str | None:
    """The quantisation a tag names, if it names one: `…-q4_K_M`, `hf.co/…-GGUF:Q8_0`, `…-fp16`."""
    name = tag.rsplit("/", 1)[-1]
    if ":" not in name:
        return None
    suffix = name.rsplit(":", 1)[1]
    for candidate in (suffix, suffix.rsplit("-", 1)[-1]):
        quant = normalize_quant(candidate)
        if quant in QUANT_BITS:
            return quant
    return None


def parse_params(text: Any) -> float | None:
    """Ollama's parameter_size ("8.0B", "134.52M", "7B", "8x7B") in billions; None if unreadable."""
    match = _SIZE.match(str(text or ""))
    if not match:
        return None
    experts = int(match.group(1) or 1)
    return experts * float(match.group(2)) * _SCALE[match.group(3).upper()]


def format_params(billions: float) -> str:
    return f"{billions:.1f}B" if billions >= 1 else f"{billions * 1000:.4g}M"


@dataclass(frozen=True)
class Identity:
    """What a row promises about the weights behind its tag. None: not known, not checked.

    family: Ollama's `details.family`, the GGUF architecture ("llama", "qwen2", "phi3").
    params_b: parameters in billions as Ollama counts them (its `parameter_size`), within
      `tolerance` (relative), so "8.0B" and "7B" both pass for 7.6 but 14.8 does not.
    quantization: `details.quantization_level` of the tag, e.g. "Q4_K_M".
    context_length: `<arch>.context_length`, only where it tells variants apart (Phi-3-mini 4k vs
      128k, Qwen3-4B vs its 2507 releases, TinyLlama's 2048).
    thinking: whether `/api/show` lists the "thinking" capability, only where it tells variants
      apart (Qwen3-4B-Instruct-2507 vs -Thinking-2507); checked when capabilities are given.
    """

    family: str | None = None
    params_b: float | None = None
    quantization: str | None = None
    context_length: int | None = None
    thinking: bool | None = None
    tolerance: float = 0.10

    @property
    def known(self) -> bool:
        return any(v is not None for v in (self.family, self.params_b, self.quantization, self.context_length))

    def weights_gb(self) -> float | None:
        """Weights alone, from parameters × bits per weight (a floor for any VRAM figure)."""
        bits = QUANT_BITS.get(self.quantization or "")
        return self.params_b * bits / 8 if self.params_b is not None and bits else None

    def model(self) -> str:
        """Family, size, context and thinking: "llama 8.0B ctx 131072" ("?" when nothing is known)."""
        return self._describe(with_quant=False)

    def __str__(self) -> str:
        """Everything known: "llama 8.0B Q4_K_M ctx 131072"."""
        return self._describe(with_quant=True)

    def _describe(self, *, with_quant: bool) -> str:
        parts = [self.family, format_params(self.params_b) if self.params_b is not None else None]
        if with_quant:
            parts.append(self.quantization)
        if self.context_length is not None:
            parts.append(f"ctx {self.context_length}")
        if self.thinking is not None:
            parts.append("thinking" if self.thinking else "no thinking")
        return " ".join(p for p in parts if p) or "?"


def observed(details: dict[str, Any] | None, model_info: dict[str, Any] | None) -> Identity:
    """What Ollama says a tag is, as an Identity (fields it does not report stay None)."""
    details, model_info = details or {}, model_info or {}
    arch = model_info.get("general.architecture") or details.get("family") or None
    count = model_info.get("general.parameter_count")
    params = (
        count / 1e9 if isinstance(count, int | float) and count > 0 else parse_params(details.get("parameter_size"))
    )
    return Identity(
        family=details.get("family") or arch,
        params_b=params,
        quantization=normalize_quant(details.get("quantization_level")),
        context_length=_context_length(model_info, arch),
    )


def _context_length(model_info: dict[str, Any], arch: str | None) -> int | None:
    keys = [f"{arch}.context_length"] if arch else []
    keys += [k for k in model_info if k.endswith(".context_length")]
    for key in keys:
        value = model_info.get(key)
        if isinstance(value, int | float) and value > 0:
            return int(value)
    return None


def differences(
    expected: Identity,
    details: dict[str, Any] | None,
    model_info: dict[str, Any] | None,
    capabilities: list[str] | tuple[str, ...] | None = None,
) -> list[str]:
    """One "expected X, found Y" phrase per field that Ollama reports and that does not match."""
    details, model_info = details or {}, model_info or {}
    found = observed(details, model_info)
    out: list[str] = []
    names = {details.get("family"), model_info.get("general.architecture"), *(details.get("families") or ())}
    names = {n for n in names if n}
    if expected.family and names and expected.family not in names:
        out.append(f"family {found.family or '/'.join(sorted(names))} (expected {expected.family})")
    if expected.params_b is not None:
        readings = [found.params_b, parse_params(details.get("parameter_size"))]
        readings = [r for r in readings if r is not None]
        if readings and not any(abs(r - expected.params_b) <= expected.tolerance * expected.params_b for r in readings):
            tolerance = f"±{expected.tolerance:.0%}"
            out.append(
                f"{format_params(readings[0])} parameters (expected {format_params(expected.params_b)} {tolerance})"
            )
    if expected.quantization and found.quantization and found.quantization != normalize_quant(expected.quantization):
        out.append(f"quantisation {found.quantization} (expected {expected.quantization})")
    if expected.context_length and found.context_length and found.context_length != expected.context_length:
        out.append(f"context length {found.context_length} (expected {expected.context_length})")
    # no capabilities at all (an OpenAI-compatible engine, an Ollama before they were reported): unknown
    if expected.thinking is not None and capabilities and ("thinking" in capabilities) != expected.thinking:
        says = "lists" if "thinking" in capabilities else "does not list"
        out.append(f"it {says} the thinking capability (expected {'a' if expected.thinking else 'no'} thinking model)")
    return out
