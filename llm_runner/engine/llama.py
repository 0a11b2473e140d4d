"""Token generation with llama-cpp-python, off the event loop, one generation per model at a time.

The chat template comes from the GGUF itself. Tokens are produced one by one so that counts are
exact (prompt_eval_count, eval_count), stop strings are honoured across token boundaries, and a
client that goes away stops the loop within a token. Sampling settings, `format` grammars and
logprobs come from engine/options.py.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama, LlamaGrammar
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from llm_runner.engine.llama_log import load_errors, reason
from llm_runner.engine.options import LoadOptions, Sampling, human_number
from llm_runner.engine.registry import UNREADABLE, EngineModel

# GGUF general.file_type → Ollama's quantization_level names (llama_ftype).
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4",
}  # fmt: skip
# model_info keys copied as text; every "<arch>.*" key is copied too, as a number where it is one.
_GENERAL = ("general.basename", "general.size_label", "general.finetune", "general.name", "general.type",
            "general.license", "general.organization", "general.quantization_version", "general.file_type")  # fmt: skip

Emit = Callable[[str, list[dict[str, Any]]], None]


@dataclass
class Result:
    reason: str = "stop"
    prompt_tokens: int = 0
    eval_count: int = 0
    load_ns: int = 0
    prompt_ns: int = 0
    eval_ns: int = 0


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class UnreadableModel(Exception):
    """llama.cpp cannot read the GGUF file itself (missing, truncated, not a GGUF)."""


def train_context(path: str) -> int | None:
    """The GGUF's `<arch>.context_length`, read without loading the weights (None if absent).
    Being the first to open the file, it raises UnreadableModel, with llama.cpp's reason."""
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with load_errors() as errors:
        model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        raise UnreadableModel(f"{UNREADABLE} {path}: {reason(errors)}")
    buffer = ctypes.create_string_buffer(256)

    def meta(key: str) -> str | None:
        found = llama_cpp.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer))
        return buffer.value.decode() if found >= 0 else None

    try:
        value = meta(f"{meta('general.architecture')}.context_length")
        return int(value) if value and value.isdigit() else None
    finally:
        llama_cpp.llama_model_free(model)


