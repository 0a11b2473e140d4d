"""Where the runner's CPU goes per request: `python -m bench profile`.

Bursts of 16 and 64 short streams (few tokens, as fast as the stand-in can go, so that setting a
request up and tearing it down weigh most) on /llm, then on /v1, while py-spy samples the runner
process (`py-spy record --format raw`; only on-CPU samples count). Prints, per face, the top
functions by own time, own time by package, and the runner's own functions by inclusive time
(`GenerationLoop.start` is everything from arrival to the first token: the per-request set-up),
with the runner's CPU per request measured alongside. The yardstick relay (bench/relay.py) is
profiled the same way, and a last table puts CPU per request by package side by side. The
collapsed stacks are kept in bench/results/profile-<face>.txt (for flamegraph.pl or speedscope).

If py-spy cannot attach (no ptrace), falls back to cProfile around a runner started in-process
(uvicorn in a thread), and says so. The stand-in answers every chat with `Connection: close`, as in
`python -m bench` (bench/relay.py), so every request also sets up its upstream connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"
OURS = ("llm_runner/", "llm_runner.")
RESULTS = Path(__file__).resolve().parent / "results"


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def can_attach(spy: str) -> bool:
    probe = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        done = subprocess.run([spy, "dump", "--pid", str(probe.pid)], capture_output=True, timeout=20)
        return done.returncode == 0
    except subprocess.TimeoutExpired:
        return False
    finally:
        probe.kill()
        probe.wait()


async def load(targets: list, levels: list[int], seconds: float) -> tuple[int, int]:
    """Alternate bursts at each level until `seconds` pass; (requests, errors)."""
    from bench.loadgen import one_stream

    requests = errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for target in targets:
            for n in levels:
                burst = await asyncio.gather(*(one_stream(target) for _ in range(n)))
                requests += n
                errors += sum(1 for s in burst if s.error)
    return requests, errors


def parse_raw(path: Path) -> tuple[Counter, Counter, int]:
    """py-spy's collapsed stacks → (own samples per function, inclusive samples per function, total)."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own, inclusive, total


def package(frame: str) -> str:
    """`send (uvicorn/protocols/http/h11_impl.py)` → `uvicorn`; the standard library by module."""
    where = frame.rpartition(" (")[2].rstrip(")")
    return where.split("/")[0] if "/" in where else where.removesuffix(".py")


def report(face: str, own: Counter, inclusive: Counter, total: int, top: int) -> None:
    total = max(total, 1)
    print(f"\n### {face}: top {top} functions by own time ({total} on-CPU samples)\n")
    print("| own % | function (file) |\n|---|---|")
    for frame, n in own.most_common(top):
        print(f"| {n / total * 100:5.1f} | `{frame}` |")
    packages: Counter = Counter()
    for frame, n in own.items():
        packages[package(frame)] += n
    print(
        f"\n{face}, own time by package: "
        + ", ".join(f"{p} {n / total * 100:.0f} %" for p, n in packages.most_common(12))
    )
    skip = ("ops/cli.py", "llm_runner/__main__.py")
    if face == "yardstick":
        return
    ours = [(f, n) for f, n in inclusive.most_common() if any(m in f for m in OURS) and not any(x in f for x in skip)]
    print(f"\n### {face}: llm_runner functions by inclusive time\n")
    print("| incl. % | function (file) |\n|---|---|")
    for frame, n in ours[:top]:
        print(f"| {n / total * 100:5.1f} | `{frame}` |")


async def with_py_spy(spy: str, args: argparse.Namespace) -> None:
    from bench.loadgen import openai_target, runner_target, yardstick_target
    from bench.relay import cpu_ns
    from llm_runner.engine.launcher import free_port
    from tests.support.servers import Runner, Server, StandIn

    port, yard_port = free_port(), free_port()
    ollama = StandIn(port)
    ollama.args = ["-m", "bench.relay", "--standin", "--port", str(port)]
    yard = Server(["-m", "bench.relay", "--port", str(yard_port), "--upstream", ollama.url], yard_port)
    env = {
        "OLLAMA_HOST": ollama.url,
        "MODEL_ID": LLAMA,
        "LLM_RUNNER_CONCURRENCY": "128",
        "LLM_RUNNER_MAX_QUEUE": "128",
        "LLM_RUNNER_LOG_LEVEL": "warning",
        "LLM_RUNNER_HEALTH_INTERVAL_S": "5",
    }
    levels = [int(n) for n in args.levels.split(",")]
    with ollama, yard, Runner(env) as runner:
        runner.wait_status("OK")
        ollama.script(tokens=args.tokens, token_rate=0)
        faces = {
            "/llm": (runner.process.pid, runner_target(runner.url, args.tokens)),
            "/v1": (runner.process.pid, openai_target(runner.url, args.tokens)),
        }
        if not args.no_yardstick:
            faces["yardstick"] = (yard.process.pid, yardstick_target(yard.url, args.tokens))
        await load([target for _, target in faces.values()], levels, 2.0)  # warm-up: imports, caches, pools
        per_request: dict[str, Counter] = {}  # face → package → CPU ms per request
        for face, (pid, target) in faces.items():
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "raw.txt"
                command = [spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds))]
                command += ["--rate", str(args.rate), "--format", "raw", "--nolineno"]
                command += ["--output", str(out)]
                recorder = await asyncio.create_subprocess_exec(
                    *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
                )
                await asyncio.sleep(0.5)  # py-spy attaches
                cpu_before = cpu_ns(pid)
                requests, errors = await load([target], levels, args.seconds - 1.0)
                cpu_ms = (cpu_ns(pid) - cpu_before) / 1e6 / max(requests, 1)
                _, err = await recorder.communicate()
                if not out.exists():
                    raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')}")
                own, inclusive, total = parse_raw(out)
                RESULTS.mkdir(exist_ok=True)
                (RESULTS / f"profile-{face.strip('/')}.txt").write_text(out.read_text())  # collapsed stacks
            served_by = "the yardstick relay" if face == "yardstick" else "the runner"
            print(
                f"\n{face}: {requests} requests ({errors} errors) of {args.tokens} tokens in bursts of "
                f"{args.levels}; CPU of {served_by}: {cpu_ms:.2f} ms per request"
            )
            report(face, own, inclusive, total, args.top)
            per_request[face] = Counter({k: v / max(total, 1) * cpu_ms for k, v in packages_of(own).items()})
        print_packages(per_request)


