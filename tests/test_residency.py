"""Several models on one small GPU, in-process over scripted upstreams: what is loaded is observed,
the runner (not the upstream) swaps, never under a stream, serves what is loaded first for a bounded
time, bounds the swaps per minute, refuses a partly offloaded model, learns from an upstream that
unloads behind its back, and a canary takes a GPU that stopped generating out of service."""

from __future__ import annotations

import asyncio

import pytest

from llm_runner.core.errors import Busy
from llm_runner.core.events import STOP
from llm_runner.upstream.canary import CanaryPolicy
from llm_runner.upstream.residency import ResidencyPolicy
from llm_runner.upstream.shares import SharesError, check_capacities, split_slots
from llm_runner.upstream.states import ERROR, OK
from tests.test_core_loop import HELLO, LLAMA, QWEN, TAGS, Rig, Scripted, drain_events, until

SMALL_GPU = {"A": (8000, "test")}  # MB: one 5000 MB model fits, two do not


def policy(**kw: object) -> ResidencyPolicy:
    base: dict = {"need_mb": {LLAMA: 5000, QWEN: 5000}, "vram_mb": SMALL_GPU, "swap_wait_s": 0.2}
    return ResidencyPolicy(**(base | kw))


def state(rig: Rig, model: str, upstream: str = "A"):
    return rig.lifecycle.health[upstream].models[model]


async def test_residency_is_read_from_ps_after_every_load():
    async with Rig(Scripted("A"), models=(LLAMA, QWEN)) as rig:  # no VRAM figure: both fit as far as we know
        await rig.ready()
        await until(lambda: state(rig, LLAMA).resident and state(rig, QWEN).resident)
        assert state(rig, LLAMA).size_mb == 5000 and state(rig, LLAMA).offload == 0
        assert not rig.lifecycle.health["A"].swapping


async def test_models_that_do_not_fit_are_loaded_one_at_a_time_and_swapped_on_demand():
    upstream = Scripted("A")
    async with Rig(upstream, models=(LLAMA, QWEN), residency=policy()) as rig:
        await rig.ready()
        assert rig.lifecycle.health["A"].swapping
        assert set(upstream.loaded) == {TAGS[LLAMA]}  # only what fits was loaded at start
        assert rig.lifecycle.is_ready(QWEN)  # servable: a swap loads it
        assert await drain_events(await rig.start(QWEN)) == HELLO
        assert upstream.unloads == [TAGS[LLAMA]] and set(upstream.loaded) == {TAGS[QWEN]}
        assert await drain_events(await rig.start(LLAMA)) == HELLO  # and back
        assert set(upstream.loaded) == {TAGS[LLAMA]}
        assert upstream.cold_chats == 0  # never a generation for a model that was not loaded
        assert rig.lifecycle.health["A"].swaps == 2
        assert state(rig, QWEN).load_s is not None


async def test_a_swap_never_unloads_a_model_with_a_stream_open():
    upstream = Scripted("A", slots=2)
    held = asyncio.Event()
    upstream.scripts = [["first", held, "last", upstream_end()]]
    async with Rig(upstream, models=(LLAMA, QWEN), residency=policy(swap_wait_s=0)) as rig:
        await rig.ready()
        streaming = await rig.start(LLAMA)
        other = asyncio.create_task(rig.start(QWEN))
        await until(lambda: state(rig, LLAMA).evicting)  # the swap is decided: LLAMA takes no new work
        for _ in range(50):
            await asyncio.sleep(0)
        assert upstream.unloads == [] and not other.done()  # but it is not unloaded under the stream
        held.set()
        assert [e for e in await drain_events(streaming) if isinstance(e, str)] == ["first", "last"]
        assert await drain_events(await other) == HELLO
        assert upstream.unloads == [TAGS[LLAMA]] and upstream.cold_chats == 0


async def test_the_loaded_model_is_served_first_until_the_other_has_waited_swap_wait_s():
    upstream = Scripted("A")
    held = asyncio.Event()
    upstream.scripts = [["a", held, upstream_end()]]
    async with Rig(upstream, models=(LLAMA, QWEN), residency=policy(swap_wait_s=0.3)) as rig:
        await rig.ready()
        first = await rig.start(LLAMA)
        queued_llama = asyncio.create_task(rig.start(LLAMA))
        queued_qwen = asyncio.create_task(rig.start(QWEN))
        await until(lambda: rig.admission.waiting == 2)
        started = asyncio.get_running_loop().time()
        await until(lambda: state(rig, LLAMA).evicting, within=3)  # only after the bounded wait
        assert asyncio.get_running_loop().time() - started >= 0.25
        held.set()
        await drain_events(first)
        assert await drain_events(await queued_qwen) == HELLO  # the swap served the one that waited
        assert await drain_events(await queued_llama) == HELLO  # then back for the other
        assert rig.lifecycle.health["A"].swaps == 2 and upstream.cold_chats == 0


async def test_swaps_per_minute_are_bounded_and_a_request_that_cannot_be_loaded_in_time_is_refused_at_once():
    upstream = Scripted("A")
    async with Rig(upstream, models=(LLAMA, QWEN), residency=policy(max_swaps_per_minute=1), queue_timeout_s=5) as rig:
        await rig.ready()
        assert await drain_events(await rig.start(QWEN)) == HELLO  # the minute's one swap
        with pytest.raises(Busy) as refused:
            await rig.start(LLAMA)
        assert refused.value.retry_after_s > 5 and "swaps allowed per minute" in refused.value.msg
        assert rig.count("busy") == 1
        assert set(upstream.loaded) == {TAGS[QWEN]}  # nothing thrashed


