"""The live runner's readiness URL, as an orchestrator sees it: `python -m bench live`.

1. Latency: GET /models/<slug>/ready on one keep-alive connection every 0.2 s (an orchestrator
   polls every 5 s; this is faster), first with no load, then while 64 streams run without pause
   on /models/<slug>/v1/chat/completions (started out of phase, as independent clients' are);
   p50/p99/max.
2. Soak (`--minutes M`, default 10): the orchestrator's own check: every 5 s, a 3 s timeout, one
   keep-alive connection reused (as go-livepeer's http.Client does; like Go's Transport, a request
   that finds its idle connection closed before any byte is retried once on a new one, and counted
   apart), at full load; counts failed checks (non-200, timeout, connection error).

`--idle`: the soak with no load against a runner whose upstream is the embedded engine
(LLM_RUNNER_BACKEND=embedded, its default model; needs llama_cpp): readiness failures, and from
/metrics `llm_runner_readiness_flips_total` and the upstream's down events (log lines
"upstream ... is down", `llm_runner_upstream_errors_total`, down seen at a check). This is the
"0 health flips in 10 minutes" measurement. Progress is printed every minute.

The loaded runner is in front of the scripted stand-in, answering every chat with
`Connection: close` as in `python -m bench` (bench/relay.py).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"


@dataclass
class Check:
    status: int | None  # None: no answer
    seconds: float
    failure: str = ""  # "", "status", "timeout", "connection"
    stale_retried: bool = False
    detail: str = ""


class Probe:
    """GET one path over one kept-alive HTTP/1.1 connection, reconnecting after a failure."""

    def __init__(self, base_url: str, path: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port, self.path = url.hostname or "127.0.0.1", url.port or 80, path
        self.request = f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUser-Agent: Go-http-client/1.1\r\n\r\n".encode()
        self.connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def drop(self) -> None:
        if self.connection is not None:
            self.connection[1].close()
            self.connection = None

    async def _once(self) -> int:
        reused = self.connection is not None
        if self.connection is None:
            self.connection = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.connection
        writer.write(self.request)
        status_line = await reader.readline()
        if not status_line:
            self.drop()
            raise StaleConnection if reused else ConnectionResetError("closed before the status line")
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(status_line.split()[1])

    async def check(self, limit_s: float) -> Check:
        started = time.perf_counter()
        stale = False
        try:
            async with asyncio.timeout(limit_s):
                try:
                    status = await self._once()
                except StaleConnection:
                    stale = True
                    status = await self._once()
        except TimeoutError:
            self.drop()
            return Check(None, time.perf_counter() - started, "timeout", stale)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            self.drop()
            return Check(None, time.perf_counter() - started, "connection", stale, f"{type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        return Check(status, seconds, "" if status == 200 else "status", stale)


class StaleConnection(Exception):
    """The kept connection was closed while idle (Go retries such a request on a new one)."""


class Load:
    """`streams` virtual clients streaming back to back on the live path until stopped, in a
    process of their own: the probe's own event loop must not wait behind the load generator's."""

    def __init__(self, streams: int, target, stagger_s: float) -> None:  # type: ignore[no-untyped-def]
        context = multiprocessing.get_context("spawn")
        self.stop, self.completed, self.errors = context.Event(), context.Value("i", 0), context.Value("i", 0)
        self.process = context.Process(
            target=_load_process, args=(target, streams, stagger_s, self.stop, self.completed, self.errors), daemon=True
        )

    def start(self) -> None:
        self.process.start()

    def finish(self) -> None:
        self.stop.set()
        self.process.join(60)
        if self.process.is_alive():
            self.process.kill()


def _load_process(target, streams: int, stagger_s: float, stop, completed, errors) -> None:  # type: ignore[no-untyped-def]
    import uvloop

    from bench.loadgen import Connections, one_stream

    async def client(index: int) -> None:
        # Staggered starts: the streams run out of phase, as independent clients' do, instead of
        # all ending and restarting together every stream length (a burst of 64 set-ups).
        await asyncio.sleep(stagger_s * index / streams)
        connections = Connections()
        while not stop.is_set():
            sample = await one_stream(target, connections)
            counter = errors if sample.error else completed
            with counter.get_lock():
                counter.value += 1
            if sample.error:
                await asyncio.sleep(0.1)
        connections.close()

    async def run() -> None:
        await asyncio.gather(*(client(i) for i in range(streams)))

    uvloop.run(run())


def quantiles_ms(checks: list[Check]) -> str:
    from bench.loadgen import quantile

    seconds = [c.seconds * 1e3 for c in checks if not c.failure]
    if not seconds:
        return "no successful checks"
    return (
        f"p50 {quantile(seconds, 0.5):.2f} ms, p99 {quantile(seconds, 0.99):.2f} ms, "
        f"max {max(seconds):.2f} ms ({len(seconds)} checks)"
    )


async def poll(probe: Probe, every: float, limit_s: float, seconds: float, progress: float = 0) -> list[Check]:
    """Checks every `every` seconds (on a fixed schedule, as a ticker) for `seconds`."""
    checks: list[Check] = []
    started = time.monotonic()
    next_report = progress
    while (elapsed := time.monotonic() - started) < seconds:
        checks.append(await probe.check(limit_s))
        if checks[-1].failure:
            c = checks[-1]
            print(f"  [{elapsed:6.1f} s] check failed: {c.failure} {c.status or ''} {c.detail}", flush=True)
        if progress and elapsed >= next_report:
            failed = sum(1 for c in checks if c.failure)
            print(
                f"  [{elapsed / 60:4.1f} min] {len(checks)} checks, {failed} failed; {quantiles_ms(checks)}", flush=True
            )
            next_report += progress
        delay = started + len(checks) * every - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return checks


def summarize(name: str, checks: list[Check]) -> dict:
    kinds = Counter(c.failure for c in checks if c.failure)
    statuses = Counter(c.status for c in checks if c.failure == "status")
    result = {
        "checks": len(checks),
        "failed": sum(kinds.values()),
        "non_200": kinds["status"],
        "timeouts": kinds["timeout"],
        "connection_errors": kinds["connection"],
        "stale_connection_retries": sum(1 for c in checks if c.stale_retried),
        "non_200_statuses": dict(statuses),
    }
    print(
        f"{name}: {result['checks']} checks, {result['failed']} failed (non-200 {result['non_200']}"
        f"{' ' + str(dict(statuses)) if statuses else ''}, timeout {result['timeouts']}, connection error "
        f"{result['connection_errors']}); idle connection closed and retried {result['stale_connection_retries']}; "
        f"latency {quantiles_ms(checks)}",
        flush=True,
    )
    return result


async def scrape(base_url: str) -> dict[str, float]:
    """Sums of the runner's flip, upstream-error and down-seconds series."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(base_url + "/metrics")).text
    sums: Counter = Counter()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("llm_runner_readiness_flips_total", "llm_runner_upstream_errors_total"):
            sums[name] += float(line.rsplit(" ", 1)[1])
        elif name == "llm_runner_upstream_down_seconds":
            sums[name] = max(sums[name], float(line.rsplit(" ", 1)[1]))
    return dict(sums)


