"""The token path's HTTP/1.1 client (llm_runner/upstream/http1.py) against real servers on loopback.

Byte-exact edge cases run against small asyncio servers scripted per connection below; the mapping
onto UpstreamError runs against the Ollama stand-in. Everything waits on conditions with deadlines;
the only sleeps are a server's own pacing, never synchronisation.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from llm_runner.core.errors import UpstreamError
from llm_runner.core.events import End
from llm_runner.core.request import GenerationRequest, Message
from llm_runner.engine.launcher import free_port
from llm_runner.settings import Settings
from llm_runner.upstream.http1 import ConnectFailed, ConnectionLost, HTTP1Pool, ProtocolError, ReadTimeout
from llm_runner.upstream.http1_response import HIGH_WATER
from llm_runner.upstream.ollama import OllamaUpstream
from tests.support.servers import StandIn

Handler = Callable[["Conn"], Awaitable[None]]
QUICK = {"connect_timeout_s": 5.0, "first_byte_timeout_s": 5.0}
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def sized(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (status.encode(), len(body), extra, body)


class Conn:
    """The server's side of one accepted connection."""

    def __init__(self, origin: Origin, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.origin, self.index, self.reader, self.writer = origin, index, reader, writer

    async def request(self) -> bytes | None:
        """One whole request (head and Content-Length body), or None once the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"Content-Length: (\d+)", head)
            body = await self.reader.readexactly(int(length.group(1))) if length else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.origin.requests.append(head + body)
        return head + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_client_closes(self) -> None:
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass


class Origin:
    """An HTTP server on 127.0.0.1 whose `handler` scripts every accepted connection byte by byte."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.requests: list[bytes] = []
        self.release = asyncio.Event()  # stalling handlers wait on it; set when the test ends
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await self.handler(Conn(self, self.accepted, reader, writer))
        except ConnectionError:
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler, **pool_options: Any) -> AsyncIterator[tuple[Origin, HTTP1Pool]]:
    origin = Origin(handler)
    server = await asyncio.start_server(origin._serve, "127.0.0.1", 0)
    origin.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    pool = HTTP1Pool(origin.url, **pool_options)
    try:
        yield origin, pool
    finally:
        origin.release.set()
        await pool.aclose()
        server.close()
        await server.wait_closed()


async def until(predicate: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g}s: {what}")
        await asyncio.sleep(0.01)


async def keep_alive_server(conn: Conn) -> None:
    """Answers every request on the connection with a small Content-Length body naming it."""
    while await conn.request() is not None:
        await conn.send(sized(b"conn %d" % conn.index))


async def get(pool: HTTP1Pool, path: str = "/") -> bytes:
    async with pool.request("GET", path, **QUICK) as response:
        return await response.read(5.0)


# --- reading ---------------------------------------------------------------------------------------


