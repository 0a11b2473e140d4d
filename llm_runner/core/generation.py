"""One admitted generation: its event stream (always ending with exactly one `End`), the drain
cut, and the end of a stream cut before the upstream's final chunk (the prompt counted, then
accounted once, whatever cancels)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.types import Receive

from llm_runner.core.admission import Lease
from llm_runner.core.cancel import until_disconnected
from llm_runner.core.errors import UpstreamError
from llm_runner.core.events import CANCELLED, DRAINED, ERROR, End, Event, Scored
from llm_runner.core.prompt_count import count_prompt
from llm_runner.core.receipts import Receipt
from llm_runner.core.request import GenerationRequest

if TYPE_CHECKING:
    from llm_runner.core.loop import GenerationLoop

log = logging.getLogger("llm_runner.generation")


class Generation:
    """One admitted generation. Iterate `events()` (always ends with exactly one End) or
    `collect()`; `close()` is idempotent and accounts a client that left as `cancelled`."""

    def __init__(
        self,
        loop: GenerationLoop,
        request: GenerationRequest,
        lease: Lease,
        upstream: AsyncIterator[Event],
        first: Event,
        arrived: float,
        first_at: float,
    ) -> None:
        self.loop, self.request, self.lease, self.upstream = loop, request, lease, upstream
        self.first, self.arrived, self.first_at = first, arrived, first_at
        self.completion = 0  # deltas seen so far (exact counts come with the upstream's End)
        self.ended = False
        self.receipt: Receipt | None = None  # once it ended: what was served
        self._drained = False
        self._cut_why = ""
        self._waiting: asyncio.Task[object] | None = None
        self._cut_end: asyncio.Future[End] | None = None  # the end of a cut stream, once counted

    @property
    def model_id(self) -> str:
        return self.request.model_id

    async def events(self) -> AsyncIterator[Event]:
        event = self.first
        upstream = self.upstream
        try:
            task = asyncio.current_task()
            while True:
                kind = type(event)
                if kind is End:
                    self._end(event)  # type: ignore[arg-type]
                    yield event
                    return
                if kind is str or kind is Scored:
                    self.completion += 1
                yield event
                if self._drained:
                    raise asyncio.CancelledError
                self._waiting = task  # a drain cut cancels this wait
                try:
                    event = await anext(upstream)
                finally:
                    self._waiting = None
        except UpstreamError as exc:
            self.loop.metrics.upstream_errors.labels(self.lease.upstream.name, exc.kind).inc()
            self.loop.readiness.report_failure(self.lease.upstream.name, self.model_id, exc)
            yield await self._end_cut(ERROR, exc.msg)
        except Exception as exc:  # an upstream that broke its contract: the stream still ends
            log.exception("%s: the upstream stream failed unexpectedly", self.model_id)
            yield await self._end_cut(ERROR, internal_error(exc))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._drained or (task is not None and task.uncancel() > 0):
                raise
            yield await self._end_cut(DRAINED, f"runner shutting down: {self._cut_why}")
        finally:
            await self.close()

    async def collect(self, receive: Receive) -> tuple[list[Event], End]:
        """Every event of a non-streaming answer; cancelled when the client leaves."""

        async def gather() -> tuple[list[Event], End]:
            seen: list[Event] = []
            async for event in self.events():
                if type(event) is End:
                    return seen, event
                seen.append(event)
            raise AssertionError("a generation always ends with End")

        try:
            return await until_disconnected(receive, gather())
        finally:
            await self.close()

    def cut(self, why: str) -> None:
        """The drain period is over (or a second interrupt came): end with `drained` at the next
        event, or now if waiting."""
        self._drained, self._cut_why = True, why
        if self._waiting is not None:
            self._waiting.cancel()

    def _end(self, end: End) -> End:
        if not self.ended:
            self.ended = True
            self.lease.release()
            self.loop.live.discard(self)
            self.loop.check_drained()
            self.loop.metrics.upstream_tokens.labels(self.lease.upstream.name).inc(end.completion_tokens)
            self.receipt = self.loop.account(self.request, end, self.arrived, self.first_at)
        return end

    async def _end_cut(self, reason: str, error: str) -> End:
        """End a stream cut before the upstream's final chunk, which alone carries the prompt's
        token count: stop the upstream, count the prompt (core/prompt_count.py), then account.
        The slot is held meanwhile (the count runs on it). Shielded: a client that leaves, or a
        shutdown that cancels, cannot lose the accounting."""
        if self._cut_end is None:
            self._cut_end = asyncio.ensure_future(self._count_and_end(reason, error))
        return await asyncio.shield(self._cut_end)

    async def _count_and_end(self, reason: str, error: str) -> End:
        await self.upstream.aclose()  # what makes the upstream stop generating
        lease, readiness = self.lease, self.loop.readiness
        prompt, why = await count_prompt(
            lease.upstream, self.loop.tags[self.model_id], self.request, readiness.think_off(self.model_id)
        )
        if why:
            error = f"{error}; prompt tokens not counted: {why}"
        return self._end(End(reason, prompt, self.completion, error))

    async def close(self) -> None:
        """Release the slot and close the upstream stream (which stops the generation)."""
        if not self.ended:
            await self._end_cut(CANCELLED, "client disconnected")
        await self.upstream.aclose()


def internal_error(exc: Exception) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"
