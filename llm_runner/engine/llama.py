"""Token generation with llama-cpp-python, off the event loop, one generation per model at a time.

The chat template comes from the GGUF itself. Tokens are produced one by one so that counts are
exact (prompt_eval_count, eval_count), stop strings are honoured across token boundaries, and a
client that goes away stops the loop within a token.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from llm_runner.engine.registry import EngineModel

# GGUF general.file_type → Ollama's quantization_level names.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}  # fmt: skip


@dataclass(frozen=True)
class Sampling:
    num_predict: int = -1
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    seed: int = -1
    repeat_penalty: float = 1.0
    stop: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Sampling:
        names = ("num_predict", "temperature", "top_k", "top_p", "seed", "repeat_penalty")
        known = {k: options.get(k) for k in names}
        stop = options.get("stop") or ()
        return cls(**{k: v for k, v in known.items() if v is not None}, stop=tuple(stop))


@dataclass
class Result:
    reason: str = "stop"
    prompt_tokens: int = 0
    eval_count: int = 0
    load_ns: int = 0
    prompt_ns: int = 0
    eval_ns: int = 0


class LoadedModel:
    def __init__(self, model: EngineModel, n_ctx: int, n_threads: int | None) -> None:
        started = time.perf_counter_ns()
        threads = n_threads or os.cpu_count() or 1
        self.model = model
        self.n_ctx = n_ctx
        self.llm = Llama(str(model.path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.load_ns = time.perf_counter_ns() - started
        meta = self.llm.metadata
        self.metadata = meta
        self.template = meta.get("tokenizer.chat_template", "")
        internals = self.llm._model
        self._vocab = internals.vocab
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
    def parameter_size(self) -> str:
        label = self.metadata.get("general.size_label")
        return label or f"{self.llm._model.n_params() / 1e6:.0f}M"

    @property
    def quantization(self) -> str:
        return FILE_TYPES.get(int(self.metadata.get("general.file_type", -1)), "unknown")

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        if self._formatter is None:
            text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
            return self.llm.tokenize(text.encode(), add_bos=True, special=False)
        rendered = self._formatter(messages=messages)
        return self.llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)

    def run(
        self, prompt: list[int], sampling: Sampling, emit: Callable[[str], None], cancel: threading.Event
    ) -> Result:
        """Blocking: generate, calling emit(text) once per token. Runs in a worker thread."""
        llm = self.llm
        result = Result(prompt_tokens=len(prompt))
        if len(prompt) >= self.n_ctx:
            raise ValueError(f"prompt is {len(prompt)} tokens, context is {self.n_ctx}")
        if sampling.seed >= 0:
            llm.set_seed(sampling.seed)
        budget = self.n_ctx - len(prompt)
        if sampling.num_predict >= 0:
            budget = min(budget, sampling.num_predict)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops, pending = sampling.stop, ""
        history = list(prompt)
        started = time.perf_counter_ns()
        first_at = started
        if budget == 0:
            result.reason = "length"
            return result
        tokens = llm.generate(
            prompt,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        )
        for token in tokens:
            if result.eval_count == 0:
                first_at = time.perf_counter_ns()
            if cancel.is_set() or llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            result.eval_count += 1
            piece = decoder.decode(llm.detokenize([token], prev_tokens=history))
            history.append(token)
            if stops:
                pending += piece
                cut = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
                if cut >= 0:
                    emit(pending[:cut])
                    break
                keep = _longest_stop_prefix(pending, stops)
                piece, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            emit(piece)
            if result.eval_count >= budget:
                result.reason = "length"
                break
        if pending and result.reason == "length":
            emit(pending)
        now = time.perf_counter_ns()
        result.prompt_ns, result.eval_ns = first_at - started, now - first_at
        return result


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
) -> AsyncIterator[str]:
    """Yield token texts as they come; the final Result lands in `result_box`.

    Closing this generator (client gone) sets the cancel flag, and the worker thread stops at its
    next token; the model lock is held until the thread has really stopped.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancel = threading.Event()

    def emit(text: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, text)

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
