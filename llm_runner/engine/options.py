"""Ollama request options, `format` and logprobs → llama.cpp settings; refusals for the rest.

Honoured, per request (`options`):
  num_predict, temperature, top_k, top_p, min_p, typical_p, seed, stop, repeat_penalty,
  repeat_last_n (-1 = the whole context, 0 = off), frequency_penalty, presence_penalty,
  mirostat (0, 1, 2), mirostat_tau, mirostat_eta.
Honoured at load time (a different value reloads the model, as in Ollama):
  num_ctx, num_batch, num_thread, use_mmap; num_gpu and main_gpu where this llama.cpp build
  can offload to a GPU (on a CPU-only build only num_gpu 0 / -1 and main_gpu 0 are accepted).
Accepted with no effect: num_keep (it only matters when Ollama shifts the context; this engine
  never shifts, a full context ends the answer with done_reason "length").
Refused with 400 {"error": ...} (Ollama logs and ignores them; ignoring would be a silent lie):
  tfs_z, penalize_newline (both removed from llama.cpp), low_vram, numa, f16_kv, use_mlock,
  vocab_only, logits_all, embedding_only, draft_num_predict (no draft model here), any other name.
Badly typed values are refused as Ollama refuses them: 500, `option "x" must be of type ...`.

Top level: `format` "json" → llama.cpp's JSON grammar; a JSON schema object → a grammar made from
the schema; anything else → 400. `logprobs`/`top_logprobs` (0-20) → per-token log probabilities
from the raw logits, as Ollama computes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

DEFAULT_NUM_CTX = 4096
DEFAULT_NUM_BATCH = 512

_INT, _FLOAT, _BOOL, _STRINGS = "integer", "float32", "boolean", "strings"
RUNTIME = {
    "num_predict": _INT, "temperature": _FLOAT, "top_k": _INT, "top_p": _FLOAT, "min_p": _FLOAT,
    "typical_p": _FLOAT, "seed": _INT, "stop": _STRINGS, "repeat_penalty": _FLOAT,
    "repeat_last_n": _INT, "frequency_penalty": _FLOAT, "presence_penalty": _FLOAT,
    "mirostat": _INT, "mirostat_tau": _FLOAT, "mirostat_eta": _FLOAT,
}  # fmt: skip
LOAD = {"num_ctx": _INT, "num_batch": _INT, "num_thread": _INT, "use_mmap": _BOOL, "num_gpu": _INT, "main_gpu": _INT}
NO_EFFECT = {"num_keep": _INT}
REFUSED = {
    "tfs_z": "tail-free sampling was removed from llama.cpp",
    "penalize_newline": "llama.cpp no longer has a separate newline penalty",
    "low_vram": "not a llama.cpp setting any more",
    "numa": "NUMA placement is set when the engine starts, not per request",
    "f16_kv": "not a llama.cpp setting any more",
    "use_mlock": "memory locking is not supported by this engine",
    "vocab_only": "this engine always loads the whole model",
    "logits_all": "not a per-request setting",
    "embedding_only": "this engine has no embedding endpoint",
    "draft_num_predict": "this engine has no draft model",
}


class OllamaError(Exception):
    """A request the engine refuses: `status` and Ollama's `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class LoadOptions:
    """What a model is loaded with; a request asking for other values reloads it."""

    n_ctx: int = DEFAULT_NUM_CTX
    n_batch: int = DEFAULT_NUM_BATCH
    n_threads: int = 0  # 0: the engine's default
    use_mmap: bool = True
    n_gpu_layers: int = 0
    main_gpu: int = 0


@dataclass(frozen=True)
class Sampling:
    num_predict: int = -1
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    seed: int = -1
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF text, from `format`
    logprobs: bool = False
    top_logprobs: int = 0


def _typed(name: str, kind: str, value: Any) -> Any:
    """Ollama's api.Options.FromMap rules: JSON numbers fit int fields, nothing else converts."""
    if kind == _INT and isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 2**63:
        return int(value)
    if kind == _FLOAT and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == _BOOL and isinstance(value, bool):
        return value
    if kind == _STRINGS:
        if not isinstance(value, list):
            raise OllamaError(500, f'option "{name}" must be of type array')
        if not all(isinstance(item, str) for item in value):
            raise OllamaError(500, f'option "{name}" must be of an array of strings')
        return tuple(value)
    raise OllamaError(500, f'option "{name}" must be of type {kind}')


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options, typed; raises OllamaError for a name the engine will not honour or a bad type."""
    typed: dict[str, Any] = {}
    for name, value in options.items():
        if name in REFUSED:
            raise OllamaError(400, f'option "{name}" is not supported by this engine: {REFUSED[name]}')
        kind = RUNTIME.get(name) or LOAD.get(name) or NO_EFFECT.get(name)
        if kind is None:
            raise OllamaError(400, f'invalid option provided: "{name}" (this engine refuses options it does not know)')
        if value is not None:
            typed[name] = _typed(name, kind, value)
    if typed.get("mirostat", 0) not in (0, 1, 2):
        raise OllamaError(400, 'option "mirostat" must be 0, 1 or 2')
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    if not gpu and (typed.get("num_gpu", 0) > 0 or typed.get("main_gpu", 0) != 0):
        name = "num_gpu" if typed.get("num_gpu", 0) > 0 else "main_gpu"
        raise OllamaError(400, f'option "{name}" cannot be honoured: this llama.cpp build has no GPU offload')
    return typed


def load_options(typed: dict[str, Any]) -> LoadOptions:
    def positive(name: str, default: int) -> int:
        value = typed.get(name, 0)
        return value if value > 0 else default

    return LoadOptions(
        n_ctx=positive("num_ctx", DEFAULT_NUM_CTX),
        n_batch=positive("num_batch", DEFAULT_NUM_BATCH),
        n_threads=positive("num_thread", 0),
        use_mmap=typed.get("use_mmap", True),
        n_gpu_layers=max(typed.get("num_gpu", 0), -1) if llama_cpp.llama_supports_gpu_offload() else 0,
        main_gpu=typed.get("main_gpu", 0),
    )


def grammar_for(fmt: Any) -> str | None:
    """GBNF for Ollama's `format`: None/"" → none, "json" → any JSON object, a dict → its schema."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return JSON_GBNF
    if not isinstance(fmt, dict):
        raise OllamaError(400, 'invalid format: expected "json" or a valid JSON schema')
    try:
        return json_schema_to_gbnf(json.dumps(fmt))
    except Exception as exc:  # the converter raises whatever its input provokes
        raise OllamaError(400, f"invalid JSON schema in format: {exc}") from exc


def sampling(typed: dict[str, Any], *, fmt: Any = None, logprobs: bool = False, top_logprobs: int = 0) -> Sampling:
    if not 0 <= top_logprobs <= 20:
        raise OllamaError(400, "top_logprobs must be between 0 and 20")
    runtime = {k: v for k, v in typed.items() if k in RUNTIME}
    return Sampling(**runtime, grammar=grammar_for(fmt), logprobs=logprobs, top_logprobs=top_logprobs)


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber, as /api/show prints parameter_size ("134.52M", "8.0B")."""
    for size, unit, places in ((1_000_000_000, "B", 1), (1_000_000, "M", 2)):
        if n >= size:
            number = n / size
            return f"{number:.0f}{unit}" if number == int(number) else f"{number:.{places}f}{unit}"
    return f"{n / 1000:.0f}K" if n >= 1000 else str(n)