async def test_a_partly_offloaded_model_is_refused_unless_allowed():
    upstream = Scripted("A")
    upstream.sizes[TAGS[LLAMA]] = (9000, 6000)  # a third of it on the CPU
    async with Rig(upstream, residency=policy(vram_mb={})) as rig:
        await until(lambda: state(rig, LLAMA).status == ERROR)
        assert "33% on the CPU" in state(rig, LLAMA).detail and "LLM_RUNNER_ALLOW_OFFLOAD" in state(rig, LLAMA).detail
        assert TAGS[LLAMA] not in upstream.loaded  # not left hogging the GPU
    upstream = Scripted("A")
    upstream.sizes[TAGS[LLAMA]] = (9000, 6000)
    async with Rig(upstream, residency=policy(vram_mb={}, allow_offload=True)) as rig:
        await rig.ready()
        assert state(rig, LLAMA).offload == pytest.approx(1 / 3)


async def test_an_upstream_that_unloads_behind_our_back_teaches_the_runner_to_swap_itself():
    upstream = Scripted("A")
    upstream.exclusive = True  # each load evicts the other model, as Ollama short of VRAM does
    async with Rig(upstream, models=(LLAMA, QWEN), residency=policy(vram_mb={})) as rig:
        await rig.ready()
        health = rig.lifecycle.health["A"]
        await until(lambda: health.swapping)
        assert health.unplanned_unloads == 1 and health.vram_source == "observed"
        for model in (LLAMA, QWEN, LLAMA):
            assert await drain_events(await rig.start(model)) == HELLO
        assert upstream.cold_chats == 0  # from then on, each generation found its model loaded


async def test_a_canary_takes_a_gpu_that_stopped_generating_out_of_service_and_back():
    upstream = Scripted("A")
    wedged = asyncio.Event()  # never set while the GPU is wedged
    canary = CanaryPolicy(idle_s=0.01, timeout_s=0.05, failures_to_flip=2)
    async with Rig(upstream, canary=canary) as rig:
        await rig.ready()
        upstream.scripts = [[wedged]] * 1000
        await until(lambda: not rig.lifecycle.is_ready(LLAMA), within=3)
        assert "canaries in a row" in state(rig, LLAMA).detail
        assert state(rig, LLAMA).canary_failures >= 2
        upstream.scripts = []
        await until(lambda: rig.lifecycle.is_ready(LLAMA), within=3)
        assert rig.lifecycle.flips[LLAMA] >= 2


async def test_a_slow_canary_is_not_a_failure_and_one_failure_does_not_flip():
    upstream = Scripted("A")
    slow = asyncio.Event()
    canary = CanaryPolicy(idle_s=0.01, timeout_s=1.0, failures_to_flip=2)
    async with Rig(upstream, canary=canary) as rig:
        await rig.ready()
        asyncio.get_running_loop().call_later(0.3, slow.set)
        upstream.scripts = [[slow, upstream_end()], [asyncio.Event()], *[[upstream_end()]] * 200]
        await until(lambda: upstream.chats >= 5, within=5)  # slow, then one timeout, then healthy ones
        assert rig.lifecycle.flips[LLAMA] == 1  # only the first ready; never taken out
        assert state(rig, LLAMA).status == OK


def upstream_end():
    from llm_runner.core.events import End

    return End(STOP, 1, 1)


@pytest.mark.parametrize(
    ("slots", "serves", "expected"),
    [
        ({"A": 2}, {"A": ["m1", "m2"]}, {"m1": 1, "m2": 1}),
        ({"A": 3}, {"A": ["m1", "m2"]}, {"m1": 2, "m2": 1}),
        ({"A": 2, "B": 2}, {"A": ["m1"], "B": ["m1", "m2"]}, {"m1": 3, "m2": 1}),
        ({"A": 4}, {"A": ["m1"]}, {"m1": 4}),
    ],
)
def test_slots_are_split_so_the_advertised_sum_never_exceeds_them(slots, serves, expected):
    assert split_slots(slots, serves) == expected
    assert sum(expected.values()) <= sum(slots.values())


def test_too_few_slots_for_the_models_is_refused_or_given_to_the_first():
    with pytest.raises(SharesError, match="2 models"):
        split_slots({"A": 1}, {"A": ["m1", "m2"]})
    assert split_slots({"A": 1}, {"A": ["m1", "m2"]}, strict=False) == {"m1": 1, "m2": 0}


@pytest.mark.parametrize(
    ("capacities", "ok"),
    [
        ({"m1": 1, "m2": 1}, True),
        ({"m1": 2, "m2": 1}, False),  # 3 on A's 2 slots
        ({"m1": 2, "m2": 0}, False),  # every model needs one
    ],
)
def test_explicit_capacities_are_checked_against_the_slots(capacities, ok):
    if ok:
        check_capacities(capacities, {"A": 2}, {"A": ["m1", "m2"]})
    else:
        with pytest.raises(SharesError):
            check_capacities(capacities, {"A": 2}, {"A": ["m1", "m2"]})


def test_capacities_over_several_upstreams_are_checked_for_every_group():
    slots, serves = {"A": 2, "B": 2}, {"A": ["m1"], "B": ["m1", "m2"]}
    check_capacities({"m1": 3, "m2": 1}, slots, serves)
    with pytest.raises(SharesError, match="m1 3 \\+ m2 2"):
        check_capacities({"m1": 3, "m2": 2}, slots, serves)