async def live_path(runner_url: str) -> str:
    from llm_runner.upstream.catalog import model_slug

    async with httpx.AsyncClient(timeout=10) as client:
        model_id = (await client.get(runner_url + "/status")).json()["models"][0]["model_id"]
    return f"/models/{model_slug(model_id)}"


async def loaded(args: argparse.Namespace) -> None:
    from bench.loadgen import openai_target
    from bench.relay import cpu_ns
    from llm_runner.engine.launcher import free_port
    from tests.support.servers import Runner, StandIn

    port = free_port()
    ollama = StandIn(port)
    ollama.args = ["-m", "bench.relay", "--standin", "--port", str(port)]
    env = {
        "OLLAMA_HOST": ollama.url,
        "MODEL_ID": LLAMA,
        "LLM_RUNNER_CONCURRENCY": str(args.streams * 2),
        "LLM_RUNNER_MAX_QUEUE": str(args.streams * 2),
        "LLM_RUNNER_LOG_LEVEL": "warning",
        "LLM_RUNNER_HEALTH_INTERVAL_S": str(args.health_interval),
    }
    with ollama, Runner(env) as runner:
        runner.wait_status("OK")
        ollama.script(tokens=args.tokens, token_rate=args.rate)
        prefix = await live_path(runner.url)
        target = openai_target(runner.url, args.tokens, path=prefix + "/v1/chat/completions")
        print(f"runner {runner.url}, readiness URL {prefix}/ready, load {args.streams} streams on {target.url}")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (1 min)", flush=True)
        prioritise(runner.process.pid, args.nice)
        probe = Probe(runner.url, prefix + "/ready")
        if args.latency_seconds:
            summarize("readiness every 0.2 s, no load", await poll(probe, 0.2, 3.0, args.latency_seconds / 3))
        stream_s = args.tokens / args.rate if args.rate else 0.0
        load = Load(args.streams, target, stream_s)
        load.start()
        await asyncio.sleep(stream_s + 2.0)  # every stream under way
        before = await scrape(runner.url)
        cpu_before, wall_before = cpu_ns(runner.process.pid), time.monotonic()
        if args.latency_seconds:
            checks = await poll(probe, 0.2, 3.0, args.latency_seconds)
            summarize(f"readiness every 0.2 s, {args.streams} streams", checks)
        if args.minutes:
            print(f"soak: every 5 s, 3 s timeout, {args.minutes:g} min, {args.streams} streams", flush=True)
            soak_probe = Probe(runner.url, prefix + "/ready")
            summarize("soak under load", await poll(soak_probe, 5.0, 3.0, args.minutes * 60, progress=60))
        busy = (cpu_ns(runner.process.pid) - cpu_before) / 1e9 / (time.monotonic() - wall_before)
        after = await scrape(runner.url)
        load.finish()
        print(f"load: {load.completed.value} streams completed, {load.errors.value} failed")
        print(f"runner CPU under load: {busy * 100:.0f} % of one core (its event loop is one thread)")
        print(f"metrics during the run: {deltas(before, after)}")


