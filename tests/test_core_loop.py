"""The core in-process, over scripted upstreams: no sockets, no sleeps.

The loop is wired as the runtime wires it (Lifecycle + UpstreamRouter + Admission + RunnerMetrics)
over `Scripted` upstreams whose `chat()` plays a script: deltas, an `End`, an `UpstreamError` to
raise, an `asyncio.Event` to wait on (a generation held open), or `DIE` (the upstream goes away and
the call fails as unreachable). A client is a `receive` callable that answers `http.disconnect`
once told to. Every wait is for a condition, bounded by a deadline.

Every way a request ends is checked for exactly one summary line and its `generations` metric.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from llm_runner.core.admission import Admission
from llm_runner.core.errors import BadRequest, Busy, ClientGone, NotReady, UpstreamError
from llm_runner.core.events import ERROR, LENGTH, STOP, End, Event
from llm_runner.core.generation import Generation
from llm_runner.core.loop import GenerationLoop
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.core.request import GenerationRequest, Message
from llm_runner.upstream.base import ModelInfo, PullProgress, Resident
from llm_runner.upstream.canary import CanaryPolicy
from llm_runner.upstream.lifecycle import Lifecycle
from llm_runner.upstream.residency import ResidencyPolicy
from llm_runner.upstream.router import UpstreamRouter

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
TAGS = {LLAMA: "llama3.1:8b", QWEN: "qwen2.5:7b"}
HELLO = ["Hello", ", ", "world", End(STOP, 7, 3)]
DIE = object()  # script step: the upstream goes away, this call fails as unreachable


async def until(predicate: Callable[[], bool], within: float = 2.0) -> None:
    """Let the loop run until `predicate()` holds (fails after `within` seconds)."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition never reached"
        await asyncio.sleep(0)


