"""Added time to first token of the OpenAI upstream kind, beside the Ollama kind.

For each kind, the same client times the first token straight from the engine and through the runner
(/llm and /v1), one request at a time on kept connections (as go-livepeer keeps them), and reports
the medians and what the runner adds. Two pairs:
- scripted engines (tests/support/standin.py and tests/support/openai_standin.py): no compute, so the difference is
  the relay itself;
- real engines on the same GGUF, when llama-cpp-python and the bundled SmolLM2 are installed: the
  embedded engine (Ollama's API over llama.cpp) and llama-cpp-python's OpenAI server.

Run: python -m bench.openai_ttft [--rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import re
import statistics

from bench.loadgen import (
    MESSAGES,
    TAG,
    Connections,
    Target,
    direct_target,
    one_stream,
    openai_target,
    runner_target,
)
from llm_runner.engine.registry import BUNDLED_TAG, bundled_gguf
from tests.conftest import LLAMA
from tests.support.servers import Engine, LlamaCppServer, OpenAIStandIn, Runner, StandIn

SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
TOKENS = 8
_CONTENT = re.compile(rb'"content": ?"(?!")')  # a delta with text (not the role chunk's "")


def engine_target(url: str, model: str, max_tokens: int) -> Target:
    """Straight to an OpenAI-compatible engine, with the body the runner would send."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "stream": True}
    body |= {"stream_options": {"include_usage": True}, "temperature": 0.7, "top_p": 1.0}
    return Target("direct", url + "/v1/chat/completions", body, lambda line: bool(_CONTENT.search(line)))


async def ttft_ms(targets: dict[str, Target], rounds: int) -> dict[str, float]:
    """Median TTFT per target, interleaved round by round so drift hits all alike."""
    pools = {name: Connections() for name in targets}
    seen: dict[str, list[float]] = {name: [] for name in targets}
    for name, target in targets.items():  # one untimed request each: connections open, caches warm
        await one_stream(target, pools[name])
    for _ in range(rounds):
        for name, target in targets.items():
            sample = await one_stream(target, pools[name])
            assert not sample.error and sample.tokens, (name, sample.error)
            seen[name].append(sample.ttft * 1000)
    for pool in pools.values():
        pool.close()
    return {name: statistics.median(values) for name, values in seen.items()}


async def pair(kind: str, direct: Target, model: str, host: str, rounds: int) -> dict:
    with Runner({"MODEL_ID": model, "OLLAMA_HOST": host}) as runner:
        runner.wait_status("OK", timeout=120)
        targets = {
            "direct": direct,
            "/llm": runner_target(runner.url, TOKENS, model),
            "/v1": openai_target(runner.url, TOKENS, model),
        }
        medians = await ttft_ms(targets, rounds)
    row = {"kind": kind, **{k: round(v, 2) for k, v in medians.items()}}
    row |= {f"added {face}": round(medians[face] - medians["direct"], 2) for face in ("/llm", "/v1")}
    print(
        f"{kind:<34} direct {medians['direct']:7.2f} ms   /llm {medians['/llm']:7.2f} ms "
        f"(+{row['added /llm']:.2f})   /v1 {medians['/v1']:7.2f} ms (+{row['added /v1']:.2f})",
        flush=True,
    )
    return row


async def main(rounds: int) -> list[dict]:
    rows = []
    with StandIn() as ollama, OpenAIStandIn() as engine:
        direct = direct_target(ollama.url, TOKENS, TAG)
        rows.append(await pair("scripted Ollama", direct, LLAMA, ollama.url, rounds))
        direct = engine_target(engine.url, LLAMA, TOKENS)
        rows.append(await pair("scripted OpenAI engine", direct, LLAMA, engine.entry, rounds))
    gguf = bundled_gguf()
    if importlib.util.find_spec("llama_cpp") is None or gguf is None:
        print("real engines skipped: llama-cpp-python or the bundled SmolLM2 is not installed")
        return rows
    real_rounds = max(5, rounds // 3)
    with Engine() as embedded:
        options = {"temperature": 0.7, "top_p": 1.0, "num_ctx": 4096}  # what the runner sends: no reload
        direct = direct_target(embedded.url, TOKENS, BUNDLED_TAG, options)
        rows.append(await pair("embedded engine (Ollama API)", direct, SMOLLM, embedded.url, real_rounds))
    server = LlamaCppServer(gguf, SMOLLM)
    server.start(timeout=120)
    try:
        direct = engine_target(server.url, SMOLLM, TOKENS)
        rows.append(await pair("llama_cpp.server (OpenAI API)", direct, SMOLLM, "openai+" + server.url, real_rounds))
    finally:
        server.stop()
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.rounds))


if __name__ == "__main__":
    cli()