class LoadedModel:
    def __init__(self, model: EngineModel, options: LoadOptions, n_threads: int | None) -> None:
        started = time.perf_counter_ns()
        threads = options.n_threads or n_threads or os.cpu_count() or 1
        self.model, self.options, self.n_ctx = model, options, options.n_ctx
        with load_errors() as errors:
            try:
                self.llm = Llama(
                    str(model.path),
                    n_ctx=options.n_ctx,
                    n_batch=options.n_batch,
                    n_threads=threads,
                    n_threads_batch=threads,
                    use_mmap=options.use_mmap,
                    n_gpu_layers=options.n_gpu_layers,
                    main_gpu=options.main_gpu,
                    verbose=False,
                )
            except ValueError as exc:  # llama-cpp-python's "Failed to load model from file: <path>"
                raise ValueError(f"{exc}: {reason(errors)}") from exc
        self.load_ns = time.perf_counter_ns() - started
        meta = self.llm.metadata
        self.metadata = meta
        self.template = meta.get("tokenizer.chat_template", "")
        internals = self.llm._model
        self._vocab = internals.vocab
        self._n_vocab = self.llm.n_vocab()
        self._formatter = (
            Jinja2ChatFormatter(
                self.template,
                eos_token=internals.token_get_text(internals.token_eos()),
                bos_token=internals.token_get_text(internals.token_bos()),
                add_generation_prompt=True,
            )
            if self.template
            else None
        )
        self.lock = asyncio.Lock()  # one generation at a time on this Llama object

    @property
    def family(self) -> str:
        return self.metadata.get("general.architecture", "unknown")

    @property
    def parameter_count(self) -> int:
        return int(self.llm._model.n_params())

    @property
    def parameter_size(self) -> str:
        return self.metadata.get("general.size_label") or human_number(self.parameter_count)

    @property
    def quantization(self) -> str:
        return FILE_TYPES.get(int(self.metadata.get("general.file_type", -1)), "unknown")

    def model_info(self) -> dict[str, Any]:
        """/api/show model_info: the GGUF's general.* identity and "<arch>.*" keys (no tokenizer)."""
        arch = self.family
        info: dict[str, Any] = {"general.architecture": arch, "general.parameter_count": self.parameter_count}
        for key in _GENERAL:
            if key in self.metadata:
                value = self.metadata[key]
                info[key] = _number(value) if key.endswith(("_version", "file_type")) else value
        for key, value in sorted(self.metadata.items()):
            if key.startswith(f"{arch}."):
                info[key] = _number(value)
        return info

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        if self._formatter is None:
            text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
            return self.llm.tokenize(text.encode(), add_bos=True, special=False)
        rendered = self._formatter(messages=messages)
        return self.llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)

    def check_grammar(self, grammar: str) -> None:
        """Raise ValueError when llama.cpp cannot parse the grammar (it would fail mid-generation)."""
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        if not sampler:
            raise ValueError("llama.cpp could not parse the grammar made from format")
        llama_cpp.llama_sampler_free(sampler)

    def _logprob(self, token: int, piece: bytes, top: int) -> dict[str, Any]:
        """Ollama's logprob entry: log-softmax of the raw logits that the token was sampled from."""
        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        logits -= logits.max()
        logprobs = logits - np.log(np.exp(logits).sum())
        entry: dict[str, Any] = {"token": piece.decode(errors="replace"), "logprob": float(logprobs[token])}
        entry["bytes"] = list(piece)
        if top > 0:
            best = np.argpartition(-logprobs, top)[:top]
            best = best[np.argsort(-logprobs[best])]
            entry["top_logprobs"] = []
            for other in best.tolist():
                text = self.llm.detokenize([other])
                entry["top_logprobs"].append(
                    {"token": text.decode(errors="replace"), "logprob": float(logprobs[other]), "bytes": list(text)}
                )
        return entry

    def run(self, prompt: list[int], sampling: Sampling, emit: Emit, cancel: threading.Event) -> Result:
        """Blocking: generate, calling emit(text, logprobs) once per token. Runs in a worker thread."""
        llm = self.llm
        result = Result(prompt_tokens=len(prompt))
        if len(prompt) >= self.n_ctx:
            raise ValueError(f"prompt is {len(prompt)} tokens, context is {self.n_ctx}")
        llm.set_seed(sampling.seed if sampling.seed >= 0 else llama_cpp.LLAMA_DEFAULT_SEED)
        if sampling.seed >= 0 or sampling.temperature == 0:
            # Reproducible requests evaluate the whole prompt: logits computed over a reused prefix
            # differ in the last bits from a fresh evaluation, enough to change a near-tie.
            llm.reset()
        llm.last_n_tokens_size = self.n_ctx if sampling.repeat_last_n < 0 else sampling.repeat_last_n
        budget = self.n_ctx - len(prompt)
        if sampling.num_predict >= 0:
            budget = min(budget, sampling.num_predict)
        started = time.perf_counter_ns()
        if budget == 0:
            result.reason = "length"
            return result
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops, pending = sampling.stop, ""
        held: list[tuple[int, dict[str, Any]]] = []  # (characters, logprob) per token not yet sent
        history = list(prompt)
        first_at, cut = started, False
        tokens = llm.generate(
            prompt,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            typical_p=sampling.typical_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            mirostat_mode=sampling.mirostat,
            mirostat_tau=sampling.mirostat_tau,
            mirostat_eta=sampling.mirostat_eta,
            grammar=LlamaGrammar.from_string(sampling.grammar) if sampling.grammar else None,
            reset=True,
        )
        for token in tokens:
            if result.eval_count == 0:
                first_at = time.perf_counter_ns()
            if cancel.is_set() or llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            result.eval_count += 1
            raw = llm.detokenize([token], prev_tokens=history)
            piece = decoder.decode(raw)
            history.append(token)
            if sampling.logprobs:
                held.append((len(piece), self._logprob(token, llm.detokenize([token]), sampling.top_logprobs)))
            if stops:
                pending += piece
                at = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
                if at >= 0:
                    emit(pending[:at], _release(held, at))
                    pending, cut = "", True
                    break
                keep = _longest_stop_prefix(pending, stops)
                piece, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            emit(piece, _release(held, len(piece)))
            if result.eval_count >= budget:
                result.reason = "length"
                break
        if pending and not cut and not cancel.is_set():
            emit(pending, _release(held, len(pending)))
        now = time.perf_counter_ns()
        result.prompt_ns, result.eval_ns = first_at - started, now - first_at
        return result


def _release(held: list[tuple[int, dict[str, Any]]], chars: int) -> list[dict[str, Any]]:
    """Logprobs of the held tokens whose text starts within the first `chars` characters sent."""
    out: list[dict[str, Any]] = []
    while held and (chars > 0 or held[0][0] == 0):
        size, entry = held.pop(0)
        out.append(entry)
        chars -= size
    if chars < 0 and out:  # the last token straddles what was sent: keep its remainder held
        held.insert(0, (-chars, {}))
    return [entry for entry in out if entry]


def _longest_stop_prefix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop string."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


_END = object()


async def stream_tokens(
    loaded: LoadedModel, prompt: list[int], sampling: Sampling, result_box: list[Result]
) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """Yield (text, logprobs) per token as they come; the final Result lands in `result_box`.

    Closing this generator (client gone) sets the cancel flag, and the worker thread stops at its
    next token; the model lock is held until the thread has really stopped.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancel = threading.Event()

    def emit(text: str, logprobs: list[dict[str, Any]]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (text, logprobs))

    def work() -> Result:
        try:
            return loaded.run(prompt, sampling, emit, cancel)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    async with loaded.lock:
        future = loop.run_in_executor(None, work)
        try:
            while (item := await queue.get()) is not _END:
                yield item
            result_box.append(await future)
        finally:
            cancel.set()
            await asyncio.shield(asyncio.wait([future]))
