"""`llm-runner` command line: serve, engine, ai-models, models, pull, doctor, runners-json, price."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable

from llm_runner import __version__
from llm_runner.ops import commands as commands_module
from llm_runner.ops import compose as compose_module
from llm_runner.ops import help_texts, listen
from llm_runner.ops import live as live_commands
from llm_runner.ops import price as price_command
from llm_runner.ops.console import fail, load_settings

log = logging.getLogger("llm_runner.serve")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="llm-runner", description="Serve LLMs on Livepeer (live runners and the llm pipeline) from Ollama."
    )
    parser.add_argument("--version", action="version", version=f"llm-runner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service (OpenAI app for live runners, and the llm contract)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 accepts every interface, "
        "as the Docker image does: set AUTH_TOKEN then)",
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)

    engine = commands.add_parser("engine", help="run the embedded Ollama-compatible llama.cpp engine")
    engine.add_argument("--host", default="127.0.0.1")
    engine.add_argument("--port", type=int, default=11434)
    engine.add_argument("--models-dir", default=None, help="folder of extra *.gguf files")
    engine.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all cores)")
    engine.add_argument("--keep-alive", type=int, default=75, help="seconds idle connections are kept")
    engine.set_defaults(run=_engine)

    commands_module.register(commands)
    compose_module.register(commands)
    live_commands.register(commands)
    price_command.register(commands)
    help_texts.describe(commands)

    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    sys.exit(run(args))


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from llm_runner.core.errors import ConfigurationError
    from llm_runner.http.app import create_app

    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except ConfigurationError as exc:
        return fail(str(exc))
    runtime = app.state.runtime

    class DrainingServer(uvicorn.Server):
        """On SIGTERM/SIGINT: refuse new generations at once, but keep listening (the readiness URL
        answers: an orchestrator that cannot reach it releases the sessions still streaming) until
        the open streams end or the drain period cuts them; then stop. A second signal cuts the open
        streams now (each still gets its final chunk with its usage), a third stops at once."""

        signals = 0

        def handle_exit(self, sig: int, frame: object) -> None:
            self.signals += 1
            loop = asyncio.get_event_loop()  # signals are handled on the server's own thread
            if self.signals == 1:
                runtime.begin_drain()
                if sig == signal.SIGINT:
                    log.warning("press Ctrl-C again to cut the open streams now")
                loop.call_soon_threadsafe(lambda: loop.create_task(self.exit_when_drained(sig, frame)))
            elif self.signals == 2:
                loop.call_soon_threadsafe(self.cut_now)
            else:
                self.should_exit = self.force_exit = True

        def cut_now(self) -> None:
            cut = runtime.loop.cut_now("cut by a second interrupt")
            log.warning("second interrupt: cutting %d open stream(s) now; a third one stops at once", cut)

        async def exit_when_drained(self, sig: int, frame: object) -> None:
            try:  # the drain period cuts streams; this is a backstop
                await asyncio.wait_for(runtime.loop.drained.wait(), settings.drain_timeout_s + 5)
                log.warning("stopping: every stream has ended")
            except TimeoutError:
                log.warning("stopping: %d stream(s) did not end after the drain period", len(runtime.loop.live))
            self.should_exit = True

    listen.refuse_unusable_address(args.host, args.port)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 10,
        timeout_keep_alive=int(settings.keep_alive_s),  # longer than an orchestrator's 5 s health poll
        access_log=settings.log_level == "debug",
    )
    # Everything built so far lives as long as the process: keep it out of the collector's way,
    # and collect young objects less often (each stream allocates per token).
    where = "this machine only" if args.host in ("127.0.0.1", "localhost", "::1") else "every client that reaches it"
    logging.getLogger("llm_runner").info("listening on %s:%d: %s", args.host, args.port, where)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    DrainingServer(config).run()
    return 0


def _engine(args: argparse.Namespace) -> int:
    from pathlib import Path

    import uvicorn

    from llm_runner.engine.app import create_engine_app

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_engine_app(Path(args.models_dir) if args.models_dir else None, args.threads)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=args.keep_alive)
    return 0
