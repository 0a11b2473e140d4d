"""Embedded engine decode speed, straight from the engine and through the runner's /llm.

Both paths send the same request (same prompt, options and context) and are timed by the same
client from the first to the last token; the runner talks to the engine exactly as to Ollama.
"""

from __future__ import annotations

import statistics

from bench.loadgen import direct_target, one_stream, runner_target
from llm_runner.engine.registry import BUNDLED_TAG as TAG
from tests.support.servers import Engine, Runner

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"

TOKENS = 256
ROUNDS = 5


async def engine_bench() -> dict:
    # The runner sends these with every request; the direct request must match (no reload).
    options = {"temperature": 0.7, "top_p": 1.0, "num_ctx": 4096}
    with Engine() as engine, Runner({"OLLAMA_HOST": engine.url, "MODEL_ID": SMOLLM}) as runner:
        runner.wait_status("OK", timeout=120)
        direct, bridged = [], []
        for _ in range(ROUNDS):
            d = await one_stream(direct_target(engine.url, TOKENS, TAG, options))
            r = await one_stream(runner_target(runner.url, TOKENS, SMOLLM))
            assert not d.error and not r.error, (d.error, r.error)
            direct.append(d.tokens_per_s)
            bridged.append(r.tokens_per_s)
    report = {
        "tokens_per_request": TOKENS,
        "rounds": ROUNDS,
        "direct_tokens_per_s": statistics.median(direct),
        "runner_tokens_per_s": statistics.median(bridged),
        "all_direct": direct,
        "all_runner": bridged,
    }
    report["ratio"] = report["runner_tokens_per_s"] / report["direct_tokens_per_s"]
    print(
        f"embedded engine decode: {report['direct_tokens_per_s']:.1f} tok/s direct, "
        f"{report['runner_tokens_per_s']:.1f} tok/s through /llm ({report['ratio'] * 100:.1f} %)"
    )
    return report
