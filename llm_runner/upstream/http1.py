"""A small asyncio HTTP/1.1 client for the token path: one origin, keep-alive, streamed bodies.

Why not httpcore (httpx's transport): per streamed chunk it runs anyio cancel scopes, h11 events and
stream wrappers, about 40% of the runner's CPU per request. Here a chunk costs one `data_received`,
the C parser (httptools, i.e. llhttp, which also undoes the chunked encoding) and at most one future.
Timeouts cost no timer per read either: one watchdog per response re-arms itself for the time left
and fails a read only when nothing arrived for the whole timeout.

Only what Ollama's API needs: a request is sent whole, in one write; a response is framed by
Content-Length, chunked encoding or the end of the connection. No proxies, redirects or pipelining.
Any failure closes its connection: only a response read to its end goes back to the pool.
This module has the connections and the pool; http1_response.py the response and the errors.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TypeVar
from urllib.parse import urlsplit

from llm_runner.upstream.http1_response import (
    ConnectFailed,
    ConnectionLost,
    HTTP1Error,
    ProtocolError,
    ReadTimeout,
    Response,
)

__all__ = [
    "ConnectFailed",
    "ConnectionLost",
    "HTTP1Error",
    "HTTP1Pool",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "probe",
]
T = TypeVar("T")


class _Connection(asyncio.Protocol):
    """One socket: idle in the pool, or carrying the exchange of `response`."""

    def __init__(self, pool: HTTP1Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool, self.loop = pool, loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.response: Response | None = None
        self.closed = self.paused = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.response is None or self.response.complete:
            self.close()  # bytes nobody asked for: the connection can no longer be trusted
        else:
            self.response.feed(data)

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)  # an idle connection the server closed is dropped at once
        if self.response is not None:
            self.response.ended(exc)

    async def exchange(self, request: bytes, timeout_s: float) -> Response:
        """Send `request` in one write; return once the status line and headers arrived."""
        response = self.response = Response(self)
        try:
            self.transport.write(request)
            await response.until_headers(timeout_s)
        except BaseException:  # cancellation included: the connection is closed, never pooled
            response.release()
            raise
        return response

    def recycle(self) -> None:
        self.pool._checkin(self)

    def close(self) -> None:
        """Close now, unsent bytes dropped: abort, not close, since closing must stop the server."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class HTTP1Pool:
    """Keep-alive HTTP/1.1 connections to one origin (`http://host[:port]` or `https://…`; a path in
    `base_url` prefixes every request's). Unlimited connections in use; up to `max_idle` wait for
    reuse, each at most `keepalive_expiry_s`, the most recently used taken first."""

    def __init__(self, base_url: str, *, max_idle: int = 64, keepalive_expiry_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r}: an http:// or https:// URL with a host is needed")
        self.origin, self.host = f"{parts.scheme}://{parts.netloc}", parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix, self._host_line = parts.path.rstrip("/"), f"Host: {parts.netloc}\r\n"
        self.max_idle, self.keepalive_expiry_s = max_idle, keepalive_expiry_s
        self._idle: deque[_Connection] = deque()
        self._connections: set[_Connection] = set()
        self._closed = False

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        headers: Mapping[str, str] | None = None,
        connect_timeout_s: float,
        first_byte_timeout_s: float,
    ) -> AsyncIterator[Response]:
        """One request; the response is read inside the block. `first_byte_timeout_s` bounds the
        wait for its headers (for Ollama, a model load). Leaving the block releases the connection:
        back to the pool if the body was read to its end, else closed."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) if headers else ""
        kind = "Content-Type: application/json\r\n" if body else ""
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._host_line}{extra}{kind}"
        request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        connection = self._checkout()
        if connection is not None:
            try:
                response = await connection.exchange(request, first_byte_timeout_s)
            except ConnectionLost as exc:
                if exc.responded:
                    raise
                connection = None  # closed as we reused it: as Go's net/http, once more on a fresh one
        if connection is None:
            connection = await self._connect(connect_timeout_s)
            response = await connection.exchange(request, first_byte_timeout_s)
        try:
            yield response
        finally:
            response.release()

    async def _connect(self, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        hostname = self.host if self._ssl else None
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, loop), self.host, self.port, ssl=self._ssl, server_hostname=hostname
                )
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise ConnectFailed(f"no connection to {self.origin} within {timeout_s:g}s") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.origin}: {exc}") from exc
        self._connections.add(connection)
        return connection

    def _checkout(self) -> _Connection | None:
        """The most recently used idle connection; if it has expired, so have the rest: all closed."""
        while self._idle:
            connection = self._idle.pop()
            if connection.loop.time() - connection.idle_since <= self.keepalive_expiry_s:
                return connection
            connection.close()
            self._close_idle()
        return None

    def _checkin(self, connection: _Connection) -> None:
        if self._closed or self.max_idle <= 0:
            connection.close()
            return
        connection.idle_since = now = connection.loop.time()
        idle = self._idle
        while idle and (len(idle) >= self.max_idle or now - idle[0].idle_since > self.keepalive_expiry_s):
            idle.popleft().close()
        idle.append(connection)

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    def _close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def aclose(self) -> None:
        """Close every connection, idle or in use (a response in use then fails with ConnectionLost)."""
        self._closed = True
        self._close_idle()
        for connection in list(self._connections):
            connection.close()
        await asyncio.sleep(0)  # let the transports report their end


async def probe(
    pool: HTTP1Pool,
    path: str,
    timeout_s: float,
    read: Callable[[int, bytes], T],
    headers: Mapping[str, str] | None = None,
) -> T:
    """A liveness GET: `timeout_s` bounds every step, `read(status, body)` judges the answer (a
    ValueError: a bad one). A pooled connection the server closed just as it is reused is retried
    by the pool itself; any other failure but a refused connection is tried once more, on a fresh
    connection (the failed one is closed, never reused). The second failure is raised."""
    for attempt in (1, 2):
        try:
            async with pool.request(
                "GET", path, headers=headers, connect_timeout_s=timeout_s, first_byte_timeout_s=timeout_s
            ) as response:
                body = await response.read(timeout_s)
            return read(response.status, body)
        except (HTTP1Error, ValueError) as exc:
            if attempt == 2 or isinstance(exc, ConnectFailed):
                raise
    raise AssertionError("unreachable code")