def packages_of(own: Counter) -> Counter:
    packages: Counter = Counter()
    for frame, n in own.items():
        packages[package(frame)] += n
    return packages


def print_packages(per_request: dict[str, Counter]) -> None:
    """CPU ms per request by package, side by side (own-time share × measured CPU per request)."""
    faces = list(per_request)
    names = sorted({p for c in per_request.values() for p in c}, key=lambda p: -max(c[p] for c in per_request.values()))
    print("\n### CPU per request by package, ms (own-time share × the process's CPU per request)\n")
    print("| package | " + " | ".join(faces) + " |\n|---" + "|---" * len(faces) + "|")
    for name in names[:14]:
        print(f"| {name} | " + " | ".join(f"{per_request[f][name]:.2f}" for f in faces) + " |")
    print("| **all** | " + " | ".join(f"**{sum(per_request[f].values()):.2f}**" for f in faces) + " |")


def with_cprofile(args: argparse.Namespace) -> None:
    """No ptrace: the runner in this process (uvicorn on its own loop in a thread, under cProfile;
    the profiler is switched on from that thread, the only one it then sees)."""
    import cProfile
    import pstats
    import threading

    import uvicorn
    import uvloop

    from bench.loadgen import openai_target, runner_target
    from llm_runner.engine.launcher import free_port
    from tests.support.servers import StandIn

    port = free_port()
    ollama = StandIn(port)
    ollama.args = ["-m", "bench.relay", "--standin", "--port", str(port)]
    levels = [int(n) for n in args.levels.split(",")]
    with ollama:
        env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_CONCURRENCY": "128"}
        os.environ.update({**env, "LLM_RUNNER_MAX_QUEUE": "128", "LLM_RUNNER_LOG_LEVEL": "warning"})
        from llm_runner.http.app import create_app

        runner_port = free_port()
        config = uvicorn.Config(create_app(), host="127.0.0.1", port=runner_port, log_level="warning")
        server = uvicorn.Server(config)
        loop = uvloop.new_event_loop()
        thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve()), daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        ollama.script(tokens=args.tokens, token_rate=0)
        url = f"http://127.0.0.1:{runner_port}"
        faces = {"/llm": runner_target(url, args.tokens), "/v1": openai_target(url, args.tokens)}
        uvloop.run(load(list(faces.values()), levels, 2.0))  # warm-up
        for face, target in faces.items():
            profiler = cProfile.Profile()
            on_loop(loop, profiler.enable)
            requests, errors = uvloop.run(load([target], levels, args.seconds))
            on_loop(loop, profiler.disable)
            print(f"\n{face}: {requests} requests ({errors} errors); cProfile in-process (py-spy could not attach)")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
        server.should_exit = True
        thread.join(10)


def on_loop(loop: asyncio.AbstractEventLoop, call) -> None:  # type: ignore[no-untyped-def]
    """Run `call` on the loop's own thread and wait for it."""
    import threading

    done = threading.Event()
    loop.call_soon_threadsafe(lambda: (call(), done.set()))
    done.wait(5)


def cli(argv: list[str]) -> None:
    import uvloop

    parser = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="16,64", help="burst sizes, alternated")
    parser.add_argument("--tokens", type=int, default=4, help="tokens per stream (few: set-up cost shows)")
    parser.add_argument("--seconds", type=float, default=12.0, help="sampling time per face")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--no-yardstick", action="store_true", help="profile only the runner's faces")
    parser.add_argument("--cprofile", action="store_true", help="skip py-spy, use the in-process fallback")
    args = parser.parse_args(argv)
    spy = None if args.cprofile else py_spy()
    if spy and can_attach(spy):
        uvloop.run(with_py_spy(spy, args))
        return
    print("py-spy is missing or cannot attach (ptrace); falling back to cProfile in-process", flush=True)
    with_cprofile(args)
