"""`serve`'s address, checked before anything starts: a port already taken is one line naming it and the
fix, not uvicorn's bind error after the whole service has started (and stopped again)."""

from __future__ import annotations

import errno
import socket

from llm_runner.ops.console import fail


def refuse_unusable_address(host: str, port: int) -> None:
    """Exit 2 when `serve` could not listen on host:port, binding as uvicorn does (SO_REUSEADDR, so a port
    left in TIME_WAIT by a previous run is not reported)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SystemExit(fail(_reason(host, port, exc))) from None


def _reason(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is already in use on {host} (another llm-runner, or another service): stop it, "
            f"or serve on another port with --port {port + 1}"
        )
    if exc.errno == errno.EACCES:
        return f"no permission to listen on {where}: ports below 1024 need root; use --port 8000"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine: use --host 0.0.0.0 (all) or 127.0.0.1"
    return f"cannot listen on {where}: {exc.strerror or exc}"