async def test_a_chunked_body_is_streamed_piece_by_piece_and_ends_with_empty_bytes():
    sent = asyncio.Event()
    go_on = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(CHUNKED + chunk(b'{"n":1}\n'))
        sent.set()
        await go_on.wait()
        await conn.send(chunk(b'{"n":2}\n') + chunk(b'{"n":3}\n') + b"0\r\n\r\n")
        await conn.until_client_closes()

    async with serving(handler) as (origin, pool):
        async with pool.request("POST", "/api/chat", b'{"model":"m"}', **QUICK) as response:
            assert response.status == 200
            assert response.headers["content-type"] == "application/x-ndjson"
            assert await response.next_chunk(5.0) == b'{"n":1}\n'  # before the server sent more
            go_on.set()
            rest = b""
            while data := await response.next_chunk(5.0):
                rest += data
            assert rest == b'{"n":2}\n{"n":3}\n'
            assert await response.next_chunk(5.0) == b""
        assert pool.idle_count == 1  # read to its end: kept for reuse
        head = origin.requests[0]
        assert head.startswith(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"Content-Type: application/json\r\nContent-Length: 13\r\n\r\n" in head
        assert head.endswith(b'\r\n\r\n{"model":"m"}')


async def test_a_content_length_body_is_read_whole():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(sized(b'{"version":"0.12.6"}', "404 Not Found", b"X-Thing: yes\r\n"))
        await conn.until_client_closes()

    async with serving(handler) as (_, pool), pool.request("GET", "/api/version", **QUICK) as response:
        assert response.status == 404 and response.headers["x-thing"] == "yes"
        assert await response.read(5.0) == b'{"version":"0.12.6"}'


async def test_a_body_delimited_by_the_end_of_the_connection_is_read_and_the_connection_not_kept():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\n\r\nall of it")

    async with serving(handler) as (origin, pool):
        assert await get(pool) == b"all of it"
        assert await get(pool) == b"all of it"
        assert origin.accepted == 2 and pool.idle_count == 0


async def test_a_path_in_the_base_url_prefixes_requests_and_default_ports_follow_the_scheme():
    async with serving(keep_alive_server) as (origin, _):
        pool = HTTP1Pool(origin.url + "/ollama/")
        await get(pool, "/api/version")
        await pool.aclose()
        assert origin.requests[0].startswith(b"GET /ollama/api/version HTTP/1.1\r\n")
        assert b"Content-Type" not in origin.requests[0]
    assert HTTP1Pool("http://example.com").port == 80
    assert HTTP1Pool("https://example.com").port == 443
    with pytest.raises(ValueError, match="http:// or https://"):
        HTTP1Pool("ftp://example.com")


# --- keep-alive ------------------------------------------------------------------------------------


async def test_a_finished_response_keeps_its_connection_for_the_next_request():
    async with serving(keep_alive_server) as (origin, pool):
        assert [await get(pool) for _ in range(3)] == [b"conn 1"] * 3
        assert origin.accepted == 1 and len(origin.requests) == 3


async def test_connection_close_from_the_server_is_honoured():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(sized(b"once", extra=b"Connection: close\r\n"))
        await conn.until_client_closes()

    async with serving(handler) as (origin, pool):
        assert await get(pool) == b"once"
        assert await get(pool) == b"once"
        assert origin.accepted == 2


async def test_an_idle_connection_the_server_closed_is_dropped_at_once_and_the_next_request_works():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(sized(b"conn %d" % conn.index))  # keep-alive, then closes it anyway

    async with serving(handler) as (_, pool):
        assert await get(pool) == b"conn 1"
        await until(lambda: pool.idle_count == 0, "the pool drops the closed connection")
        assert await get(pool) == b"conn 2"


async def test_a_reused_connection_closed_on_receiving_the_request_is_retried_once_on_a_fresh_one():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(sized(b"conn %d" % conn.index))
        if conn.index == 1:
            await conn.request()  # the second request: closed without a byte of answer
        else:
            await keep_alive_server(conn)

    async with serving(handler) as (origin, pool):
        assert await get(pool) == b"conn 1"
        assert await get(pool) == b"conn 2"
        assert origin.accepted == 2 and len(origin.requests) == 3


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried():
    async def handler(conn: Conn) -> None:
        await conn.request()

    async with serving(handler) as (origin, pool):
        with pytest.raises(ConnectionLost, match="before any response") as caught:
            await get(pool)
        assert caught.value.responded is False
        assert origin.accepted == 1


async def test_expired_idle_connections_are_not_reused():
    async with serving(keep_alive_server, keepalive_expiry_s=0.0) as (origin, pool):
        assert await get(pool) == b"conn 1"
        assert await get(pool) == b"conn 2"
        await until(lambda: origin.accepted == 2 and pool.idle_count == 1, "one idle connection left")


# --- failures --------------------------------------------------------------------------------------


async def test_a_connection_closed_mid_body_is_a_connection_lost_after_the_bytes_that_came():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(CHUNKED + chunk(b'{"n":1}\n'))

    async with serving(handler) as (origin, pool):
        async with pool.request("POST", "/api/chat", b"{}", **QUICK) as response:
            assert await response.next_chunk(5.0) == b'{"n":1}\n'
            with pytest.raises(ConnectionLost, match="mid-response") as caught:
                await response.next_chunk(5.0)
        assert caught.value.responded is True and origin.accepted == 1 and pool.idle_count == 0


async def test_waiting_for_the_headers_times_out_saying_how_long_it_waited():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.origin.release.wait()

    async with serving(handler) as (_, pool):
        started = time.monotonic()
        with pytest.raises(ReadTimeout, match=r"nothing received for 0\.2s") as caught:
            async with pool.request("GET", "/", connect_timeout_s=5.0, first_byte_timeout_s=0.2):
                pass
        assert caught.value.waited_s == 0.2 and 0.2 <= time.monotonic() - started < 2.0
        assert pool.idle_count == 0


async def test_silence_between_chunks_times_out_but_steady_chunks_never_do():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(CHUNKED)
        for n in range(6):  # 0.6 s in all, no gap longer than 0.1 s: within a 0.3 s timeout
            await asyncio.sleep(0.1)
            await conn.send(chunk(b"%d\n" % n))
        await conn.origin.release.wait()

    async with serving(handler) as (_, pool), pool.request("GET", "/", **QUICK) as response:
        got = b""
        while len(got) < 12:
            got += await response.next_chunk(0.3)
        assert got == b"0\n1\n2\n3\n4\n5\n"
        with pytest.raises(ReadTimeout, match=r"0\.3s"):
            await response.next_chunk(0.3)


async def test_a_slow_reader_is_not_timed_out_for_the_time_it_spent_elsewhere():
    cue = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(CHUNKED + chunk(b"a"))
        await cue.wait()
        await conn.send(chunk(b"b") + b"0\r\n\r\n")
        await conn.until_client_closes()

    async with serving(handler) as (_, pool), pool.request("GET", "/", **QUICK) as response:
        assert await response.next_chunk(0.2) == b"a"
        await asyncio.sleep(0.3)  # the reader is busy elsewhere for longer than its timeout
        cue.set()
        assert await response.next_chunk(0.2) == b"b"


async def test_a_refused_connection_is_a_connect_failure():
    pool = HTTP1Pool(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectFailed, match=r"cannot connect to http://127\.0\.0\.1:"):
        await get(pool)
    await pool.aclose()


async def test_bytes_that_are_not_http_are_a_protocol_error():
    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await conn.until_client_closes()

    async with serving(handler) as (_, pool):
        with pytest.raises(ProtocolError):
            await get(pool)


# --- cancellation and back-pressure ----------------------------------------------------------------


async def test_a_cancelled_reader_closes_the_socket_at_once_and_the_pool_still_works():
    closed = asyncio.Event()

    async def handler(conn: Conn) -> None:
        if conn.index == 1:  # stalls mid-body
            await conn.request()
            await conn.send(CHUNKED + chunk(b"x"))
            await conn.until_client_closes()
            closed.set()
        else:
            await keep_alive_server(conn)

    async with serving(handler) as (_, pool):
        reading = asyncio.Event()

        async def reader() -> None:
            async with pool.request("GET", "/", **QUICK) as response:
                await response.next_chunk(60.0)
                reading.set()  # the test runs again once this task waits in next_chunk below
                await response.next_chunk(60.0)

        task = asyncio.create_task(reader())
        await asyncio.wait_for(reading.wait(), 5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 5.0)  # the server saw the connection end
        assert await get(pool) == b"conn 2" and pool.idle_count == 1


async def test_a_request_cancelled_while_waiting_for_headers_closes_its_connection():
    closed = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.until_client_closes()
        closed.set()

    async with serving(handler) as (_, pool):
        task = asyncio.create_task(get(pool))
        await until(lambda: len(pool._connections) == 1, "the request was sent")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 5.0)
        await until(lambda: not pool._connections, "the pool forgot it")


