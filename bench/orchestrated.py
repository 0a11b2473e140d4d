"""A live runner soak through the stand-in orchestrator: `python -m bench.orchestrated --minutes 10`.

The orchestrator (tests/support/orchestrator.py, written from go-livepeer's live_runner.go) loads the
runners.json that `llm-runner runners-json` writes, polls the readiness URL every 5 s with a 3 s
timeout (its real cadence: one failed check would release every session), and proxies N streams
of OpenAI chat at a time to the runner for the whole soak. Prints the orchestrator's own counts.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.loadgen import LLAMA, one_stream, openai_target
from tests.support.orchestrator import Orchestrator
from tests.support.servers import ROOT, Runner, StandIn

SLUG = LLAMA.replace("/", "--")


async def load(url: str, streams: int, seconds: float) -> tuple[int, int]:
    target = openai_target(url, 60, path=f"/apps/{SLUG}/app/v1/chat/completions")
    done = failed = 0
    stop_at = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done, failed
        while time.monotonic() < stop_at:
            sample = await one_stream(target)
            if sample.error or sample.tokens == 0:
                failed += 1
            else:
                done += 1

    await asyncio.gather(*(client() for _ in range(streams)))
    return done, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--streams", type=int, default=64)
    args = parser.parse_args()
    with StandIn() as ollama, tempfile.TemporaryDirectory() as folder:
        ollama.script(tokens=60, token_rate=60)
        env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": str(args.streams)}
        with Runner(env) as runner:
            runner.wait_status("OK")
            path = Path(folder) / "runners.json"
            command = [sys.executable, "-m", "llm_runner", "runners-json", "--url", runner.url, "--no-gpu"]
            command += ["--model-id", LLAMA, "--capacity", str(args.streams), "--write", str(path)]
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            with Orchestrator(runners=path, health_interval=5.0, health_timeout=3.0) as orch:
                asyncio.run(orch.until(lambda s: Orchestrator.runner(s, SLUG)["status"] == "ready", within=30))
                done, failed = asyncio.run(load(orch.url, args.streams, args.minutes * 60))
                stats = Orchestrator.runner(orch.stats(), SLUG)
    print(
        f"{args.minutes:g} min, {args.streams} streams through the orchestrator: {done} streams served, "
        f"{failed} failed; orchestrator health checks {stats['checks']}, failed {stats['failed_checks']}, "
        f"sessions released by it {stats['sessions_released']}, status at the end {stats['status']}"
    )


if __name__ == "__main__":
    main()
