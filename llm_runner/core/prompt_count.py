"""The prompt tokens of a generation cut before its upstream's last chunk.

Ollama (and the embedded engine, and OpenAI-compatible engines with `include_usage`) report the
prompt's token count only in a stream's final chunk, which a cut stream never gets: a client that
left, a drain cut, a second interrupt, a failure mid-stream. Ollama has no tokenize endpoint, so
the count comes from a one-token follow-up generation with the same messages, options, tools and
format: Ollama's `prompt_eval_count` counts every prompt token, the ones its cache held included
(the runner's `len(inputs)` before cache reuse; llama-server's `cache_n + prompt_n`), after the
same truncation to num_ctx, so it equals what the cut generation evaluated. The prefix is still in
the upstream's cache, so it costs about one token's work; it is bounded by a few seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from llm_runner.core.errors import UpstreamError
from llm_runner.core.events import End
from llm_runner.core.request import GenerationRequest

if TYPE_CHECKING:
    from llm_runner.upstream.base import Upstream

COUNT_TIMEOUT_S = 5.0


async def count_prompt(upstream: Upstream, tag: str, request: GenerationRequest, think_off: bool) -> tuple[int, str]:
    """(prompt tokens, "") or (0, why they could not be counted)."""
    probe = dataclasses.replace(request, stream=False, max_tokens=1, top_logprobs=None)
    events = upstream.chat(tag, probe, think_off=think_off)
    try:
        async with asyncio.timeout(COUNT_TIMEOUT_S):
            async for event in events:
                if type(event) is End:
                    return event.prompt_tokens, ""
    except UpstreamError as exc:
        return 0, exc.msg
    except TimeoutError:
        return 0, f"the upstream did not answer the count within {COUNT_TIMEOUT_S:g}s"
    finally:
        await events.aclose()
    return 0, "the upstream's count ended without usage"
