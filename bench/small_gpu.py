"""Two models on one small GPU, demand shifting between them: `python -m bench.small_gpu --minutes 2`.

The Ollama stand-in's GPU has 8 GB and is scheduled as Ollama's sched.go (tests/support/standin_gpu.py): one
of Llama 3.1 8B (6.4 GB) and Qwen2.5 7B (5.6 GB) fits at a time, a load takes `--load-s`. Clients
send streams without pause; every `--phase-s` the demand flips between 90 % Llama and 90 % Qwen
(the same seeded schedule in each run). Three runs, one after the other:

1. Ollama alone: the clients call the stand-in's /api/chat directly (Ollama swaps by itself).
2. Static live runner: `llm-runner runners-json` (capacity split 1 + 1 over 2 slots) loaded by the
   stand-in orchestrator (go-livepeer's 5 s / 3 s health poll), clients through its single-shot proxy.
3. Dynamic live runner: the runner registers both models itself and heartbeats their capacity.

Printed per run: streams served; refused by the orchestrator (full: not admitted, nothing paid);
admitted by the orchestrator and then refused by the runner (goal 0); streams that waited through a
load (first token later than `--load-s` / 2) and their p99 wait; swaps per minute (the runner's) and
Ollama's own evictions; failed health checks and sessions released (goal 0); for dynamic
registration, the largest capacity sum the orchestrator held at any heartbeat against the slots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.loadgen import quantile
from llm_runner.engine.launcher import free_port
from tests.support.orchestrator import Orchestrator
from tests.support.servers import ROOT, Runner, StandIn

LLAMA, QWEN = "meta-llama/Meta-Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct"
TAGS = {LLAMA: "llama3.1:8b", QWEN: "qwen2.5:7b"}
SLOTS = 2
SECRET = "bench-orch-secret"
MESSAGES = [{"role": "user", "content": "Tell a robot story."}]


@dataclass
class Tally:
    served: int = 0
    not_admitted: int = 0  # the orchestrator said no (503 text/plain): nothing was paid
    refused_after_admission: int = 0  # the runner said no to a request the orchestrator admitted
    failed: int = 0  # transport errors, cut streams
    swap_waits: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)


async def stream(client: httpx.AsyncClient, url: str, body: dict, tally: Tally, slow_s: float) -> None:
    started = time.monotonic()
    first = None
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                if response.status_code == 503 and not text.startswith("{"):
                    tally.not_admitted += 1  # go's http.Error: "no capacity available for runner"
                else:
                    tally.refused_after_admission += 1
                return
            async for line in response.aiter_lines():
                if first is None and line.startswith(("data: {", "{")):
                    first = time.monotonic() - started
                if line.strip() in ("data: [DONE]",) or '"done":true' in line:
                    break
    except httpx.HTTPError:
        tally.failed += 1
        return
    tally.served += 1
    if first is not None:
        tally.first_tokens.append(first)
        if first > slow_s:
            tally.swap_waits.append(first)


async def drive(urls: dict[str, str], bodies: dict[str, dict], args: argparse.Namespace) -> Tally:
    """`--streams` clients for `--minutes`, each picking a model by the phase's odds."""
    tally = Tally()
    stop_at = time.monotonic() + args.minutes * 60
    began = time.monotonic()

    async def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=300) as client:
            while time.monotonic() < stop_at:
                phase = int((time.monotonic() - began) // args.phase_s)
                odds = 0.9 if phase % 2 == 0 else 0.1
                model = LLAMA if rng.random() < odds else QWEN
                before = tally.not_admitted
                await stream(client, urls[model], bodies[model], tally, args.load_s / 2)
                if tally.not_admitted > before:
                    await asyncio.sleep(0.25)  # a gateway would try another orchestrator

    await asyncio.gather(*(client_loop(i) for i in range(args.streams)))
    return tally


def openai_body(model: str, tokens: int) -> dict:
    return {"model": model, "messages": MESSAGES, "max_tokens": tokens, "stream": True}


def ollama_body(model: str, tokens: int) -> dict:
    return {"model": TAGS[model], "messages": MESSAGES, "stream": True, "options": {"num_predict": tokens}}


def stand_in(args: argparse.Namespace) -> StandIn:
    ollama = StandIn().start()
    ollama.script(
        models=list(TAGS.values()),
        vram_mb=8192,
        model_vram_mb={TAGS[LLAMA]: 6400, TAGS[QWEN]: 5600},
        load_seconds=args.load_s,
        tokens=args.tokens,
        token_rate=args.token_rate,
    )
    return ollama


def runner_env(ollama: StandIn, **extra: str) -> dict[str, str]:
    return {
        "OLLAMA_HOST": f"{ollama.url}?parallel={SLOTS}&vram_mb=8192",
        "MODEL_ID": f"{LLAMA},{QWEN}",
        "LLM_RUNNER_HEALTH_INTERVAL_S": "5",
        **extra,
    }


def report(name: str, tally: Tally, minutes: float, extra: dict) -> None:
    waits = tally.swap_waits
    facts = {
        "served": tally.served,
        "not_admitted_by_orchestrator": tally.not_admitted,
        "admitted_then_refused_by_runner": tally.refused_after_admission,
        "failed": tally.failed,
        "waited_through_a_load": len(waits),
        "load_wait_p99_s": round(quantile(waits, 0.99), 2) if waits else None,
        "ttft_p50_s": round(quantile(tally.first_tokens, 0.5), 3) if tally.first_tokens else None,
        **extra,
    }
    print(f"{name} ({minutes:g} min): " + json.dumps(facts), flush=True)


def ollama_alone(args: argparse.Namespace) -> None:
    ollama = stand_in(args)
    try:
        urls = dict.fromkeys(TAGS, ollama.url + "/api/chat")
        tally = asyncio.run(drive(urls, {m: ollama_body(m, args.tokens) for m in TAGS}, args))
        gpu = ollama.stats()["gpu"]
        loads = sum(gpu["loads"].values())
        report(
            "ollama alone",
            tally,
            args.minutes,
            {"ollama_evictions_per_min": round(gpu["evictions"] / args.minutes, 1), "loads": loads},
        )
    finally:
        ollama.stop()


def through_orchestrator(args: argparse.Namespace, dynamic: bool) -> None:
    ollama = stand_in(args)
    port = free_port()
    folder = Path(tempfile.mkdtemp())
    try:
        if dynamic:
            orch = Orchestrator(secret=SECRET, health_interval=5.0, health_timeout=3.0).start()
            env = runner_env(
                ollama,
                LLM_RUNNER_LIVE_ORCHESTRATOR_URL=orch.url,
                LLM_RUNNER_LIVE_ORCH_SECRET=SECRET,
                LLM_RUNNER_LIVE_PUBLIC_URL=f"http://127.0.0.1:{port}",
            )
            runner = Runner(env, port=port).start()
        else:
            runner = Runner(runner_env(ollama), port=port).start()
            runner.wait_status("OK", timeout=60)  # registered once ready, as an operator would
            path = folder / "runners.json"
            command = [sys.executable, "-m", "llm_runner", "runners-json", "--url", runner.url, "--no-gpu"]
            command += ["--write", str(path)]
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env=runner.env)
            orch = Orchestrator(runners=path, health_interval=5.0, health_timeout=3.0).start()
        try:
            runner.wait_status("OK", timeout=60)
            routes = wait_routes(orch)
            urls = {m: f"{orch.url}/apps/{routes[m]}/app/v1/chat/completions" for m in TAGS}
            tally = asyncio.run(drive(urls, {m: openai_body(m, args.tokens) for m in TAGS}, args))
            status = httpx.get(runner.url + "/status", timeout=5).json()
            stats = orch.stats()
            (upstream,) = status["upstreams"]
            ours = [r for r in stats["runners"].values() if r["app"] in {f"llm/{m}" for m in TAGS}]
            extra = {
                "runner_swaps_per_min": round(upstream["swaps"] / args.minutes, 1),
                "ollama_evictions": ollama.stats()["gpu"]["evictions"],
                "failed_health_checks": sum(r["failed_checks"] for r in ours),
                "sessions_released": sum(r["sessions_released"] for r in ours),
            }
            if dynamic:
                sums = stats["capacity_sums"]
                extra |= {"heartbeats": len(sums), "max_capacity_sum": max(sums), "slots": SLOTS}
            report("dynamic live runner" if dynamic else "static live runner", tally, args.minutes, extra)
        finally:
            runner.stop()
            orch.stop()
    finally:
        ollama.stop()


def wait_routes(orch: Orchestrator, within: float = 60) -> dict[str, str]:
    """Each model's route once both are ready (label for static, runner id for dynamic)."""
    deadline = time.monotonic() + within
    while True:
        runners = [r for r in orch.stats()["runners"].values() if r["ready"]]
        routes = {r["app"].removeprefix("llm/"): r["route"] for r in runners}
        if set(routes) >= set(TAGS):
            return routes
        if time.monotonic() > deadline:
            raise RuntimeError(f"the orchestrator never had both models ready: {routes}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2, help="per run")
    parser.add_argument("--streams", type=int, default=4, help="concurrent clients")
    parser.add_argument("--phase-s", type=float, default=20, help="how long the demand favours one model")
    parser.add_argument("--load-s", type=float, default=3.0, help="a model load on the stand-in's GPU")
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--token-rate", type=float, default=50)
    args = parser.parse_args()
    ollama_alone(args)
    through_orchestrator(args, dynamic=False)
    through_orchestrator(args, dynamic=True)


if __name__ == "__main__":
    main()
