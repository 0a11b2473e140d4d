"""A canary for a GPU that breaks while its server lives (vLLM #36960 describes the case: the process
answers its health check, every generation hangs or fails). A version probe cannot see it; only a
generation can. So a model idle for a while gets a one-token generation, bounded in time.

One slow answer is not a failure (it ends within the timeout), and one failure is not enough:
`failures_to_flip` in a row make the model not ready, named in the log; one success makes it ready
again. A healthy runner therefore never flips on a canary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from llm_runner.core.errors import UpstreamError
from llm_runner.core.events import End
from llm_runner.core.request import GenerationRequest, Message
from llm_runner.upstream.base import Upstream
from llm_runner.upstream.states import CANARY, LOADING, OK, READY, UpstreamHealth

log = logging.getLogger("llm_runner.canary")


@dataclass(frozen=True)
class CanaryPolicy:
    idle_s: float = 300.0  # a model idle this long gets a canary (0: never)
    timeout_s: float = 30.0  # longer than this is a failure
    failures_to_flip: int = 2


async def sing(upstream: Upstream, model_id: str, tag: str, timeout_s: float, think_off: bool) -> str | None:
    """One token from the model: None when it came within the timeout, else what went wrong."""
    request = GenerationRequest(model_id, [Message("user", "Say OK.")], max_tokens=1, temperature=0.0)
    events = upstream.chat(tag, request, think_off=think_off)
    try:
        async with asyncio.timeout(timeout_s):
            async for event in events:
                if type(event) is End:
                    return None
        return "the generation ended without its end"
    except TimeoutError:
        return f"no token within {timeout_s:g}s"
    except UpstreamError as exc:
        return exc.msg
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def check_idle(
    upstream: Upstream,
    health: UpstreamHealth,
    policy: CanaryPolicy,
    think_off: Callable[[str], bool],
    notify: Callable[[], None],
) -> None:
    """A canary for each model idle past `idle_s` on this upstream while nothing else runs there, and
    again for each model a canary took out of service."""
    if not policy.idle_s:
        return
    for state in health.models.values():
        idle = time.monotonic() - state.last_used >= policy.idle_s
        due = state.phase == CANARY or (state.status == OK and state.resident and idle)
        if not due or health.in_flight:
            continue
        health.in_flight += 1  # the router counts it: no request is given this slot meanwhile
        state.last_used = time.monotonic()
        try:
            failure = await sing(upstream, state.model_id, state.tag, policy.timeout_s, think_off(state.model_id))
        finally:
            health.in_flight -= 1
        if failure is None:
            state.canary_failures = 0
            if state.phase == CANARY:
                state.set(OK, READY, f"ready ({state.tag}): the canary answers again")
                notify()
            continue
        state.canary_failures += 1
        log.warning(
            "%s on %s: canary failed (%d in a row): %s", state.model_id, upstream.name, state.canary_failures, failure
        )
        if state.canary_failures >= policy.failures_to_flip and state.phase != CANARY:
            state.set(
                LOADING,
                CANARY,
                f"the GPU stopped generating ({state.canary_failures} canaries in a row: {failure}) while "
                "the upstream process still answers: check the GPU (nvidia-smi) and restart the upstream",
            )
            notify()