class Scripted:
    """An upstream (llm_runner.upstream.base.Upstream) that plays scripts instead of talking HTTP."""

    def __init__(self, name: str, *, slots: int = 1, models: frozenset[str] | None = None) -> None:
        self.name, self.slots, self.model_ids = name, slots, models
        self.alive = True
        self.present: set[str] | None = None  # tags it has; None: every tag
        self.scripts: list[list[object]] = []  # one per chat() call, in order; then HELLO
        self.show_faults: list[Exception] = []  # raised by the next show() calls
        self.chats = self.open = 0
        self.tags_asked: list[str] = []
        self.loaded: dict[str, int] = {}  # what ps() reports: tag → MB loaded (warm loads, unload frees)
        self.sizes: dict[str, tuple[int, int]] = {}  # tag → (MB in all, MB on the GPU); default all on the GPU
        self.unloads: list[str] = []
        self.warm_gate: asyncio.Event | None = None  # a load holds until it is set
        self.exclusive = False  # a load unloads every other model (Ollama short of VRAM, behind our back)
        self.cold_chats = 0  # generations asked of a model that was not loaded (Ollama would load it first)

    def serves(self, model_id: str) -> bool:
        return self.model_ids is None or model_id in self.model_ids

    def _reachable(self) -> None:
        if not self.alive:
            raise UpstreamError("unreachable", f"{self.name} is unreachable (connection refused)")

    async def version(self) -> str:
        self._reachable()
        return "0.0.0-scripted"

    async def show(self, tag: str) -> ModelInfo | None:
        self._reachable()
        if self.show_faults:
            raise self.show_faults.pop(0)
        if self.present is not None and tag not in self.present:
            return None
        return ModelInfo(tag, ("completion",), "Q4_K_M")

    async def pull(self, tag: str) -> AsyncIterator[PullProgress]:
        self._reachable()
        if self.present is not None:
            self.present.add(tag)
        yield PullProgress("success")

    async def warm(self, tag: str, think_off: bool) -> None:
        self._reachable()
        if self.warm_gate is not None:
            await self.warm_gate.wait()
        if self.exclusive:
            self.loaded.clear()
        self.loaded[tag] = self.sizes.get(tag, (5000, 5000))[0]

    async def unload(self, tag: str) -> None:
        self._reachable()
        self.unloads.append(tag)
        self.loaded.pop(tag, None)

    async def ps(self) -> list[Resident]:
        self._reachable()
        sizes = {t: self.sizes.get(t, (mb, mb)) for t, mb in self.loaded.items()}
        return [Resident(t, size << 20, on_gpu << 20) for t, (size, on_gpu) in sizes.items()]

    async def chat(self, tag: str, request: GenerationRequest, *, think_off: bool) -> AsyncIterator[Event]:
        self.chats += 1
        self.tags_asked.append(tag)
        self._reachable()
        self.cold_chats += tag not in self.loaded
        script = self.scripts.pop(0) if self.scripts else HELLO
        self.open += 1
        try:
            for step in script:
                if step is DIE:
                    self.alive = False
                    self._reachable()
                elif isinstance(step, asyncio.Event):
                    await step.wait()
                elif isinstance(step, BaseException):
                    raise step
                else:
                    yield step  # type: ignore[misc]
        finally:
            self.open -= 1

    def watch(self, notify: Callable[[bool], None]) -> None:
        self.notify = notify

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class Client:
    """The `receive` of an HTTP request: `http.disconnect` once `leave()` was called."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    def leave(self) -> None:
        self.gone.set()

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "http.disconnect"}


@dataclass
class Limits:
    num_ctx: int = 100_000
    max_prompt_chars: int = 1000
    loading_wait_s: float = 30.0
    max_tokens_cap: int | None = None
    usage_window_s: float = 3600.0
    usage_max_sessions: int = 10_000


class Rig:
    """The runtime's wiring (runtime.Runtime) around scripted upstreams."""

    def __init__(
        self,
        *upstreams: Scripted,
        models: tuple[str, ...] = (LLAMA,),
        max_queue: int = 4,
        queue_timeout_s: float = 30.0,
        pull: bool = True,
        limits: Limits | None = None,
        residency: ResidencyPolicy | None = None,
        canary: CanaryPolicy | None = None,
    ) -> None:
        self.upstreams = {u.name: u for u in upstreams}
        tags = {m: TAGS[m] for m in models}
        self.lifecycle = Lifecycle(
            list(upstreams),
            tags,
            pull=pull,
            warm=True,
            think_off=False,
            interval_s=0.01,
            startup_grace_s=0,
            residency=residency,
            canary=canary,
        )
        self.router = UpstreamRouter(list(upstreams), self.lifecycle)
        self.admission = Admission(self.router, max_queue, queue_timeout_s)
        self.lifecycle.listeners.append(self.admission.poke)
        self.lifecycle.residency.demand = self.admission
        self.metrics = RunnerMetrics()
        self.loop = GenerationLoop(tags, self.lifecycle, self.admission, self.metrics, limits or Limits())
        self.client = Client()

    async def __aenter__(self) -> Rig:
        self.lifecycle.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        for upstream in self.upstreams.values():
            assert upstream.open == 0, f"{upstream.name} still has {upstream.open} generation(s) open"
        await self.lifecycle.stop()

    async def ready(self) -> Rig:
        """Wait until every live upstream has each of its models warm."""

        def warm() -> bool:
            return all(
                self.lifecycle.ready_on(name, m)
                for name, u in self.upstreams.items()
                if u.alive
                for m in self.lifecycle.tags
                if u.serves(m)
            )

        await until(warm)
        return self

    async def start(self, model: str = LLAMA, *, stream: bool = True, content: str = "hi", **kw) -> Generation:
        return await self.loop.start(request(model, stream=stream, content=content), self.client.receive, **kw)

    def count(self, reason: str, model: str = LLAMA) -> float:
        labels = {"model": model, "face": "test", "reason": reason}
        return self.metrics.registry.get_sample_value("llm_runner_generations_total", labels) or 0.0

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def request(model: str = LLAMA, *, stream: bool = True, content: str = "hi") -> GenerationRequest:
    return GenerationRequest(model, [Message("user", content)], stream=stream, face="test")