def prioritise(pid: int, nice: int) -> None:
    """`--nice N`: run the runner at nice N (negative: ahead of the machine's other work), to tell
    the runner's own limits from CPU contention on a shared host."""
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
            print(f"runner at nice {nice}")
        except PermissionError:
            print(f"could not set nice {nice} (needs CAP_SYS_NICE); the runner runs at nice 0")


def deltas(before: dict[str, float], after: dict[str, float]) -> str:
    flips = after.get("llm_runner_readiness_flips_total", 0) - before.get("llm_runner_readiness_flips_total", 0)
    errors = after.get("llm_runner_upstream_errors_total", 0) - before.get("llm_runner_upstream_errors_total", 0)
    total = after.get("llm_runner_readiness_flips_total", 0)
    return (
        f"llm_runner_readiness_flips_total +{flips:g} ({total:g} since the runner started, its first ready "
        f"included), llm_runner_upstream_errors_total +{errors:g}"
    )


async def idle(args: argparse.Namespace) -> None:
    from tests.support.servers import Runner

    env = {
        "LLM_RUNNER_BACKEND": "embedded",
        "LLM_RUNNER_LOG_LEVEL": "info",
        "LLM_RUNNER_HEALTH_INTERVAL_S": str(args.health_interval),
    }
    with Runner(env) as runner:
        runner.wait_status("OK", timeout=300)
        prefix = await live_path(runner.url)
        prioritise(runner.process.pid, args.nice)
        print(
            f"idle soak: runner {runner.url} (embedded engine), {prefix}/ready every 5 s, 3 s timeout, "
            f"{args.minutes:g} min; health interval {args.health_interval:g} s",
            flush=True,
        )
        log_start = len(runner.log().splitlines())
        before = await scrape(runner.url)
        probe = Probe(runner.url, prefix + "/ready")
        checks = await poll(probe, 5.0, 3.0, args.minutes * 60, progress=60)
        after = await scrape(runner.url)
        summarize("idle soak", checks)
        lines = runner.log().splitlines()[log_start:]
        down = [line for line in lines if " is down: " in line]
        exited = [line for line in lines if "process exited" in line]
        print(f"metrics during the soak: {deltas(before, after)}")
        print(
            f"upstream down events (log 'is down'): {len(down)}; engine exits: {len(exited)}; "
            f"upstream down at the end: {after.get('llm_runner_upstream_down_seconds', 0):g} s"
        )
        for line in (down + exited)[:10]:
            print("  " + line)


def cli(argv: list[str]) -> None:
    import uvloop

    parser = argparse.ArgumentParser(prog="python -m bench live", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (0: no soak)")
    parser.add_argument("--idle", action="store_true", help="soak with no load against the embedded engine")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="0.2 s polling under load (0: skip)")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=200, help="tokens per stream")
    parser.add_argument("--rate", type=float, default=50.0, help="stand-in tokens/s per stream")
    parser.add_argument("--nice", type=int, default=0, help="run the runner at this nice value (e.g. -10)")
    parser.add_argument("--health-interval", type=float, default=5.0, help="LLM_RUNNER_HEALTH_INTERVAL_S")
    args = parser.parse_args(argv)
    uvloop.run(idle(args) if args.idle else loaded(args))
