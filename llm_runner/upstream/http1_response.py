"""The response side of the token path's HTTP/1.1 client (`http1.py`): its errors, and one
response parsed by llhttp (httptools) as its bytes arrive, with one watchdog timer per response
instead of one per read, and TCP back-pressure for a slow reader."""

from __future__ import annotations

import asyncio
from typing import Protocol

import httptools

HIGH_WATER = 256 * 1024  # unread body bytes past which the socket is not read (TCP back-pressure)


class HTTP1Error(Exception):
    """Any failure of an exchange; its connection is closed, never reused."""


class ConnectFailed(HTTP1Error):
    """No connection: refused, unresolvable, a TLS failure, or slower than the connect timeout."""


class ReadTimeout(HTTP1Error):
    """Nothing arrived for `waited_s` seconds while waiting for the headers or for more of the body."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"nothing received for {waited_s:g}s")
        self.waited_s = waited_s


class ConnectionLost(HTTP1Error):
    """The connection broke or was closed before the response was complete. `responded`: whether any
    response byte had arrived; if none had, the server may not have seen the request at all."""

    def __init__(self, message: str, responded: bool) -> None:
        super().__init__(message)
        self.responded = responded


class ProtocolError(HTTP1Error):
    """The server's bytes are not a valid HTTP/1.1 response."""


class Carrier(Protocol):
    """What a response needs of the connection it arrives on (http1.py's)."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    response: Response | None
    paused: bool
    closed: bool

    def close(self) -> None: ...

    def recycle(self) -> None:
        """Back to the pool, for the next request."""


class Response:
    """One response: `status` and headers when `request()` enters, the body as it arrives.

    It is the parser's callback object too. Body pieces queue until read; more than HIGH_WATER of
    them pause the socket, so a slow reader slows the server down through TCP."""

    def __init__(self, connection: Carrier) -> None:
        self._connection, self._loop = connection, connection.loop
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.headers_done = self.complete = self.responded = self.keep_alive = False
        self._framed = False  # Content-Length or Transfer-Encoding; else the body ends with the connection
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._error: HTTP1Error | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wait_since = self._timeout = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The headers, names lower-cased (built on demand: the token path never needs them)."""
        return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self.raw_headers}

    async def until_headers(self, timeout_s: float) -> None:
        """Wait for the status line and headers, at most `timeout_s` without a byte."""
        while not self.headers_done:
            if self._error is not None:
                raise self._error
            await self._wait(timeout_s)

    async def next_chunk(self, timeout_s: float) -> bytes:
        """The body bytes that arrived since the last call, waiting up to `timeout_s` for some; b""
        at the end of the body. Raises HTTP1Error (bytes that came before a failure come first)."""
        while not self._chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait(timeout_s)
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._connection.paused:
            self._connection.paused = False
            if not self._connection.closed:
                self._connection.transport.resume_reading()
        return data

    async def read(self, timeout_s: float) -> bytes:
        """The whole (rest of the) body; `timeout_s` bounds each wait for more of it."""
        parts = []
        while chunk := await self.next_chunk(timeout_s):
            parts.append(chunk)
        return b"".join(parts)

    # -- parser callbacks, called from feed_data ------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()  # type: ignore[union-attr]
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._connection.paused:
            self._connection.paused = True
            self._connection.transport.pause_reading()
        if self._waiter is not None:
            self._wake()

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()  # type: ignore[union-attr]  # now: llhttp resets it next
        self.complete = True
        self._wake()

    # -- the connection's side --------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.responded = True
        try:
            self._parser.feed_data(data)  # type: ignore[union-attr]
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(ProtocolError(f"invalid HTTP response: {exc!r}"))
            self._connection.close()

    def ended(self, exc: BaseException | None) -> None:
        """The connection is gone: closed by the server, reset, or closed by us."""
        if self.complete:
            return
        if self.headers_done and not self._framed:  # a body delimited by the connection's end
            self.complete = True
            self._wake()
            return
        where, reason = "mid-response" if self.responded else "before any response", f" ({exc!r})" if exc else ""
        self._fail(ConnectionLost(f"the connection was closed {where}{reason}", self.responded))

    def release(self) -> None:
        """End of the exchange: the connection goes back to the pool if the response was read to its
        end and the server keeps it alive; otherwise it is closed now (mid-body, that is what makes
        the server stop)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._parser = self._watchdog = None  # breaks the parser ↔ response cycle
        connection = self._connection
        connection.response = None
        if self.complete and self.keep_alive and self._error is None and not connection.closed:
            connection.recycle()
        else:
            connection.close()

    async def _wait(self, timeout_s: float) -> None:
        """Wait for the next parser event. The watchdog is armed once and re-armed only when it fires
        (or the timeout changes), not per read."""
        loop = self._loop
        self._wait_since = loop.time()
        if self._watchdog is None or timeout_s != self._timeout:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._timeout = timeout_s
            self._watchdog = loop.call_at(self._wait_since + timeout_s, self._check)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _check(self) -> None:
        self._watchdog = None
        if self._waiter is None or self._waiter.done():
            return  # nobody waits (or the wait is over): the next wait arms it again
        deadline = self._wait_since + self._timeout
        if self._loop.time() >= deadline - 0.001:
            self._fail(ReadTimeout(self._timeout))
        else:
            self._watchdog = self._loop.call_at(deadline, self._check)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: HTTP1Error) -> None:
        self._error = self._error or error
        self._wake()
