"""Cold start: from `llm-runner serve` being started to the first streamed token, against the Ollama
stand-in and with the embedded engine (which loads its model in a child process).

    python -m bench.coldstart [--runs 3]

Each run starts a fresh runner process and sends one streaming /llm request as soon as the port
accepts connections; the request itself waits (bounded) while the model loads, as a job would.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from tests.support.servers import Runner, StandIn

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"


def first_token_after_start(env: dict[str, str], model: str) -> tuple[float, float]:
    """(seconds to /health answering, seconds to the first streamed token), both from process start."""
    started = time.monotonic()
    runner = Runner(env)
    runner.start(timeout=120)
    listening = time.monotonic() - started
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True}
    try:
        with httpx.stream("POST", runner.url + "/llm", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and '"finish_reason":""' in line:
                    return listening, time.monotonic() - started
        raise RuntimeError(f"no token: {response.status_code}")
    finally:
        runner.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with StandIn() as ollama:
        setups = {
            "Ollama stand-in (model present)": ({"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA}, LLAMA),
            "embedded engine (SmolLM2-135M)": ({"LLM_RUNNER_BACKEND": "embedded"}, SMOLLM),
        }
        print("| backend | port answers, p50 | first streamed token, p50 (min–max) |")
        print("|---|---|---|")
        for name, (env, model) in setups.items():
            runs = [first_token_after_start(env, model) for _ in range(args.runs)]
            listen = statistics.median(r[0] for r in runs)
            first = [r[1] for r in runs]
            print(f"| {name} | {listen:.2f} s | {statistics.median(first):.2f} s ({min(first):.2f}–{max(first):.2f}) |")


if __name__ == "__main__":
    main()
