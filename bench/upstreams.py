"""`python -m bench upstreams`: one runner in front of 1, 2, 4 and 8 Ollamas (stand-ins).

Every stand-in has the same fixed slots (parallel=2 in OLLAMA_HOST) and token rate, and every level
offers the same load per slot: one closed-loop client per slot, each running a few streams one after
another, straight to the stand-ins (clients spread round robin) and through the runner. It reports
total tokens/s against N times one upstream's (the goal: at least 0.95), and the TTFT the runner adds.
Then one run with offered load above capacity (so some requests wait in the queue) has one stand-in
killed in the middle: failed requests are split into those that had started streaming (their tokens
are lost with the GPU) and those that had not (the runner should have served them elsewhere: 0).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.loadgen import LLAMA, Connections, Sample, Target, direct_target, one_stream, runner_target, summarize
from tests.support.servers import Runner, StandIn

COUNTS = (1, 2, 4, 8)
SLOTS = 2  # per upstream: OLLAMA_HOST `?parallel=2`, like OLLAMA_NUM_PARALLEL=2
TOKENS = 100  # per stream: 2 s at 50 tokens/s
ROUNDS = 3  # streams per client, one after another
KILL_UPSTREAMS = 4
KILL_CLIENTS_PER_SLOT = 1.5  # more clients than slots: some always wait in the runner's queue
KILL_RUN_S = 9.0
KILL_AT_S = 3.0


def start_standins(count: int) -> list[StandIn]:
    servers = [StandIn() for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda s: s.start(), servers))
    return servers


def runner_env(servers: list[StandIn]) -> dict[str, str]:
    return {
        "OLLAMA_HOST": ",".join(f"{s.url}?parallel={SLOTS}" for s in servers),
        "MODEL_ID": LLAMA,
        "LLM_RUNNER_MAX_QUEUE": "256",
        "LLM_RUNNER_LOG_LEVEL": "warning",
        "LLM_RUNNER_HEALTH_INTERVAL_S": "5",  # the production default (tests/support/servers.py probes every 0.2 s)
    }


async def wait_capacity(runner: Runner, slots: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as http:
        while (await http.get(runner.url + "/status")).json()["capacity"] != slots:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the runner never reached {slots} ready slots")
            await asyncio.sleep(0.05)


async def closed_loop(targets: list[Target], rounds: int, warm: list[Target], stream_s: float) -> dict:
    """One client per target: a short warm-up stream; once every client is warm, each starts at its own
    offset within one stream's duration (steady arrivals, not one burst) and runs `rounds` streams back
    to back. Total tokens/s is the sum of each client's tokens over its own busy time."""
    warmed, ready = 0, asyncio.Event()

    async def client(index: int, target: Target, warm_target: Target) -> tuple[list[Sample], float]:
        nonlocal warmed
        connections = Connections()  # kept alive across requests, as go-livepeer does
        await one_stream(warm_target, connections)
        warmed += 1
        if warmed == len(targets):
            ready.set()
        await ready.wait()
        await asyncio.sleep(stream_s * index / len(targets))
        started = time.perf_counter()
        samples = [await one_stream(target, connections) for _ in range(rounds)]
        busy = time.perf_counter() - started
        connections.close()
        return samples, busy

    per_client = await asyncio.gather(*(client(i, t, w) for i, (t, w) in enumerate(zip(targets, warm, strict=True))))
    samples = [s for client_samples, _ in per_client for s in client_samples]
    summary = summarize(samples)
    summary["total_tokens_per_s"] = sum(
        sum(s.tokens for s in client_samples if not s.error) / busy for client_samples, busy in per_client
    )
    return summary


async def level(servers: list[StandIn], rate: float) -> dict:
    n = len(servers)
    clients = n * SLOTS
    with Runner(runner_env(servers)) as runner:
        runner.wait_status("OK", timeout=30)
        await wait_capacity(runner, clients)
        stream_s = TOKENS / rate
        direct = await closed_loop(
            [direct_target(servers[i % n].url, TOKENS) for i in range(clients)],
            ROUNDS,
            [direct_target(servers[i % n].url, 2) for i in range(clients)],
            stream_s,
        )
        bridged = await closed_loop(
            [runner_target(runner.url, TOKENS)] * clients, ROUNDS, [runner_target(runner.url, 2)] * clients, stream_s
        )
    result = {
        "upstreams": n,
        "slots": clients,
        "clients": clients,
        "token_rate": rate,
        "direct": direct,
        "runner": bridged,
        "added_ttft_p50_ms": bridged["ttft_p50_ms"] - direct["ttft_p50_ms"],
        "added_ttft_p99_ms": bridged["ttft_p99_ms"] - direct["ttft_p99_ms"],
    }
    print(
        f"N={n}: {clients} clients, tok/s direct {direct['total_tokens_per_s']:.1f}, runner "
        f"{bridged['total_tokens_per_s']:.1f}; TTFT p50 {direct['ttft_p50_ms']:.1f} → {bridged['ttft_p50_ms']:.1f} ms; "
        f"errors {direct['errors']}/{bridged['errors']}",
        flush=True,
    )
    return result


