"""The output-token cap of a runner priced per call.

go-livepeer's `fixed` price_info is one payment per call, taken at reservation, before the work: the
price covers at most the tokens it was set for (`llm-runner price`). Past that the operator serves
for free, or the caller is billed by its gateway for tokens nobody paid the orchestrator for. So a
call that asks more, or asks nothing while the model's default (num_predict = num_ctx) could run
past the cap, is refused before any work: applying the cap silently would cut the answer of a
client that asked for a whole one, and it would learn why only from `finish_reason: length`.
"""

from __future__ import annotations

from llm_runner.core.errors import BadRequest


def check_cap(max_tokens: int | None, cap: int | None, num_ctx: int) -> None:
    """Raise BadRequest (param `max_tokens`) when the call may produce more than `cap` tokens."""
    if cap is None:
        return
    why = f"this runner's price per call covers at most {cap} output tokens (LLM_RUNNER_MAX_TOKENS_CAP)"
    if max_tokens is None and num_ctx > cap:
        raise BadRequest(
            f"max_tokens is required here and at most {cap}: {why}, and without it a generation may "
            f"run to the context window ({num_ctx} tokens)",
            param="max_tokens",
        )
    if max_tokens is not None and max_tokens > cap:
        raise BadRequest(f"max_tokens {max_tokens} is over the cap of {cap}: {why}", param="max_tokens")
