"""Run the embedded engine as a supervised child process.

A separate process keeps llama.cpp's CPU work and its Python per-token overhead off the runner's
event loop, and lets the runner talk to it over the very same HTTP path as to a real Ollama.
The runner does not wait for it: until it answers, the model lifecycle reports LOADING exactly as
for an Ollama that is still starting. If it dies, it is started again, and `notify` tells the
lifecycle both events (False: exited, True: started) so it probes at once and warms again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable

from llm_runner.settings import Settings

log = logging.getLogger("llm_runner.engine")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineProcess:
    def __init__(self, settings: Settings) -> None:
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

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="embedded-engine")

    async def _supervise(self) -> None:
        backoff = 1.0
        while True:
            self.process = await asyncio.create_subprocess_exec(*self.args)
            log.info("embedded engine started (pid %s) at %s", self.process.pid, self.base_url)
            self.notify(True)
            started = asyncio.get_running_loop().time()
            code = await self.process.wait()
            self.notify(False)
            if asyncio.get_running_loop().time() - started > 60:
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