async def test_a_reader_that_stops_reading_pauses_the_socket_and_resumes_it_when_it_reads():
    total = 4 * HIGH_WATER
    piece = b"y" * 16384

    async def handler(conn: Conn) -> None:
        await conn.request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // len(piece)):
            await conn.send(piece)
        await conn.until_client_closes()

    async with serving(handler) as (_, pool), pool.request("GET", "/", **QUICK) as response:
        connection = response._connection
        await until(lambda: connection.paused, "reading paused")
        assert HIGH_WATER < response._buffered <= HIGH_WATER + 256 * 1024  # at most one read past the mark
        received = len(await response.next_chunk(5.0))
        assert not connection.paused
        received += len(await response.read(5.0))
        assert received == total


# --- through OllamaUpstream, against the stand-in --------------------------------------------------


def upstream(server: StandIn, **settings: Any) -> OllamaUpstream:
    return OllamaUpstream(server.url, Settings(**settings))


HI = GenerationRequest("m", [Message("user", "hi")], max_tokens=30)


async def test_chats_reuse_one_connection_and_end_with_exact_counts(ollama):
    up = upstream(ollama)
    try:
        for _ in range(3):
            events = [e async for e in up.chat("llama3.1:8b", HI)]
            assert events[:2] == ["tok0 ", "tok1 "] and events[-1] == End("stop", 11, 12)
        assert await up.version() == "0.12.6"
        assert len(up._http._connections) == 1
    finally:
        await up.aclose()