async def kill_run(servers: list[StandIn], rate: float) -> dict:
    """Streams back to back from more clients than slots; one stand-in SIGKILLed in the middle."""
    slots = len(servers) * SLOTS
    clients = int(slots * KILL_CLIENTS_PER_SLOT)
    victim = servers[1]
    with Runner(runner_env(servers)) as runner:
        runner.wait_status("OK", timeout=30)
        await wait_capacity(runner, slots)
        target = runner_target(runner.url, TOKENS)
        deadline = time.monotonic() + KILL_RUN_S
        samples: list[Sample] = []
        healths: list[str] = []

        async def client(index: int) -> None:
            connections = Connections()
            await asyncio.sleep(TOKENS / rate * index / clients)  # steady arrivals, not one burst
            while time.monotonic() < deadline:
                samples.append(await one_stream(target, connections))
            connections.close()

        async def kill() -> None:
            await asyncio.sleep(KILL_AT_S)
            victim.process.kill()
            async with httpx.AsyncClient(timeout=5) as http:
                while time.monotonic() < deadline:
                    healths.append((await http.get(runner.url + "/health")).json()["status"])
                    await asyncio.sleep(0.1)

        await asyncio.gather(kill(), *(client(i) for i in range(clients)))
        async with httpx.AsyncClient(timeout=5) as http:
            capacity_after = (await http.get(runner.url + "/status")).json()["capacity"]
    # A cut stream is a 200 whose last chunk says `error` after fewer tokens than asked for; a request
    # refused before its first token is an HTTP error (or a broken connection) with no token.
    had_streamed = [s for s in samples if not s.error and 0 < s.tokens < TOKENS]
    had_not = [s for s in samples if s.error or s.tokens == 0]
    result = {
        "upstreams": len(servers),
        "slots": slots,
        "clients": clients,
        "killed_at_s": KILL_AT_S,
        "run_s": KILL_RUN_S,
        "requests": len(samples),
        "ok": len(samples) - len(had_streamed) - len(had_not),
        "failed_had_streamed": len(had_streamed),
        "failed_had_not": len(had_not),
        "first_error_had_not": next((s.error for s in had_not), ""),
        "health_seen": sorted(set(healths)),
        "capacity_before": slots,
        "capacity_after": capacity_after,
    }
    print(f"kill run: {result}", flush=True)
    return result


async def upstreams_bench(rate: float = 50.0) -> dict:
    servers = start_standins(max(max(COUNTS), KILL_UPSTREAMS))
    try:
        for server in servers:
            server.script(tokens=TOKENS, token_rate=rate)
        report: dict = {
            "workload": {"tokens": TOKENS, "token_rate": rate, "slots_per_upstream": SLOTS, "rounds": ROUNDS},
            "levels": [],
        }
        for n in COUNTS:
            report["levels"].append(await level(servers[:n], rate))
        report["kill"] = await kill_run(servers[:KILL_UPSTREAMS], rate)
        return report
    finally:
        for server in servers:
            server.stop()


def markdown(report: dict) -> str:
    work = report["workload"]
    base = report["levels"][0]["runner"]["total_tokens_per_s"]
    lines = [
        f"{work['tokens']} tokens per stream at {work['token_rate']:g} tok/s, {work['slots_per_upstream']} slots per "
        f"upstream, one client per slot (starts spread over one stream), {work['rounds']} streams each",
        "",
        "| upstreams | slots | tok/s direct | tok/s runner | runner ÷ (N × 1 upstream) | runner ÷ direct "
        "| TTFT p50 direct → runner | added p50 | added p99 | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in report["levels"]:
        d, r, n = lv["direct"], lv["runner"], lv["upstreams"]
        lines.append(
            f"| {n} | {lv['slots']} | {d['total_tokens_per_s']:.1f} | {r['total_tokens_per_s']:.1f} "
            f"| {r['total_tokens_per_s'] / (n * base):.3f} | {r['total_tokens_per_s'] / d['total_tokens_per_s']:.3f} "
            f"| {d['ttft_p50_ms']:.1f} → {r['ttft_p50_ms']:.1f} ms | {lv['added_ttft_p50_ms']:+.1f} ms "
            f"| {lv['added_ttft_p99_ms']:+.1f} ms | {d['errors'] + r['errors']} |"
        )
    kill = report["kill"]
    lines += [
        "",
        f"One of {kill['upstreams']} upstreams SIGKILLed {kill['killed_at_s']:g} s into a {kill['run_s']:g} s run, "
        f"{kill['clients']} clients on {kill['slots']} slots:",
        "",
        "| requests | ok | failed, had started streaming | failed, had not | /health seen | capacity |",
        "|---|---|---|---|---|---|",
        f"| {kill['requests']} | {kill['ok']} | {kill['failed_had_streamed']} | {kill['failed_had_not']} "
        f"| {', '.join(kill['health_seen'])} | {kill['capacity_before']} → {kill['capacity_after']} |",
    ]
    return "\n".join(lines)


def cli(argv: list[str]) -> None:
    """`python -m bench upstreams [--rate R]`: prints a markdown table, writes bench/results/upstreams.json."""
    import argparse
    import json
    from pathlib import Path

    import uvloop

    parser = argparse.ArgumentParser(prog="python -m bench upstreams", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="stand-in tokens/s per stream")
    args = parser.parse_args(argv)
    report = uvloop.run(upstreams_bench(args.rate))
    print(markdown(report))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "upstreams.json").write_text(json.dumps(report, indent=2))
    print(f"results: {results / 'upstreams.json'}")
