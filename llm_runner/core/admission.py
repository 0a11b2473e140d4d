"""Admission control: a bounded number of generations in flight and a bounded FIFO wait queue.

Ollama queues requests for a loaded model without limit and without telling anyone, so the
runner enforces the `capacity` it advertises to go-livepeer. Past the queue we answer 500 "busy"
at once (go-livepeer understands no 503), which lets the gateway try another orchestrator.
A free slot is taken without awaiting anything: the common case costs nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from llm_runner.core.errors import Busy


class Admission:
    def __init__(self, limit: int, max_queue: int, timeout_s: float) -> None:
        self.limit, self.max_queue, self.timeout_s = limit, max_queue, timeout_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> Callable[[], None] | None:
        """A slot at once if one is free and nobody queues before us, else None."""
        if self.in_flight >= self.limit or self._waiters:
            return None
        self.in_flight += 1
        return self._releaser()

    async def acquire(self) -> Callable[[], None]:
        """Take a slot, waiting in the bounded queue; returns its release function (idempotent)."""
        release = self.try_acquire()
        if release is not None:
            return release
        if len(self._waiters) >= self.max_queue:
            raise Busy(
                f"busy: {self.in_flight} generations running and {self.waiting} waiting "
                f"(limit {self.limit}, queue {self.max_queue}); retry later"
            )
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(granted)
        try:
            async with asyncio.timeout(self.timeout_s):
                await granted
        except BaseException as exc:
            if granted.done() and not granted.cancelled():
                self._hand_on()  # we were given the slot but will not use it
            else:
                self._waiters.remove(granted)
            if isinstance(exc, TimeoutError):
                raise Busy(f"busy: no generation slot freed within {self.timeout_s:g}s; retry later") from None
            raise
        return self._releaser()

    def _hand_on(self) -> None:
        """Give a finished generation's slot to the next waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # in_flight unchanged: the slot changes hands
                return
        self.in_flight -= 1

    def _releaser(self) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._hand_on()

        return release
