"""Admission: one bounded FIFO queue for the whole runner, over the slots of every upstream.

Ollama queues requests without limit and without telling anyone, so the runner enforces the
capacity it advertises: a generation runs only on a free slot of a ready upstream (the router
picks which), and at most `max_queue` requests wait for one. Capacity follows the upstreams: it
shrinks when one goes down and grows when it is back. A waiter whose model nothing can serve any
more (every upstream down, nothing loading) is released at once with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_runner.core.errors import Busy, NotReady


@dataclass
class Lease:
    """One slot on one upstream; `release()` is idempotent."""

    upstream: Any
    _free: Callable[[], None]
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._free()


class Router(Protocol):
    def pick(self, model_id: str, exclude: frozenset[str]) -> Lease | None:
        """A slot on the best ready upstream serving the model, or None when none is free."""
        ...

    def unservable(self, model_id: str) -> str | None:
        """Why waiting for this model is pointless now, or None."""
        ...

    def others_ready(self, model_id: str, exclude: frozenset[str]) -> bool:
        """Whether an upstream not in `exclude` has the model ready (worth a failover)."""
        ...

    def wait_estimate(self, model_id: str) -> float | None:
        """None when the model can run now; else the seconds until it can be loaded somewhere."""
        ...

    def wanted(self, model_id: str) -> None:
        """A request waits for the model (a swap may be due)."""
        ...

    @property
    def in_flight(self) -> int: ...

    @property
    def capacity(self) -> int: ...


@dataclass(eq=False)
class _Waiter:
    model_id: str
    exclude: frozenset[str]
    future: asyncio.Future[Lease]
    since: float = field(default_factory=time.monotonic)


class Admission:
    def __init__(self, router: Router, max_queue: int, timeout_s: float) -> None:
        self.router, self.max_queue, self.timeout_s = router, max_queue, timeout_s
        self._waiters: deque[_Waiter] = deque()
        self._closed: str | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        return self.router.in_flight

    def waiting_since(self, model_id: str) -> float | None:
        """When the oldest request waiting for this model arrived (what a swap decision weighs)."""
        return next((w.since for w in self._waiters if w.model_id == model_id and not w.future.done()), None)

    def try_acquire(self, model_id: str, exclude: frozenset[str] = frozenset()) -> Lease | None:
        """A slot at once if one is free and nobody waits for this model before us."""
        if self._closed or any(w.model_id == model_id for w in self._waiters):
            return None
        return self._wrap(self.router.pick(model_id, exclude))

    async def acquire(
        self, model_id: str, exclude: frozenset[str] = frozenset(), max_queue: int | None = None
    ) -> Lease:
        """Take a slot, waiting in the bounded queue (`max_queue` overrides the runner's)."""
        if self._closed:
            raise NotReady(self._closed)
        lease = self.try_acquire(model_id, exclude)
        if lease is not None:
            return lease
        limit = self.max_queue if max_queue is None else max_queue
        loading = self.router.wait_estimate(model_id)
        if loading is not None:  # not in memory now: a swap will load it, worth waiting for
            if loading > self.timeout_s:
                raise Busy(
                    f"busy: {model_id} is not loaded and no swap can load it within {self.timeout_s:g}s "
                    f"(about {loading:.0f}s: the swaps allowed per minute are used); retry later",
                    retry_after_s=loading,
                )
            limit = max(limit, self.max_queue)
        if len(self._waiters) >= limit:
            raise Busy(
                f"busy: {self.in_flight} generations running on {self.router.capacity} ready slots and "
                f"{self.waiting} waiting (queue {limit}); retry later"
            )
        reason = self.router.unservable(model_id)
        if reason is not None:
            raise NotReady(reason)
        waiter = _Waiter(model_id, exclude, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self.router.wanted(model_id)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await waiter.future
        except BaseException as exc:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                waiter.future.result().release()  # granted, but we will not use it
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise Busy(f"busy: no generation slot freed within {self.timeout_s:g}s; retry later") from None
            raise

    def poke(self) -> None:
        """A slot freed or an upstream changed: grant waiters in order, release hopeless ones."""
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            lease = self._wrap(self.router.pick(waiter.model_id, waiter.exclude))
            if lease is not None:
                self._waiters.remove(waiter)
                waiter.future.set_result(lease)
                continue
            reason = self.router.unservable(waiter.model_id)
            if reason is not None:
                self._waiters.remove(waiter)
                waiter.future.set_exception(NotReady(reason))

    def close(self, reason: str) -> None:
        """Draining: refuse new requests and release every waiter with the reason."""
        self._closed = reason
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(NotReady(reason))

    def _wrap(self, lease: Lease | None) -> Lease | None:
        if lease is None:
            return None
        free = lease._free

        def release() -> None:
            free()
            self.poke()

        lease._free = release
        return lease