@pytest.mark.parametrize(
    ("knobs", "kind", "needle"),
    [
        ({"stall_after": 2, "stall_seconds": 5.0}, "timeout", "Ollama sent nothing for 0.3s for llama3.1:8b"),
        ({"first_token_delay": 5.0}, "timeout", "Ollama sent nothing for 0.2s for llama3.1:8b"),
        ({"close_after": 2}, "truncated", "connection to Ollama broke during llama3.1:8b"),
        ({"end_without_done_after": 2}, "truncated", "Ollama closed the llama3.1:8b stream before it was done"),
    ],
)
async def test_upstream_failures_keep_their_kinds(ollama, knobs, kind, needle):
    ollama.script(**knobs)
    up = upstream(ollama, inter_token_timeout_s=0.3, first_token_timeout_s=0.2)
    try:
        with pytest.raises(UpstreamError) as caught:
            [e async for e in up.chat("llama3.1:8b", HI)]
        assert caught.value.kind == kind and needle in caught.value.msg
    finally:
        await up.aclose()


async def test_an_ollama_that_is_not_there_is_unreachable_for_chat_and_version():
    up = OllamaUpstream(f"http://127.0.0.1:{free_port()}", Settings(connect_timeout_s=1.0))
    try:
        with pytest.raises(UpstreamError) as caught:
            await anext(up.chat("llama3.1:8b", HI))
        assert caught.value.kind == "unreachable" and "is unreachable (ConnectFailed" in caught.value.msg
        with pytest.raises(UpstreamError) as caught:
            await up.version()
        assert caught.value.kind == "unreachable"
    finally:
        await up.aclose()


@pytest.mark.parametrize("dies", [True, False], ids=["ollama-died", "ollama-lives"])
async def test_a_chat_closed_unanswered_is_unreachable_only_if_ollama_is_gone(dies):
    """A dying Ollama: the kernel accepted the connection, the process never answered it. A live one
    whose handler crashed does the same; the version probe tells them apart."""
    chats: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(Origin(keep_alive_server), 1, reader, writer)
        while (request := await conn.request()) is not None:
            if request.startswith(b"POST /api/chat"):
                chats.append(request)
                if dies:
                    server.close()  # the listening socket first: the probe is refused
                break
            await conn.send(sized(b'{"version": "0.12.6"}'))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    up = OllamaUpstream(url, Settings(connect_timeout_s=1.0))
    try:
        with pytest.raises(UpstreamError) as caught:
            await anext(up.chat("llama3.1:8b", HI))
        assert len(chats) == 1
        message = caught.value.msg
        if dies:
            assert caught.value.kind == "unreachable", message
            assert f"Ollama at {url} is unreachable" in message and "closed llama3.1:8b's connection" in message
        else:
            assert caught.value.kind == "truncated", message
            assert f"Ollama 0.12.6 at {url} closed llama3.1:8b's connection without answering" in message
    finally:
        await up.aclose()
        server.close()


async def test_closing_a_chat_early_stops_ollama_at_once(ollama):
    ollama.script(tokens=1000, token_rate=50)
    up = upstream(ollama)
    try:
        events = up.chat("llama3.1:8b", GenerationRequest("m", [Message("user", "hi")]))
        assert await anext(events) == "tok0 "
        await events.aclose()
        stats = await ollama.until(lambda s: s["cancelled"] == 1)
        assert stats["cancelled"] == 1 and stats["open_generations"] == 0
        assert not up._http._connections or all(c.closed for c in up._http._connections)
    finally:
        await up.aclose()
