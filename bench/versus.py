"""This checkout against another one, side by side: what a change did to the runner's own cost.

Both runners serve the same model from one scripted Ollama (tests/support/standin.py, no compute),
so what differs is the runner's code. Requests alternate between the two, round by round, so that
drift on the machine hits both alike: streamed `/llm` and `/v1` time to first token on kept
connections (as go-livepeer keeps them), and `GET /health` and `GET /status` on kept and on fresh
connections. Medians with the 10th–90th percentile spread, per checkout.

Run: git worktree add /tmp/baseline <commit> && python -m bench.versus --baseline /tmp/baseline
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.loadgen import Connections, Target, one_stream, openai_target, percentile, runner_target
from llm_runner.engine.launcher import free_port
from tests.conftest import LLAMA
from tests.support.servers import Server, StandIn

TOKENS = 8
HERE = Path(__file__).resolve().parents[1]


def runner(checkout: Path, ollama: StandIn) -> Server:
    """`llm-runner serve` from `checkout`'s own code."""
    port = free_port()
    boot = f"import sys; sys.path.insert(0, {str(checkout)!r}); from llm_runner.ops.cli import main; main()"
    args = ["-c", boot, "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_LOG_LEVEL": "warning"}
    return Server(args, port, env, ready_path="/health")


async def one_get(url: str, connections: Connections | None) -> float:
    """Seconds for one GET and its whole body (Content-Length), over raw HTTP/1.1."""
    fresh = connections is None
    connections = connections or Connections()
    parts = urlsplit(url)
    started = time.perf_counter()
    reader, writer = await connections.get(parts.hostname or "127.0.0.1", parts.port or 80)
    writer.write(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    elapsed = time.perf_counter() - started
    assert status == 200, (url, status)
    if fresh:
        writer.close()
    else:
        connections.put((reader, writer))
    return elapsed


async def measure(urls: dict[str, str], stream_rounds: int, get_rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per checkout, per measure: the samples in ms, the checkouts alternating within each round."""
    streams: dict[str, Target] = {}
    for name, url in urls.items():
        streams[f"{name} /llm"] = runner_target(url, TOKENS)
        streams[f"{name} /v1"] = openai_target(url, TOKENS)
    pools = {key: Connections() for key in [*streams, *(f"{name} get" for name in urls)]}
    seen: dict[str, dict[str, list[float]]] = {name: {} for name in urls}
    for key, target in streams.items():  # untimed: connections open, caches warm
        await one_stream(target, pools[key])
    for _ in range(stream_rounds):
        for key, target in streams.items():
            sample = await one_stream(target, pools[key])
            assert not sample.error and sample.tokens, (key, sample.error)
            name, path = key.split(" ")
            seen[name].setdefault(f"{path} TTFT", []).append(sample.ttft * 1000)
    for _ in range(get_rounds):
        for name, url in urls.items():
            for path in ("/health", "/status"):
                kept = await one_get(url + path, pools[f"{name} get"])
                fresh = await one_get(url + path, None)
                seen[name].setdefault(f"GET {path} kept", []).append(kept * 1000)
                seen[name].setdefault(f"GET {path} fresh", []).append(fresh * 1000)
    for pool in pools.values():
        pool.close()
    return seen


def report(seen: dict[str, dict[str, list[float]]]) -> None:
    this, base = list(seen)
    print(f"{'measure':<22} {'this checkout':>30} {'baseline':>30}  ratio", flush=True)
    for measure_name in seen[this]:
        cells = []
        for name in (this, base):
            values = seen[name][measure_name]
            median = statistics.median(values)
            cells.append(f"{median:7.3f} ms ({percentile(values, 10):.3f}–{percentile(values, 90):.3f})")
        ratio = statistics.median(seen[this][measure_name]) / statistics.median(seen[base][measure_name])
        print(f"{measure_name:<22} {cells[0]:>30} {cells[1]:>30}  {ratio:.2f}", flush=True)


async def main(baseline: Path, stream_rounds: int, get_rounds: int) -> None:
    with StandIn() as ollama:
        ollama.script(tokens=TOKENS)
        with runner(HERE, ollama) as ours, runner(baseline, ollama) as theirs:
            seen = await measure({"this": ours.url, "baseline": theirs.url}, stream_rounds, get_rounds)
    report(seen)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another checkout of llm-runner")
    parser.add_argument("--stream-rounds", type=int, default=100)
    parser.add_argument("--get-rounds", type=int, default=300)
    args = parser.parse_args()
    if not (args.baseline / "llm_runner").is_dir():
        sys.exit(f"bench.versus: {args.baseline} holds no llm_runner package")
    asyncio.run(main(args.baseline.resolve(), args.stream_rounds, args.get_rounds))


if __name__ == "__main__":
    cli()
