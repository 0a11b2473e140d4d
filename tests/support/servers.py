"""Real servers on 127.0.0.1 for tests and benchmarks: the Ollama stand-in, the runner, the engine.

Each runs as its own process (as in production), is started on a free port, waited for, and
stopped with SIGTERM (then SIGKILL) so nothing outlives the test session.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from llm_runner.engine.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """A child process serving HTTP on 127.0.0.1:<port>."""

    def __init__(self, args: list[str], port: int, env: dict[str, str] | None = None, ready_path: str = "/") -> None:
        self.args, self.port, self.ready_path = args, port, ready_path
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(f"/tmp/llm-runner-test-{port}.log")

    def start(self, timeout: float = 60.0) -> Server:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *self.args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited with {self.process.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + self.ready_path, timeout=1.0)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.args} did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, needle: str, within: float = 10.0) -> str:
        """The first log line containing `needle`, waiting for it to appear."""
        deadline = time.monotonic() + within
        while True:
            for line in self.log().splitlines():
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared in the log:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class StandIn(Server):
    """The scripted Ollama (tests/support/standin.py)."""

    def __init__(self, port: int | None = None) -> None:
        port = port or free_port()
        super().__init__(["-m", "tests.support.standin", "--port", str(port)], port, ready_path="/api/version")

    @property
    def entry(self) -> str:
        """Its OLLAMA_HOST entry, before any options."""
        return self.url

    def script(self, **knobs: object) -> dict:
        response = httpx.post(self.url + "/_control", json=knobs, timeout=5)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        httpx.post(self.url + "/_reset", timeout=5).raise_for_status()

    def stats(self) -> dict:
        return httpx.get(self.url + "/_stats", timeout=5).json()

    async def until(self, predicate, within: float = 5.0) -> dict:
        """Poll /_stats (without blocking the loop) until predicate(stats) holds; returns the last."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                stats = (await client.get(self.url + "/_stats")).json()
                if predicate(stats) or time.monotonic() > deadline:
                    return stats
                await asyncio.sleep(0.02)


class OpenAIStandIn(StandIn):
    """The scripted OpenAI-compatible engine (tests/support/openai_standin.py); the same knob helpers."""

    def __init__(self, port: int | None = None) -> None:
        port = port or free_port()
        Server.__init__(self, ["-m", "tests.support.openai_standin", "--port", str(port)], port, ready_path="/_stats")

    @property
    def entry(self) -> str:
        """Its OLLAMA_HOST entry, before any options."""
        return "openai+" + self.url


class LlamaCppServer(Server):
    """llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) on a GGUF, its
    model named `alias` in /v1/models. It has no /health: it answers once the model is loaded."""

    def __init__(self, gguf: Path, alias: str, port: int | None = None) -> None:
        port = port or free_port()
        args = ["-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias]
        args += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False"]
        super().__init__(args, port, ready_path="/v1/models")


class Runner(Server):
    """`llm-runner serve` with the given environment."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        port = port or free_port()
        base = {"LLM_RUNNER_HEALTH_INTERVAL_S": "0.2", "LLM_RUNNER_LOG_LEVEL": "info"}
        args = ["-m", "llm_runner", "serve", "--host", "127.0.0.1", "--port", str(port)]
        super().__init__(args, port, ready_path="/health")
        ours = ("LLM_RUNNER_", "OLLAMA_", "MODEL_ID", "AUTH_TOKEN", "VERSION")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        self.env = {**clean, "PYTHONUNBUFFERED": "1", **base, **env}

    def wait_status(self, status: str, path: str = "/health", timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            seen = httpx.get(self.url + path, timeout=5).json()["status"]
            if seen == status:
                return seen
            time.sleep(0.05)
        raise AssertionError(f"{path} stayed {seen}, wanted {status}:\n{self.log()[-3000:]}")


@contextmanager
def serving(env: dict[str, str], status: str = "OK", timeout: float = 15.0) -> Iterator[Runner]:
    """A runner with this environment, once /health says `status`; stopped after."""
    with Runner(env) as runner:
        runner.wait_status(status, timeout=timeout)
        yield runner


class Engine(Server):
    """`llm-runner engine`: the embedded Ollama-compatible llama.cpp server."""

    def __init__(self, port: int | None = None, models_dir: Path | None = None) -> None:
        port = port or free_port()
        args = ["-m", "llm_runner", "engine", "--port", str(port)]
        args += ["--models-dir", str(models_dir)] if models_dir else []
        super().__init__(args, port, ready_path="/api/version")
