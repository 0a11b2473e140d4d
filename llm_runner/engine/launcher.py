"""Start the embedded engine as a child process and wait until it answers like an Ollama.

A separate process keeps llama.cpp's CPU work and its Python per-token overhead off the
runner's event loop, and lets the runner talk to it over the very same HTTP path as to Ollama.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import httpx

from llm_runner.settings import Settings

log = logging.getLogger("llm_runner.engine")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineProcess:
    def __init__(self, process: asyncio.subprocess.Process, base_url: str) -> None:
        self.process, self.base_url = process, base_url

    @classmethod
    async def start(cls, settings: Settings, timeout_s: float = 120.0) -> EngineProcess:
        port = settings.engine_port or free_port()
        args = [sys.executable, "-m", "llm_runner", "engine", "--host", "127.0.0.1", "--port", str(port)]
        if settings.engine_models_dir:
            args += ["--models-dir", str(settings.engine_models_dir)]
        if settings.engine_threads:
            args += ["--threads", str(settings.engine_threads)]
        process = await asyncio.create_subprocess_exec(*args)
        base_url = f"http://127.0.0.1:{port}"
        log.info("embedded engine starting (pid %s) at %s", process.pid, base_url)
        engine = cls(process, base_url)
        async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"embedded engine exited with code {process.returncode} during start")
                try:
                    (await client.get("/api/version")).raise_for_status()
                    return engine
                except httpx.HTTPError:
                    if asyncio.get_running_loop().time() > deadline:
                        await engine.stop()
                        raise RuntimeError(f"embedded engine did not answer within {timeout_s:g}s") from None
                    await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