@pytest.fixture
def summaries(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The summary lines logged so far (one per request, however it ended)."""
    caplog.set_level(logging.INFO, logger="llm_runner")

    def lines() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if r.name == "llm_runner.generation" and r.levelno == logging.INFO
        ]

    return lines


async def drain_events(generation: Generation) -> list[Event]:
    return [event async for event in generation.events()]


# -- the ways a generation ends ------------------------------------------------------------------


async def test_stop_streams_every_delta_and_accounts_once(summaries):
    async with Rig(Scripted("A")) as rig:
        await rig.ready()
        events = await drain_events(await rig.start())
        assert events == HELLO
        assert rig.upstreams["A"].tags_asked == ["llama3.1:8b"]
        (line,) = summaries()
        assert line.startswith(f"test stream {LLAMA}: stop, 7 prompt + 3 completion tokens")
        assert rig.count(STOP) == 1
        assert rig.sample("llm_runner_completion_tokens_total", model=LLAMA) == 3
        assert rig.sample("llm_runner_prompt_tokens_total", model=LLAMA) == 7
        assert rig.sample("llm_runner_upstream_tokens_total", upstream="A") == 3
        assert rig.admission.in_flight == 0


async def test_length_through_collect(summaries):
    async with Rig(Scripted("A")) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [["a", "b", End(LENGTH, 5, 2)]]
        generation = await rig.start(stream=False)
        assert await generation.collect(rig.client.receive) == (["a", "b"], End(LENGTH, 5, 2))
        (line,) = summaries()
        assert line.startswith(f"test answer {LLAMA}: length, 5 prompt + 2 completion tokens")
        assert rig.count(LENGTH) == 1 and rig.admission.in_flight == 0


async def test_an_error_after_tokens_ends_the_stream_with_error_and_is_not_retried(summaries):
    async with Rig(Scripted("A"), Scripted("B")) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [["x", "y", UpstreamError("truncated", "connection to Ollama broke")]]
        events = await drain_events(await rig.start())
        prompt = HELLO[-1].prompt_tokens  # counted by a follow-up: the cut stream never told it
        assert events == ["x", "y", End(ERROR, prompt, 2, "connection to Ollama broke")]
        assert rig.upstreams["B"].chats == 0  # tokens were sent: no second try
        (line,) = summaries()
        assert f": error (connection to Ollama broke), {prompt} prompt + 2 completion tokens" in line
        assert rig.count(ERROR) == 1
        assert rig.sample("llm_runner_upstream_errors_total", upstream="A", kind="truncated") == 1
        assert rig.admission.in_flight == 0


async def test_a_consumer_that_stops_reading_is_cancelled_once(summaries):
    hold = asyncio.Event()
    async with Rig(Scripted("A")) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [["a", hold, "b", End(STOP, 1, 2)]]
        generation = await rig.start()
        events = generation.events()
        assert await anext(events) == "a"
        await events.aclose()  # the leaver
        await generation.close()  # the face's cleanup runs too: still one end
        assert rig.upstreams["A"].open == 0 and rig.admission.in_flight == 0
        (line,) = summaries()
        assert f": cancelled (client disconnected), {HELLO[-1].prompt_tokens} prompt + 1 completion tokens" in line
        assert rig.count("cancelled") == 1


async def test_a_client_gone_during_collect_is_cancelled_once(summaries):
    hold = asyncio.Event()
    async with Rig(Scripted("A")) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [["a", hold, "b", End(STOP, 1, 2)]]
        generation = await rig.start(stream=False)
        collecting = asyncio.create_task(generation.collect(rig.client.receive))
        await until(lambda: generation.completion == 1)
        rig.client.leave()
        with pytest.raises(ClientGone):
            await collecting
        assert rig.upstreams["A"].open == 0 and rig.admission.in_flight == 0
        (line,) = summaries()
        assert f"test answer {LLAMA}: cancelled" in line and rig.count("cancelled") == 1


@pytest.mark.parametrize("where", ["first token", "queue"])
async def test_a_client_gone_before_the_first_token_is_cancelled_once(summaries, where):
    hold = asyncio.Event()
    async with Rig(Scripted("A")) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [[hold, "a", End(STOP, 1, 1)]]
        if where == "queue":  # the only slot is held by another request: ours waits for it
            other = asyncio.create_task(rig.loop.start(request(), Client().receive))
            await until(lambda: rig.upstreams["A"].open == 1)
            leaving = asyncio.create_task(rig.start())
            await until(lambda: rig.admission.waiting == 1)
        else:
            leaving = asyncio.create_task(rig.start())
            await until(lambda: rig.upstreams["A"].open == 1)
        rig.client.leave()
        with pytest.raises(ClientGone):
            await leaving
        assert rig.admission.waiting == 0
        assert rig.count("cancelled") == 1
        assert [line for line in summaries() if ": cancelled" in line] != []
        if where == "queue":
            hold.set()
            assert await drain_events(await other) == ["a", End(STOP, 1, 1)]
            assert rig.count(STOP) == 1
        assert len(summaries()) == (2 if where == "queue" else 1)
        assert rig.upstreams["A"].open == 0 and rig.admission.in_flight == 0


async def test_drain_cuts_an_open_stream_and_refuses_the_queue(summaries):
    hold = asyncio.Event()
    async with Rig(Scripted("A"), max_queue=2) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [["a", hold, "b", End(STOP, 1, 2)]]
        generation = await rig.start()
        reading = asyncio.create_task(drain_events(generation))
        await until(lambda: generation.completion == 1)
        queued = asyncio.create_task(rig.loop.start(request(stream=False), Client().receive))
        await until(lambda: rig.admission.waiting == 1)
        rig.loop.drain(0.0)
        with pytest.raises(NotReady, match="shutting down"):
            await queued
        events = await reading
        assert events[0] == "a" and events[-1].reason == "drained" and events[-1].completion_tokens == 1
        with pytest.raises(NotReady, match="shutting down"):
            await rig.start()
        assert rig.count("drained") == 1 and rig.count("unavailable") == 2
        assert len(summaries()) == 3
        assert rig.upstreams["A"].open == 0 and rig.admission.in_flight == 0


async def test_drain_also_cuts_a_stream_whose_first_token_came_after_the_cut(summaries):
    hold = asyncio.Event()
    async with Rig(Scripted("A")) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [[hold, "a", "b", "c", End(STOP, 1, 3)]]
        starting = asyncio.create_task(rig.start())
        await until(lambda: rig.upstreams["A"].open == 1)
        rig.loop.drain(0.0)
        await until(lambda: rig.loop.cutting)
        hold.set()
        events = await drain_events(await starting)
        assert events[0] == "a" and events[-1].reason == "drained"
        assert rig.count("drained") == 1 and len(summaries()) == 1
        assert rig.upstreams["A"].open == 0


async def test_busy_when_the_slots_and_the_queue_are_full(summaries):
    hold = asyncio.Event()
    async with Rig(Scripted("A"), max_queue=1) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [["a", hold, End(STOP, 1, 1)]]
        running = await rig.start()
        queued = asyncio.create_task(rig.loop.start(request(), Client().receive))
        await until(lambda: rig.admission.waiting == 1)
        with pytest.raises(Busy, match=r"busy: 1 generations running on 1 ready slots and 1 waiting \(queue 1\)"):
            await rig.start()
        with pytest.raises(Busy):  # a face's own queue limit (/v1: 0 = answer at once)
            await rig.start(max_queue=0)
        assert rig.count("busy") == 2
        hold.set()
        assert (await drain_events(running))[-1] == End(STOP, 1, 1)
        assert (await drain_events(await queued))[-1] == HELLO[-1]  # the waiter got the slot
        assert rig.count(STOP) == 2 and len(summaries()) == 4


async def test_a_wait_for_a_slot_is_bounded(summaries):
    hold = asyncio.Event()
    async with Rig(Scripted("A"), queue_timeout_s=0.05) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [["a", hold, End(STOP, 1, 1)]]
        running = await rig.start()
        with pytest.raises(Busy, match=r"no generation slot freed within 0\.05s"):
            await rig.start()
        assert rig.admission.waiting == 0 and rig.count("busy") == 1
        hold.set()
        await drain_events(running)


async def test_unavailable_at_once_when_every_upstream_is_down(summaries):
    a, b = Scripted("A"), Scripted("B")
    a.alive = b.alive = False
    async with Rig(a, b) as rig:
        await until(lambda: all(h.down_since for h in rig.lifecycle.health.values()))
        began = time.monotonic()
        with pytest.raises(NotReady) as refused:
            await rig.start()
        assert time.monotonic() - began < 1.0  # loading_wait_s is 30: nothing was waited for
        assert f"no upstream can serve {LLAMA}" in refused.value.msg
        assert "A down since" in refused.value.msg and "B down since" in refused.value.msg
        assert "unreachable" in refused.value.msg
        (line,) = summaries()
        assert ": unavailable (no upstream can serve" in line and rig.count("unavailable") == 1


async def test_unavailable_at_once_when_the_model_is_missing_and_pulling_is_off(summaries):
    a = Scripted("A")
    a.present = set()
    async with Rig(a, pull=False) as rig:
        await until(lambda: rig.lifecycle.states(LLAMA)[0].phase == "missing")
        with pytest.raises(NotReady, match=r"ollama pull llama3\.1:8b"):
            await rig.start()
        assert rig.count("unavailable") == 1 and len(summaries()) == 1 and a.chats == 0


async def test_a_prompt_over_the_limit_is_invalid(summaries):
    async with Rig(Scripted("A"), limits=Limits(max_prompt_chars=10)) as rig:
        await rig.ready()
        with pytest.raises(BadRequest, match="prompt too large: 11 characters > limit 10"):
            await rig.start(content="x" * 11)
        assert rig.upstreams["A"].chats == 0
        (line,) = summaries()
        assert ": invalid (prompt too large" in line and rig.count("invalid") == 1


async def test_an_upstream_that_breaks_its_contract_still_ends_with_one_error(summaries):
    async with Rig(Scripted("A")) as rig:
        await rig.ready()
        # a bug; no End at all, not even to the count that follows each cut
        rig.upstreams["A"].scripts = [["a", ValueError("not JSON")], ["a"], ["a", ValueError("not JSON")], ["a"]]
        for _ in range(2):
            events = await drain_events(await rig.start())
            assert events[0] == "a" and events[-1].reason == ERROR and "internal error" in events[-1].error
        assert rig.count(ERROR) == 2 and len(summaries()) == 2 and rig.admission.in_flight == 0
        rig.upstreams["A"].scripts = [[ValueError("before anything")]]
        with pytest.raises(ValueError):
            await rig.start()
        assert rig.count(ERROR) == 3 and len(summaries()) == 3 and rig.admission.in_flight == 0


# -- failover --------------------------------------------------------------------------------------


async def test_an_upstream_that_fails_before_the_first_token_is_marked_down_and_b_serves(summaries, caplog):
    a, b = Scripted("A"), Scripted("B")
    async with Rig(a, b) as rig:
        await rig.ready()
        a.scripts = [[DIE]]  # A is first in the round robin
        events = await drain_events(await rig.start())
        assert events == HELLO and (a.chats, b.chats) == (1, 1)
        assert rig.lifecycle.health["A"].down_since is not None and not rig.lifecycle.ready_on("A", LLAMA)
        assert rig.sample("llm_runner_upstream_errors_total", upstream="A", kind="unreachable") == 1
        assert "A failed before the first token, trying another upstream" in caplog.text
        (line,) = summaries()
        assert ": stop, 7 prompt + 3 completion tokens" in line and rig.count(STOP) == 1
        await drain_events(await rig.start())  # A stays down: the next one goes to B at once
        assert (a.chats, b.chats) == (1, 2)


async def test_a_retryable_error_before_the_first_token_fails_over_without_marking_down(summaries):
    a, b = Scripted("A"), Scripted("B")
    async with Rig(a, b) as rig:
        await rig.ready()
        a.scripts = [[UpstreamError("upstream_5xx", "Ollama answered 500: model runner has unexpectedly stopped")]]
        assert await drain_events(await rig.start()) == HELLO
        assert rig.lifecycle.health["A"].down_since is None and rig.lifecycle.ready_on("A", LLAMA)
        assert rig.count(STOP) == 1 and len(summaries()) == 1


async def test_a_non_retryable_error_before_the_first_token_is_the_answer(summaries):
    a, b = Scripted("A"), Scripted("B")
    async with Rig(a, b) as rig:
        await rig.ready()
        a.scripts = [[UpstreamError("bad_request", "Ollama answered 400: invalid format")]]
        with pytest.raises(UpstreamError, match="invalid format"):
            await rig.start()
        assert b.chats == 0
        (line,) = summaries()
        assert ": error (Ollama answered 400: invalid format)" in line and rig.count(ERROR) == 1


async def test_when_the_only_upstream_dies_before_the_first_token_the_answer_says_since_when(summaries):
    async with Rig(Scripted("A")) as rig:
        await rig.ready()
        rig.upstreams["A"].scripts = [[DIE]]
        with pytest.raises(NotReady, match=r"no upstream can serve .*: A down since \d\d:\d\d:\d\d UTC"):
            await rig.start()
        assert rig.count("unavailable") == 1 and len(summaries()) == 1
        assert rig.sample("llm_runner_upstream_errors_total", upstream="A", kind="unreachable") == 1


async def test_the_slot_of_an_upstream_that_just_failed_is_not_handed_to_a_waiter(summaries):
    hold_a, hold_b = asyncio.Event(), asyncio.Event()
    a, b = Scripted("A"), Scripted("B")
    async with Rig(a, b) as rig:
        await rig.ready()
        a.scripts = [[hold_a, DIE]]  # dies before its first token, while a request waits for a slot
        b.scripts = [["b", hold_b, End(STOP, 1, 1)]]
        first = asyncio.create_task(rig.start())
        await until(lambda: a.open == 1)
        on_b = await rig.start()
        waiter = asyncio.create_task(rig.loop.start(request(), Client().receive))
        await until(lambda: rig.admission.waiting == 1)
        hold_a.set()
        await until(lambda: rig.admission.waiting == 2)  # the failed one queues again, behind it
        assert a.chats == 1  # A's freed slot went to nobody: A is down
        hold_b.set()
        await drain_events(on_b)
        for task in (waiter, first):
            assert await drain_events(await task) == HELLO
        assert (a.chats, b.chats) == (1, 3) and rig.count(STOP) == 3 and len(summaries()) == 3


async def test_an_unexpected_answer_while_checking_a_model_does_not_stop_its_supervisor(caplog):
    a = Scripted("A")
    a.show_faults = [RuntimeError("1 validation error for ShowResponse")]
    async with Rig(a) as rig:
        await rig.ready()  # checked again at the next probe
        assert "checking llama3.1:8b failed" in caplog.text and "RuntimeError: 1 validation error" in caplog.text
        assert await drain_events(await rig.start()) == HELLO


# -- the router ------------------------------------------------------------------------------------


async def test_the_upstream_with_most_free_slots_wins_and_ties_go_round_robin():
    a, b = Scripted("A", slots=2), Scripted("B", slots=1)
    async with Rig(a, b) as rig:
        await rig.ready()
        pick = rig.router.pick
        first = pick(LLAMA, frozenset())  # A: 2 free, B: 1
        assert first.upstream is a
        second = pick(LLAMA, frozenset())  # 1 and 1: a tie
        third = pick(LLAMA, frozenset())
        assert {second.upstream.name, third.upstream.name} == {"A", "B"}
        assert pick(LLAMA, frozenset()) is None  # every slot taken
        assert pick(LLAMA, frozenset({"A"})) is None
        for lease in (first, second, third):
            lease.release()
            lease.release()  # idempotent
        assert rig.router.in_flight == 0
        a.slots = 1
        turns = []
        for _ in range(4):
            lease = pick(LLAMA, frozenset())
            turns.append(lease.upstream.name)
            lease.release()
        assert turns in (["A", "B", "A", "B"], ["B", "A", "B", "A"])


async def test_an_upstream_serving_a_subset_never_gets_other_models():
    only_llama, both = Scripted("A", slots=4, models=frozenset({LLAMA})), Scripted("B")
    async with Rig(only_llama, both, models=(LLAMA, QWEN)) as rig:
        await rig.ready()
        assert rig.lifecycle.capacity(QWEN) == 1 and rig.lifecycle.capacity(LLAMA) == 5
        held = rig.router.pick(QWEN, frozenset())
        assert held.upstream is both
        assert rig.router.pick(QWEN, frozenset()) is None  # A has 4 free slots, but not for Qwen
        held.release()
        for _ in range(3):
            assert (await drain_events(await rig.start(QWEN)))[-1].reason == STOP
        assert only_llama.chats == 0 and both.tags_asked == ["qwen2.5:7b"] * 3


# -- admission follows the upstreams ---------------------------------------------------------------


async def test_capacity_shrinks_when_an_upstream_goes_down_and_grows_when_it_is_back():
    a, b = Scripted("A", slots=2), Scripted("B", slots=1)
    async with Rig(a, b) as rig:
        await rig.ready()
        assert rig.router.capacity == 3
        a.alive = False
        await until(lambda: rig.router.capacity == 1)
        assert rig.lifecycle.health["A"].down_since is not None and rig.lifecycle.is_ready(LLAMA)
        assert rig.router.pick(LLAMA, frozenset()).upstream is b
        a.alive = True
        await until(lambda: rig.router.capacity == 3)
        assert rig.lifecycle.health["A"].down_since is None


async def test_a_queued_request_is_released_when_the_last_upstream_serving_its_model_dies(summaries):
    hold = asyncio.Event()
    a = Scripted("A")
    async with Rig(a) as rig:
        await rig.ready()
        a.scripts = [["a", hold, UpstreamError("truncated", "connection to Ollama broke")]]
        running = await rig.start()
        queued = asyncio.create_task(rig.loop.start(request(), Client().receive))
        await until(lambda: rig.admission.waiting == 1)
        a.alive = False
        rig.lifecycle.report_failure("A", LLAMA, UpstreamError("unreachable", "A is unreachable (refused)"))
        with pytest.raises(NotReady, match=f"no upstream can serve {LLAMA}: A down since .*A is unreachable"):
            await asyncio.wait_for(queued, 1.0)
        assert rig.admission.waiting == 0 and rig.router.capacity == 0
        hold.set()
        assert (await drain_events(running))[-1].reason == ERROR
        assert rig.count("unavailable") == 1 and rig.count(ERROR) == 1 and len(summaries()) == 2


async def test_a_probe_that_finds_the_upstream_gone_releases_the_queue_too(summaries):
    hold = asyncio.Event()
    a = Scripted("A")
    async with Rig(a) as rig:
        await rig.ready()
        a.scripts = [["a", hold, End(STOP, 1, 1)]]
        running = await rig.start()
        queued = asyncio.create_task(rig.loop.start(request(), Client().receive))
        await until(lambda: rig.admission.waiting == 1)
        a.alive = False  # nobody reports it: the lifecycle's own probe notices
        with pytest.raises(NotReady, match="A down since"):
            await asyncio.wait_for(queued, 2.0)
        hold.set()
        await drain_events(running)
        assert rig.count("unavailable") == 1 and len(summaries()) == 2


async def test_a_queued_request_keeps_waiting_while_another_upstream_serves_its_model(summaries):
    hold_a, hold_b = asyncio.Event(), asyncio.Event()
    a, b = Scripted("A"), Scripted("B")
    async with Rig(a, b) as rig:
        await rig.ready()
        a.scripts = [["a", hold_a, UpstreamError("truncated", "broke")]]
        b.scripts = [["b", hold_b, End(STOP, 1, 1)]]
        on_a, on_b = await rig.start(), await rig.start()
        assert (on_a.lease.upstream, on_b.lease.upstream) == (a, b)
        queued = asyncio.create_task(rig.loop.start(request(), Client().receive))
        await until(lambda: rig.admission.waiting == 1)
        a.alive = False
        rig.lifecycle.report_failure("A", LLAMA, UpstreamError("unreachable", "A is unreachable"))
        await until(lambda: rig.router.capacity == 1)
        assert not queued.done() and rig.admission.waiting == 1  # B still serves Llama
        hold_a.set()
        assert (await drain_events(on_a))[-1].reason == ERROR
        assert not queued.done()  # the slot A freed is on a dead upstream
        hold_b.set()
        assert (await drain_events(on_b))[-1].reason == STOP
        generation = await asyncio.wait_for(queued, 1.0)
        assert generation.lease.upstream is b
        assert (await drain_events(generation))[-1].reason == STOP
        assert rig.count(STOP) == 2 and rig.count(ERROR) == 1 and len(summaries()) == 3
