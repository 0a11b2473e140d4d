"""The one generation loop, under every face.

It owns, in order: refusing while draining → size limits → the readiness wait (only while a load
makes progress) → a slot on an upstream (bounded queue) → the upstream call and its first token,
retried on another upstream when one fails before anything was sent → the token stream with its
timeouts, client-gone cancellation and drain cut → accounting. Every end, refusals and leavers
included, gives exactly one summary log line and its metrics. Faces only frame bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Protocol

from starlette.types import Receive

from llm_runner.core.admission import Admission
from llm_runner.core.cancel import until_disconnected
from llm_runner.core.cap import check_cap
from llm_runner.core.errors import BadRequest, Busy, ClientGone, NotReady, RunnerError, UpstreamError
from llm_runner.core.events import (
    BUSY,
    CANCELLED,
    ERROR,
    INVALID,
    LENGTH,
    STOP,
    UNAVAILABLE,
    End,
)
from llm_runner.core.generation import Generation, internal_error
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.core.receipts import Receipt, Receipts
from llm_runner.core.request import GenerationRequest
from llm_runner.core.speed import Speed

log = logging.getLogger("llm_runner.generation")


class Readiness(Protocol):
    def is_ready(self, model_id: str) -> bool: ...

    async def wait_ready(self, model_id: str, timeout_s: float) -> None: ...

    def think_off(self, model_id: str) -> bool: ...

    def report_failure(self, upstream: str, model_id: str, error: UpstreamError) -> None: ...


class Limits(Protocol):
    num_ctx: int
    max_prompt_chars: int
    loading_wait_s: float
    max_tokens_cap: int | None  # the most output tokens a call may ask (what a fixed price covers)
    usage_window_s: float
    usage_max_sessions: int


class GenerationLoop:
    def __init__(
        self,
        tags: dict[str, str],
        readiness: Readiness,
        admission: Admission,
        metrics: RunnerMetrics,
        limits: Limits,
    ) -> None:
        self.tags, self.readiness, self.admission = tags, readiness, admission
        self.metrics, self.limits = metrics, limits
        self.draining = False
        self.cutting = ""  # why every stream now ends with `drained` (the drain period is over)
        self.live: set[Generation] = set()
        self.starting = 0  # requests waiting for their first token: streams about to open
        self.speed = Speed()
        self.drained = asyncio.Event()  # set once draining and no stream is open
        self.receipts = Receipts(limits.usage_window_s, limits.usage_max_sessions)

    async def start(self, request: GenerationRequest, receive: Receive, max_queue: int | None = None) -> Generation:
        """Admit the request and wait for its first event. Raises RunnerError (accounted) when it
        cannot start; nothing has been sent to the client then."""
        arrived = time.monotonic()
        request.request_id = request.request_id or uuid.uuid4().hex
        try:
            return await self._start(request, receive, max_queue, arrived)
        except RunnerError as exc:
            reason = _refusal_reason(exc)
            self.account(request, End(reason, error=exc.msg), arrived, arrived)
            exc.accounted = True
            raise
        except Exception as exc:  # a bug below us: still accounted, then the face's 500
            self.account(request, End(ERROR, error=internal_error(exc)), arrived, arrived)
            raise

    async def _start(
        self, request: GenerationRequest, receive: Receive, max_queue: int | None, arrived: float
    ) -> Generation:
        if self.draining:
            raise NotReady("runner is shutting down; send the request to another runner")
        chars = request.prompt_chars()
        if chars > self.limits.max_prompt_chars:
            raise BadRequest(
                f"prompt too large: {chars} characters > limit {self.limits.max_prompt_chars} "
                "(LLM_RUNNER_MAX_PROMPT_CHARS)",
                param="messages",
            )
        check_cap(request.max_tokens, self.limits.max_tokens_cap, self.limits.num_ctx)
        model_id = request.model_id
        if not self.readiness.is_ready(model_id):  # fast path: no waiting, no watcher task
            await until_disconnected(receive, self.readiness.wait_ready(model_id, self.limits.loading_wait_s))
        tried: frozenset[str] = frozenset()
        while True:
            lease = self.admission.try_acquire(model_id, tried) or await until_disconnected(
                receive, self.admission.acquire(model_id, tried, max_queue)
            )
            upstream = lease.upstream
            events = upstream.chat(self.tags[model_id], request, think_off=self.readiness.think_off(model_id))
            self.starting += 1
            try:
                first = await until_disconnected(receive, anext(events))
            except BaseException as exc:
                self.starting -= 1
                self.check_drained()
                if isinstance(exc, UpstreamError):  # before the slot is freed: no waiter gets it
                    self.metrics.upstream_errors.labels(upstream.name, exc.kind).inc()
                    self.readiness.report_failure(upstream.name, model_id, exc)
                lease.release()
                await events.aclose()
                if not isinstance(exc, UpstreamError):
                    raise
                tried |= {upstream.name}
                if not exc.retryable or not self.admission.router.others_ready(model_id, tried):
                    # An upstream found down: say which and since when, as a refusal would.
                    reason = self.admission.router.unservable(model_id) if exc.kind == "unreachable" else None
                    if reason is not None:
                        raise NotReady(reason) from exc
                    raise
                log.warning("%s failed before the first token, trying another upstream: %s", upstream.name, exc.msg)
                continue
            self.starting -= 1
            first_at = time.monotonic()
            self.metrics.ttft.labels(model_id).observe(first_at - arrived)
            generation = Generation(self, request, lease, events, first, arrived, first_at)
            self.live.add(generation)
            if self.cutting:  # its first token came after the cut: end it at once
                generation.cut(self.cutting)
            return generation

    def drain(self, timeout_s: float) -> None:
        """SIGTERM: refuse new requests (queued ones too) and cut open streams after `timeout_s`."""
        if self.draining:
            return
        self.draining = True
        self.admission.close("runner is shutting down; send the request to another runner")
        asyncio.get_running_loop().call_later(timeout_s, self._cut)
        self.check_drained()

    def check_drained(self) -> None:
        if self.draining and not self.live and not self.starting:
            self.drained.set()

    def _cut(self, why: str = "cut after the drain period") -> None:
        self.cutting = why
        for generation in list(self.live):
            generation.cut(why)

    def cut_now(self, why: str) -> int:
        """A second interrupt: cut every open stream now, and those about to open. Returns how many."""
        self.drain(0)
        open_streams = len(self.live) + self.starting
        self._cut(why)
        return open_streams

    def account(self, request: GenerationRequest, end: End, arrived: float, first_at: float) -> Receipt:
        """The one summary line, the metrics and the receipt of one request, however it ended."""
        now = time.monotonic()
        model_id, metrics = request.model_id, self.metrics
        session = f", session {request.session}" if request.session else ""
        error = f" ({end.error})" if end.error else ""
        log.info(
            "%s %s %s: %s%s, %d prompt + %d completion tokens, first token %.0f ms, total %.0f ms%s, request %s",
            request.face,
            "stream" if request.stream else "answer",
            model_id,
            end.reason,
            error,
            end.prompt_tokens,
            end.completion_tokens,
            (first_at - arrived) * 1e3,
            (now - arrived) * 1e3,
            session,
            request.request_id,
        )
        metrics.generations.labels(model_id, request.face, end.reason).inc()
        refused = end.reason in (BUSY, UNAVAILABLE, INVALID)
        receipt = Receipt.of(request, end, first_at - arrived, now - arrived, served=not refused)
        self.receipts.record(receipt)
        if refused:
            return receipt
        if end.reason in (STOP, LENGTH):
            self.speed.record(model_id, first_at - arrived, end.completion_tokens, now - first_at)
        metrics.duration.labels(model_id, end.reason).observe(now - arrived)
        metrics.completion_tokens.labels(model_id).inc(end.completion_tokens)
        metrics.prompt_tokens.labels(model_id).inc(end.prompt_tokens)
        if end.total_tokens >= self.limits.num_ctx:
            metrics.context_full.labels(model_id).inc()
            log.warning(
                "%s: the context window is full (%d prompt + %d completion >= num_ctx %d): Ollama may have "
                "dropped the oldest messages; raise LLM_RUNNER_NUM_CTX if the GPU has room",
                model_id,
                end.prompt_tokens,
                end.completion_tokens,
                self.limits.num_ctx,
            )
        return receipt


def _refusal_reason(exc: RunnerError) -> str:
    if isinstance(exc, Busy):
        return BUSY
    if isinstance(exc, ClientGone):
        return CANCELLED
    if isinstance(exc, NotReady):
        return UNAVAILABLE
    if isinstance(exc, UpstreamError):
        return ERROR
    return INVALID
