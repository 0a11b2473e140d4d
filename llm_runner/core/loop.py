"""Admit and start one generation; shared by the Livepeer and the OpenAI-compatible routes.

Order matters: refuse while draining → size limits → wait (bounded) for the model → take a slot
(bounded queue) → open the upstream stream and wait for its first event. Every wait is cancelled
when the client leaves, and every failure releases the slot and closes the upstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.requests import Request

from llm_runner.core.errors import BadRequest, NotReady, UpstreamError
from llm_runner.livepeer.contract import LLMRequest
from llm_runner.livepeer.sse import until_disconnected
from llm_runner.runtime import Runtime, ServedModel
from llm_runner.upstream.ollama import Finish

log = logging.getLogger("llm_runner.core.loop")


@dataclass
class Generation:
    model: ServedModel
    first: str | Finish
    events: AsyncIterator[str | Finish]
    finish: Callable[[str, int, int, UpstreamError | None], None]
    release: Callable[[], None]

    async def close(self) -> None:
        """Release the slot and close the upstream stream (idempotent)."""
        self.release()
        await self.events.aclose()

    async def collect(self, request: Request) -> tuple[str, Finish]:
        """The whole answer, for non-streaming clients (cancelled if the client leaves)."""
        try:
            text, finish = await until_disconnected(request, _collect(self.first, self.events))
        except UpstreamError as exc:
            self.finish("error", 0, 0, exc)
            raise
        finally:
            await self.close()
        self.finish(finish.reason, finish.prompt_tokens, finish.completion_tokens, None)
        return text, finish


async def open_generation(request: Request, runtime: Runtime, model: ServedModel, body: LLMRequest) -> Generation:
    settings = runtime.settings
    arrived = time.monotonic()
    if runtime.draining:
        raise NotReady("runner is shutting down; send the request to another runner")
    prompt_chars = sum(len(m.content) for m in body.messages)
    if prompt_chars > settings.max_prompt_chars:
        raise BadRequest(
            f"prompt too large: {prompt_chars} characters > limit {settings.max_prompt_chars} "
            "(LLM_RUNNER_MAX_PROMPT_CHARS)"
        )
    lifecycle, admission = runtime.lifecycle, runtime.admission
    if not lifecycle.is_ready(model.model_id):  # fast path: no waiting, no watcher task
        await until_disconnected(request, lifecycle.wait_ready(model.model_id, settings.loading_wait_s))
    release = admission.try_acquire() or await until_disconnected(request, admission.acquire())
    events = runtime.backend.generate(model.tag, body, think_off=lifecycle.think_off(model.model_id))
    metrics = runtime.metrics

    first_at = arrived

    def finish(reason: str, prompt: int, completion: int, error: UpstreamError | None) -> None:
        release()
        now = time.monotonic()
        log.info(
            "%s %s: %s, %d prompt + %d completion tokens, first token %.0f ms, total %.0f ms",
            "stream" if body.stream else "answer",
            model.model_id,
            reason,
            prompt,
            completion,
            (first_at - arrived) * 1e3,
            (now - arrived) * 1e3,
        )
        if prompt + completion >= settings.num_ctx:
            metrics.context_full.labels(model.model_id).inc()
            log.warning(
                "%s: the context window is full (%d prompt + %d completion >= num_ctx %d): Ollama may have "
                "dropped the oldest messages; raise LLM_RUNNER_NUM_CTX if the GPU has room",
                model.model_id,
                prompt,
                completion,
                settings.num_ctx,
            )
        metrics.duration.labels(model.model_id, reason).observe(now - arrived)
        metrics.completion_tokens.labels(model.model_id).inc(completion)
        metrics.prompt_tokens.labels(model.model_id).inc(prompt)
        if error is not None:
            metrics.upstream_errors.labels(error.kind).inc()

    try:
        first = await until_disconnected(request, anext(events))
    except BaseException as exc:
        release()
        await events.aclose()
        if isinstance(exc, UpstreamError):
            metrics.upstream_errors.labels(exc.kind).inc()
            if exc.kind == "not_found":
                lifecycle.report_missing(model.model_id)
        raise
    first_at = time.monotonic()
    metrics.ttft.labels(model.model_id).observe(first_at - arrived)
    return Generation(model, first, events, finish, release)


async def _collect(first: str | Finish, events: AsyncIterator[str | Finish]) -> tuple[str, Finish]:
    parts: list[str] = []
    event = first
    while not isinstance(event, Finish):
        parts.append(event)
        event = await anext(events)
    return "".join(parts), event
