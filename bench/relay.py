"""The yardsticks: the least a Python relay can do, to measure llm-runner's faces against.

POST /relay forwards the request body unchanged as an Ollama `/api/chat` request and re-frames
each NDJSON line of the answer as one SSE `data:` event: no validation, no admission, no
accounting; the same server (uvicorn) and one ASGI send per token as the runner. Two of them:
`yardstick` over an httpcore pool (the transport under httpx: what a Python relay usually
stands on), and `yardstick/http1` over the runner's own client (llm_runner/upstream/http1.py),
so that what the runner adds beyond its transport shows too. Whatever llm-runner adds beyond
these is the price of what it does, not of "Python in the path".

Run: python -m bench.relay --port 8001 --upstream http://127.0.0.1:11434 [--client http1]
     python -m bench.relay --port 11435 --standin   (the stand-in, closing every chat connection)

`compare` below is `python -m bench` (lean): the yardstick, /llm and /v1 side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpcore
import uvicorn

SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def read_body(receive: Any) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    return body


async def lifespan_or_404(scope: dict, receive: Any, send: Any, close: Any) -> bool:
    """Serve what is not POST /relay; True when done."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await close()
        await send({"type": "lifespan.shutdown.complete"})
        return True
    if scope["method"] != "POST" or scope["path"] != "/relay":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return True
    return False


