"""Admission control: a bounded number of generations in flight and a bounded wait queue.

Ollama queues requests for a loaded model without limit and without telling anyone, so the
runner enforces the `capacity` it advertises to go-livepeer. Past the queue we answer 500 "busy"
at once (go-livepeer understands no 503), which lets the gateway try another orchestrator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from llm_runner.errors import Busy


class Admission:
    def __init__(self, limit: int, max_queue: int, timeout_s: float) -> None:
        self.limit, self.max_queue, self.timeout_s = limit, max_queue, timeout_s
        self._slots = asyncio.Semaphore(limit)
        self.in_flight = 0
        self.waiting = 0

    async def acquire(self) -> Callable[[], None]:
        """Take a slot; returns its release function (safe to call twice)."""
        if self._slots.locked():
            if self.waiting >= self.max_queue:
                raise Busy(
                    f"busy: {self.in_flight} generations running and {self.waiting} waiting "
                    f"(limit {self.limit}, queue {self.max_queue}); retry later"
                )
            self.waiting += 1
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._slots.acquire()
            except TimeoutError:
                raise Busy(f"busy: no generation slot freed within {self.timeout_s:g}s; retry later") from None
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        self.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1
                self._slots.release()

        return release
