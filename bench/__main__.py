"""Benchmarks: is the bridge ever the bottleneck?  `python -m bench --help`

`python -m bench` (lean, bench/relay.py): added time to first token and tokens/s of a minimal
Python relay (the yardstick), /llm and /v1 side by side, with new and with kept connections.
`python -m bench relay`: the same streaming workload straight against the scripted Ollama
stand-in and through llm-runner in front of it, at several concurrency levels; then the relay's
ceiling in SSE events per CPU-second, and RSS growth over many requests.
`python -m bench profile` (bench/profile.py): where the runner's CPU goes during bursts.
`python -m bench live` (bench/live.py): readiness-URL latency under load, and soaks.
`python -m bench engine`: decode tokens/s of the embedded llama.cpp engine, direct and via /llm.
`python -m bench upstreams` (bench/upstreams.py): one runner over 1, 2, 4 and 8 Ollamas, and one killed mid-run.
Prints a table and writes JSON (and, with --plot, a PNG) under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import uvloop

from bench.loadgen import Connections, direct_target, one_stream, run_level, runner_target, summarize
from tests.support.servers import Runner, StandIn

RESULTS = Path(__file__).resolve().parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def relay(args: argparse.Namespace) -> dict:
    levels = [int(n) for n in args.levels.split(",")]
    report: dict = {"workload": {"tokens": args.tokens, "token_rate": args.rate}, "levels": []}
    with StandIn() as ollama:
        env = {
            "OLLAMA_HOST": ollama.url,
            "MODEL_ID": "meta-llama/Meta-Llama-3.1-8B-Instruct",
            "LLM_RUNNER_CONCURRENCY": str(max(levels) * 2),
            "LLM_RUNNER_MAX_QUEUE": str(max(levels) * 2),
            "LLM_RUNNER_LOG_LEVEL": "warning",
        }
        with Runner(env) as runner:
            runner.wait_status("OK")
            pid = runner.process.pid
            report["rss_start_mb"] = rss_mb(pid)
            ollama.script(tokens=args.tokens, token_rate=args.rate)
            for n in levels:
                # At least 16 samples per level (small levels repeat); each path warmed up first.
                rounds = max(1, 16 // n)
                samples: dict[str, list] = {"direct": [], "runner": []}
                for target in (direct_target(ollama.url, args.tokens), runner_target(runner.url, args.tokens)):
                    connections = Connections()  # kept alive across rounds, as go-livepeer does
                    await run_level(target, min(n, 4), connections)
                    for _ in range(rounds):
                        samples[target.name] += await run_level(target, n, connections)
                    connections.close()
                direct, bridged = summarize(samples["direct"]), summarize(samples["runner"])
                level = {
                    "n": n,
                    "direct": direct,
                    "runner": bridged,
                    "added_ttft_p50_ms": bridged["ttft_p50_ms"] - direct["ttft_p50_ms"],
                    "added_ttft_p99_ms": bridged["ttft_p99_ms"] - direct["ttft_p99_ms"],
                    "throughput_ratio": bridged["tokens_per_s_mean"] / direct["tokens_per_s_mean"]
                    if direct["tokens_per_s_mean"]
                    else float("nan"),
                }
                report["levels"].append(level)
                print_level(level)

            # The relay's ceiling: Ollama as fast as it can go, runner CPU time per event.
            ollama.script(tokens=args.ceiling_tokens, token_rate=0)
            cpu_before, started = cpu_seconds(pid), time.perf_counter()
            samples = await run_level(runner_target(runner.url, args.ceiling_tokens), args.ceiling_streams)
            wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
            events = sum(s.tokens for s in samples)
            report["ceiling"] = {
                "events": events,
                "errors": sum(1 for s in samples if s.error),
                "events_per_s_wall": events / wall,
                "events_per_cpu_s": events / cpu if cpu else float("nan"),
                "runner_cpu_s": cpu,
            }
            print(
                f"relay ceiling: {events} SSE token events, {events / wall:,.0f}/s wall, "
                f"{report['ceiling']['events_per_cpu_s']:,.0f} per runner CPU-second"
            )

            # Memory: many short streams; RSS after a warm-up versus after the soak.
            ollama.script(tokens=20, token_rate=0)
            await soak(runner.url, min(500, args.soak), args.soak_concurrency)
            rss_warm = rss_mb(pid)
            soak_started = time.perf_counter()
            errors = await soak(runner.url, args.soak, args.soak_concurrency)
            report["soak"] = {
                "requests": args.soak,
                "errors": errors,
                "seconds": time.perf_counter() - soak_started,
                "rss_after_warmup_mb": rss_warm,
                "rss_after_mb": rss_mb(pid),
                "rss_growth_mb": rss_mb(pid) - rss_warm,
            }
            print(
                f"soak: {args.soak} requests, {errors} errors, RSS {rss_warm:.1f} → "
                f"{report['soak']['rss_after_mb']:.1f} MB (+{report['soak']['rss_growth_mb']:.2f})"
            )
    return report


async def soak(runner_url: str, total: int, concurrency: int) -> int:
    """`total` requests of 20 tokens, `concurrency` at a time; returns how many went wrong."""
    target = runner_target(runner_url, 20)
    errors = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, errors
        connections = Connections()
        while remaining > 0:
            remaining -= 1
            sample = await one_stream(target, connections)
            errors += bool(sample.error) or sample.tokens != 20
        connections.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


def print_level(level: dict) -> None:
    d, r = level["direct"], level["runner"]
    print(
        f"N={level['n']:>4}  TTFT p50 {d['ttft_p50_ms']:7.2f} → {r['ttft_p50_ms']:7.2f} ms "
        f"(+{level['added_ttft_p50_ms']:.2f})  p99 {d['ttft_p99_ms']:7.2f} → {r['ttft_p99_ms']:7.2f} ms "
        f"(+{level['added_ttft_p99_ms']:.2f})  tok/s {d['tokens_per_s_mean']:6.1f} → {r['tokens_per_s_mean']:6.1f} "
        f"({level['throughput_ratio'] * 100:5.1f} %)  errors {d['errors']}/{r['errors']}",
        flush=True,
    )


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"llm-runner relay: {report['workload']['tokens']} tokens at {report['workload']['token_rate']:g} tok/s"
    )
    for column in ("N", "TTFT p50 direct→runner (ms)", "added p50", "added p99", "tok/s ratio", "errors"):
        table.add_column(column, justify="right")
    for level in report["levels"]:
        d, r = level["direct"], level["runner"]
        table.add_row(
            str(level["n"]),
            f"{d['ttft_p50_ms']:.2f} → {r['ttft_p50_ms']:.2f}",
            f"{level['added_ttft_p50_ms']:+.2f} ms",
            f"{level['added_ttft_p99_ms']:+.2f} ms",
            f"{level['throughput_ratio'] * 100:.1f} %",
            str(d["errors"] + r["errors"]),
        )
    Console(width=120).print(table)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [level["n"] for level in report["levels"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, style in (("direct", "o--"), ("runner", "s-")):
        left.plot(ns, [lv[name]["ttft_p50_ms"] for lv in report["levels"]], style, label=f"{name} p50")
        left.plot(ns, [lv[name]["ttft_p99_ms"] for lv in report["levels"]], style, alpha=0.5, label=f"{name} p99")
        right.plot(ns, [lv[name]["tokens_per_s_mean"] for lv in report["levels"]], style, label=name)
    for axis, title, unit in ((left, "time to first token", "ms"), (right, "tokens/s per stream", "tok/s")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save(report: dict, name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=2))
    return path


OWN_CLI = {  # each has cli(argv)
    "lean": "bench.relay",
    "profile": "bench.profile",
    "live": "bench.live",
    "upstreams": "bench.upstreams",
}


def main() -> None:
    import importlib
    import sys

    argv = sys.argv[1:]
    if not argv or argv[0] in OWN_CLI or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        name = argv.pop(0) if argv and argv[0] in OWN_CLI else "lean"
        importlib.import_module(OWN_CLI[name]).cli(argv)
        return
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["relay", "engine", *OWN_CLI], default="lean")
    parser.add_argument("--levels", default="1,16,64,256", help="concurrency levels")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per stream")
    parser.add_argument("--rate", type=float, default=50.0, help="stand-in tokens/s per stream")
    parser.add_argument("--ceiling-streams", type=int, default=8)
    parser.add_argument("--ceiling-tokens", type=int, default=4000, help="per stream; at most num_ctx")
    parser.add_argument("--soak", type=int, default=10_000, help="requests in the memory soak")
    parser.add_argument("--soak-concurrency", type=int, default=32)
    parser.add_argument("--plot", action="store_true", help="also write a PNG of TTFT and tok/s against N")
    args = parser.parse_args()
    if args.what == "engine":
        from bench.engine import engine_bench

        report = uvloop.run(engine_bench())
        print(f"results: {save(report, 'engine')}")
        return
    report = uvloop.run(relay(args))
    print_table(report)
    print(f"results: {save(report, 'relay')}")
    if args.plot:
        path = RESULTS / "relay.png"
        plot(report, path)
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