class Relay:
    """The yardstick over httpcore."""

    def __init__(self, upstream: str) -> None:
        self.url = upstream.rstrip("/") + "/api/chat"
        self.headers = [(b"Host", urlsplit(upstream).netloc.encode()), (b"Content-Type", b"application/json")]
        self.pool = httpcore.AsyncConnectionPool(
            max_connections=None, max_keepalive_connections=64, keepalive_expiry=30.0
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if await lifespan_or_404(scope, receive, send, self.pool.aclose):
            return
        body = await read_body(receive)
        async with self.pool.stream("POST", self.url, headers=self.headers, content=body) as upstream:
            await reframe(send, upstream.status, partial(anext, upstream.aiter_stream(), b""))


class LeanRelay:
    """The yardstick over the runner's own HTTP/1.1 client."""

    def __init__(self, upstream: str) -> None:
        from llm_runner.upstream.http1 import HTTP1Pool

        self.pool = HTTP1Pool(upstream)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if await lifespan_or_404(scope, receive, send, self.pool.aclose):
            return
        body = await read_body(receive)
        async with self.pool.request("POST", "/api/chat", body, connect_timeout_s=5, first_byte_timeout_s=300) as up:
            await reframe(send, up.status, partial(up.next_chunk, 120))


async def reframe(send: Any, status: int, next_piece: Callable[[], Awaitable[bytes]]) -> None:
    """The relay's answer: each NDJSON line of the upstream's body as one SSE event, as it comes
    (`next_piece` gives b"" at the end of the body)."""
    await send({"type": "http.response.start", "status": status, "headers": SSE})
    pending = b""
    while piece := await next_piece():
        *lines, pending = (pending + piece).split(b"\n")
        for line in lines:
            if line:
                await send({"type": "http.response.body", "body": b"data: " + line + b"\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def closing(app: Any) -> Any:
    """An ASGI wrapper that answers every POST with `Connection: close`, so each request reaches
    the stand-in on a new connection, whoever sends it (see `compare` below)."""

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        async def close_after(message: dict) -> None:
            if message["type"] == "http.response.start" and scope.get("method") == "POST":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, close_after)

    return wrapped


# -- python -m bench (lean): the three paths side by side ------------------------------------------

PATHS = ("yardstick", "yardstick/http1", "/llm", "/v1")
LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"


async def compare(
    levels: list[int], tokens: int, long_tokens: int, rate: float, samples: int, close: bool = True
) -> dict:
    """Per connection mode and level: rounds of one burst of N simultaneous streams per path,
    the paths in rotating order each round (direct, both yardsticks, /llm, /v1), against one stand-in.
    Round 0 (long streams) warms up and gives tokens/s; the short rounds after it give the time
    to first token and the CPU per request.

    The stand-in artefact (it answers bursts on reused keep-alive connections ~10x slower) is
    controlled by answering every POST with `Connection: close` (`closing` above): each request,
    whoever sends it (the runner's pool, the yardstick's pool, the direct client), reaches the
    stand-in on a new connection, so all paths pay the same upstream connect and none hits the
    artefact. In "reused" mode only the client side keeps its connections (one per virtual
    client, as go-livepeer's http.Client); the direct baseline is then still a new connection.
    `close=False` (`--keep-upstream`) runs the plain stand-in instead, to show the artefact.
    """
    from bench.loadgen import Connections, direct_target, one_stream, openai_target, runner_target, yardstick_target
    from llm_runner.engine.launcher import free_port
    from tests.support.servers import Runner, Server, StandIn

    standin_port, yard_port, lean_port = free_port(), free_port(), free_port()
    ollama = StandIn(standin_port)
    if close:
        ollama.args = ["-m", "bench.relay", "--standin", "--port", str(standin_port)]
    yard = Server(["-m", "bench.relay", "--port", str(yard_port), "--upstream", ollama.url], yard_port)
    lean_args = ["-m", "bench.relay", "--port", str(lean_port), "--upstream", ollama.url, "--client", "http1"]
    lean = Server(lean_args, lean_port)
    env = {
        "OLLAMA_HOST": ollama.url,
        "MODEL_ID": LLAMA,
        "LLM_RUNNER_CONCURRENCY": str(max(levels) * 2),
        "LLM_RUNNER_MAX_QUEUE": str(max(levels) * 2),
        "LLM_RUNNER_LOG_LEVEL": "warning",
        "LLM_RUNNER_HEALTH_INTERVAL_S": "5",  # the default; tests.support.servers polls every 0.2 s
    }
    workload = {"tokens": tokens, "long_tokens": long_tokens, "token_rate": rate, "upstream_close": close}
    report: dict = {"workload": workload, "fresh": [], "reused": []}
    # One runner per face, as one relay per yardstick: a process that served the burst just before
    # runs warm, one that idled through the other paths' bursts runs cold; this way every path
    # has its own process and the rotation treats them all alike.
    with ollama, yard, lean, Runner(env) as runner, Runner(env) as runner_v1:
        runner.wait_status("OK")
        runner_v1.wait_status("OK")
        ollama.script(tokens=max(tokens, long_tokens), token_rate=rate)  # each request's limit decides
        makers = (direct_target, yardstick_target, yardstick_target, runner_target, openai_target)
        urls = (ollama.url, yard.url, lean.url, runner.url, runner_v1.url)
        targets = {name: make(url, tokens) for name, make, url in zip(("direct", *PATHS), makers, urls, strict=True)}
        longs = {name: make(url, long_tokens) for name, make, url in zip(targets, makers, urls, strict=True)}
        order = list(targets)
        # CPU time of the process serving each path (the stand-in's for direct), per request.
        servers = (ollama, yard, lean, runner, runner_v1)
        pids = {name: server.process.pid for name, server in zip(targets, servers, strict=True)}
        started = time.perf_counter()
        report["machine"] = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (1 min) at the start"
        print(f"machine: {report['machine']}", flush=True)
        for mode in ("fresh", "reused"):
            for n in levels:
                # Every path takes every place in the rotation equally often (a path right after
                # a slow one can find the stand-in still closing that one's connections).
                rounds = len(order) * math.ceil(max(3, math.ceil(samples / n)) / len(order))
                kept = {name: [Connections() for _ in range(n)] for name in PATHS} if mode == "reused" else {}
                got: dict[str, list] = {name: [] for name in targets}
                long: dict[str, list] = {name: [] for name in targets}
                cpu = dict.fromkeys(targets, 0)
                for r in range(rounds + 1):  # round 0: long streams, warm-up (and opens the kept connections)
                    turn = r % len(order)
                    for name in order[turn:] + order[:turn]:
                        pools = kept.get(name) or [None] * n
                        target = targets[name] if r else longs[name]
                        cpu_before = cpu_ns(pids[name])
                        burst = await asyncio.gather(*(one_stream(target, pool) for pool in pools))
                        if r:
                            got[name] += burst
                            cpu[name] += cpu_ns(pids[name]) - cpu_before
                        else:
                            long[name] += burst
                        await asyncio.sleep(0.05)
                for pools in kept.values():
                    for pool in pools:
                        pool.close()
                level = summarize_level(n, got, long)
                for name in targets:
                    level[name]["cpu_ms_per_request"] = cpu[name] / 1e6 / max(1, len(got[name]))
                report[mode].append(level)
                print_progress(mode, level, time.perf_counter() - started)
    return report


def cpu_ns(pid: int) -> int:
    """CPU time of all of a process's threads so far, in ns (schedstat: finer than /proc/<pid>/stat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def summarize_level(n: int, got: dict[str, list], long: dict[str, list]) -> dict:
    from bench.loadgen import quantile

    level: dict[str, Any] = {"n": n}
    for name, samples in got.items():
        good = [s for s in samples if not s.error]
        ttfts = [s.ttft * 1e3 for s in good]
        # Steady rate: the second half of each long stream (a late first token is followed by a
        # catch-up burst, which would flatter whole-stream rates of the slower paths).
        halves = [s.gaps[len(s.gaps) // 2 :] for s in long[name] if not s.error]
        rates = [len(h) / sum(h) for h in halves if h and sum(h) > 0]
        everything = samples + long[name]
        level[name] = {
            "requests": len(everything),
            "errors": sum(1 for s in everything if s.error),
            "first_error": next((s.error for s in everything if s.error), ""),
            "ttft_ms": {f"p{q}": quantile(ttfts, q / 100) for q in (10, 50, 90)},
            "tokens_per_s": statistics.fmean(rates) if rates else float("nan"),
        }
    direct = level["direct"]["ttft_ms"]["p50"]
    for name in PATHS:  # the path's TTFT quantiles less direct's median
        level[name]["added_ttft_ms"] = {q: value - direct for q, value in level[name]["ttft_ms"].items()}
    return level


def print_progress(mode: str, level: dict, elapsed: float) -> None:
    parts = [f"{name} {level[name]['ttft_ms']['p50']:.1f}" for name in ("direct", *PATHS)]
    errors = sum(level[name]["errors"] for name in ("direct", *PATHS))
    print(f"[{elapsed:5.0f} s] {mode:6} N={level['n']:<3} TTFT p50 ms: {', '.join(parts)}; errors {errors}", flush=True)


RATIOS = (("/llm", "yardstick"), ("/v1", "yardstick"), ("/llm", "yardstick/http1"), ("/v1", "yardstick/http1"))
RATIO_HEADS = ["/llm ÷ yardstick", "/v1 ÷ yardstick", "/llm ÷ yardstick/http1", "/v1 ÷ yardstick/http1", "/v1 ÷ /llm"]


def header(first: str, names: tuple[str, ...]) -> list[str]:
    heads = [first, *names, *RATIO_HEADS]
    return ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]


def ratios(values: dict[str, float], fmt: str = "{:.2f}") -> list[str]:
    pairs = [*RATIOS, ("/v1", "/llm")]
    return [fmt.format(values[a] / values[b]) if values[b] > 0.05 else "n/a" for a, b in pairs]


def markdown(report: dict) -> str:
    w = report["workload"]
    out = [
        f"Workload: streams of {w['tokens']} tokens (TTFT, CPU) and {w['long_tokens']} tokens (tokens/s) at "
        f"{w['token_rate']:g} tokens/s from the stand-in; N streams start at once; paths interleaved by round. "
        "yardstick: a minimal relay over httpcore; yardstick/http1: the same over the runner's HTTP/1.1 client."
    ]
    if report.get("machine"):
        out.append(f"Machine: {report['machine']}; the stand-in, the relays and the load generator share it.")
    if w.get("upstream_close", True):
        out.append("Every request reaches the stand-in on a new connection (it answers with Connection: close).")
    else:
        out.append("UPSTREAM CONNECTIONS KEPT ALIVE (--keep-upstream): the stand-in's slow-burst artefact is in.")
    for mode, what in (("fresh", "a new connection per request"), ("reused", "keep-alive connections reused")):
        title = f"**Added time to first token, {what}**: the path's TTFT p50 [p10, p90] less direct's p50, ms"
        out += ["", title, "", *header("streams", PATHS)]
        for lv in report[mode]:
            cells = []
            for name in PATHS:
                a = lv[name]["added_ttft_ms"]
                err = f" ({lv[name]['errors']} errors)" if lv[name]["errors"] else ""
                cells.append(f"{a['p50']:+.1f} [{a['p10']:+.1f}, {a['p90']:+.1f}]{err}")
            added = {name: lv[name]["added_ttft_ms"]["p50"] for name in PATHS}
            out.append(f"| {lv['n']} | " + " | ".join(cells + ratios(added)) + " |")
        direct = ", ".join(
            f"N={lv['n']} {lv['direct']['ttft_ms']['p50']:.1f} [{lv['direct']['ttft_ms']['p10']:.1f}, "
            f"{lv['direct']['ttft_ms']['p90']:.1f}]"
            for lv in report[mode]
        )
        out.append(f"\nDirect TTFT p50 [p10, p90] ms: {direct}")
    out += ["", "**CPU of the relay's process per request**, ms (direct: the stand-in's)", ""]
    out += header("streams (mode)", ("direct", *PATHS))
    for mode in ("fresh", "reused"):
        for lv in report[mode]:
            cpu = {name: lv[name]["cpu_ms_per_request"] for name in ("direct", *PATHS)}
            cells = [f"{cpu[name]:.2f}" for name in ("direct", *PATHS)]
            out.append(f"| {lv['n']} ({mode}) | " + " | ".join(cells + ratios(cpu)) + " |")
    out += [
        "",
        f"**Tokens/s per stream** (second half of each {w['long_tokens']}-token stream, mean; % of direct)",
        "",
        *header("streams (mode)", PATHS),
    ]
    for mode in ("fresh", "reused"):
        for lv in report[mode]:
            d = lv["direct"]["tokens_per_s"]
            rates = {name: lv[name]["tokens_per_s"] for name in PATHS}
            cells = [f"{x:.1f} ({x / d * 100:.1f} %)" for x in rates.values()]
            out.append(f"| {lv['n']} ({mode}) | " + " | ".join(cells + ratios(rates, "{:.3f}")) + " |")
    return "\n".join(out)


def cli(argv: list[str]) -> None:
    import uvloop

    parser = argparse.ArgumentParser(prog="python -m bench [lean]", description=compare.__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,16,64", help="concurrent streams per burst")
    parser.add_argument("--tokens", type=int, default=30, help="tokens per stream (TTFT rounds)")
    parser.add_argument("--long-tokens", type=int, default=120, help="tokens per stream (tokens/s round)")
    parser.add_argument("--rate", type=float, default=60.0, help="stand-in tokens/s per stream")
    parser.add_argument("--keep-upstream", action="store_true", help="plain stand-in: shows its keep-alive artefact")
    parser.add_argument("--samples", type=int, default=36, help="at least this many streams per path and level")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.levels.split(",")]
    report = uvloop.run(compare(levels, args.tokens, args.long_tokens, args.rate, args.samples, not args.keep_upstream))
    table = markdown(report)
    print()
    print(table)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "lean.json").write_text(json.dumps(report, indent=2))
    (results / "lean.md").write_text(table + "\n")
    print(f"\nresults: {results / 'lean.json'}, {results / 'lean.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://127.0.0.1:11434")
    parser.add_argument("--standin", action="store_true", help="serve tests.support.standin, one connection per POST")
    parser.add_argument("--client", choices=("httpcore", "http1"), default="httpcore", help="the relay's transport")
    args = parser.parse_args()
    if args.standin:
        from tests.support.standin import StandIn

        app: Any = closing(StandIn())
    else:
        app = (LeanRelay if args.client == "http1" else Relay)(args.upstream)
    # Idle client connections are kept as long as the runner keeps them (LLM_RUNNER_KEEP_ALIVE_S).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
