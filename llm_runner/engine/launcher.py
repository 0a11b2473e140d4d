"""Run the embedded engine as a supervised child process.

A separate process keeps llama.cpp's CPU work and its Python per-token overhead off the runner's
event loop, and lets the runner talk to it over the very same HTTP path as to a real Ollama.
The runner does not wait for it: until it answers, the model lifecycle reports LOADING exactly as
for an Ollama that is still starting. Until then it is `starting`, not down: the runner's probe
waits for it rather than warn that it is unreachable. If it dies, it is started again, and `notify`
tells the lifecycle both events (False: exited, True: started) so it probes at once and warms again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger("llm_runner.engine")
STARTING, ANSWERING, EXITED = "starting", "answering", "exited"
START_LIMIT_S = 60.0  # a child that has not answered by then is unreachable, no longer "starting"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineSettings(Protocol):
    """What the engine's launcher reads of the runner's settings."""

    engine_port: int
    engine_models_dir: Path | None
    engine_threads: int | None


class EngineProcess:
    def __init__(self, settings: EngineSettings) -> None:
        port = settings.engine_port or free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.args = [
            sys.executable,
            "-m",
            "llm_runner",
            "engine",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--keep-alive",
            "75",
        ]
        if settings.engine_models_dir:
            self.args += ["--models-dir", str(settings.engine_models_dir)]
        if settings.engine_threads:
            self.args += ["--threads", str(settings.engine_threads)]
        self.process: asyncio.subprocess.Process | None = None
        self.notify: Callable[[bool], None] = lambda alive: None
        self._task: asyncio.Task[None] | None = None
        self.state = STARTING  # of the latest child: STARTING, ANSWERING (it answered once) or EXITED
        self.started_at: float | None = None  # time.monotonic() of the latest start
        self._announced: set[str] = set()  # models said to be ready since the latest start

    @property
    def starting(self) -> bool:
        """Started (or about to be) and not answering yet: coming up, not down."""
        if self._task is None or self.state != STARTING:
            return False
        return self.started_at is None or time.monotonic() - self.started_at < START_LIMIT_S

    def answers(self) -> None:
        """The runner reached the latest child: from now on, not reaching it means it is down."""
        if self.state == STARTING:
            self.state = ANSWERING

    def warmed(self, tag: str) -> None:
        """One line per model and start, once it is loaded and warm, with the time since the start."""
        if tag not in self._announced and self.started_at is not None:
            self._announced.add(tag)
            log.info("embedded engine ready: %s in %.1f s", tag, time.monotonic() - self.started_at)

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="embedded-engine")

    async def _supervise(self) -> None:
        backoff = 1.0
        while True:
            self.state, self.started_at, self._announced = STARTING, time.monotonic(), set()
            self.process = await asyncio.create_subprocess_exec(*self.args)
            log.info("starting the embedded engine (pid %s) at %s…", self.process.pid, self.base_url)
            self.notify(True)
            code = await self.process.wait()
            self.state = EXITED
            self.notify(False)
            if time.monotonic() - self.started_at > 60:
                backoff = 1.0
            log.error("embedded engine exited with code %s; restarting in %gs", code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
