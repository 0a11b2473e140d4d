"""Async load generator: N concurrent streaming requests, per-request timings.

The same client measures both paths: Ollama's NDJSON straight from the stand-in, and Livepeer SSE
through the runner. Lines are counted, not parsed, so the client costs the same on both paths.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"
TAG = "llama3.1:8b"
MESSAGES = [{"role": "user", "content": "Tell a robot story."}]


@dataclass
class Sample:
    ttft: float = 0.0  # seconds from request start to the first token
    tokens: int = 0
    duration: float = 0.0  # first token to last token
    gaps: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.duration if self.tokens > 1 and self.duration > 0 else 0.0


def is_ndjson_token(line: bytes) -> bool:
    return line.startswith(b"{") and b'"done":false' in line


def is_sse_token(line: bytes) -> bool:
    return line.startswith(b"data: {") and b'"finish_reason":""' in line


def is_openai_token(line: bytes) -> bool:
    return line.startswith(b"data: {") and b'"delta":{"content":' in line


def is_relayed_ndjson_token(line: bytes) -> bool:
    return line.startswith(b"data: {") and b'"done":false' in line


@dataclass(frozen=True)
class Target:
    """Where to send a stream and how to recognise a token line."""

    name: str
    url: str
    body: dict
    is_token: Callable[[bytes], bool]


def direct_target(ollama_url: str, max_tokens: int, tag: str = TAG, options: dict | None = None) -> Target:
    body = {
        "model": tag,
        "messages": MESSAGES,
        "stream": True,
        "options": {"num_predict": max_tokens, **(options or {})},
    }
    return Target("direct", ollama_url + "/api/chat", body, is_ndjson_token)


def runner_target(runner_url: str, max_tokens: int, model: str = LLAMA) -> Target:
    body = {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "stream": True}
    return Target("runner", runner_url + "/llm", body, is_sse_token)


def openai_target(runner_url: str, max_tokens: int, model: str = LLAMA, path: str = "/v1/chat/completions") -> Target:
    body = {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "stream": True}
    return Target("/v1", runner_url + path, body, is_openai_token)


def yardstick_target(relay_url: str, max_tokens: int, tag: str = TAG) -> Target:
    """bench/relay.py: the Ollama body, relayed as is and re-framed as SSE."""
    direct = direct_target(relay_url, max_tokens, tag)
    return Target("yardstick", relay_url + "/relay", direct.body, is_relayed_ndjson_token)


class Connections:
    """Keep-alive HTTP/1.1 connections to one host, as go-livepeer's http.Client keeps them."""

    def __init__(self) -> None:
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
        return await asyncio.open_connection(host, port)

    def put(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(connection)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def one_stream(target: Target, connections: Connections | None = None) -> Sample:
    """POST one streaming request over raw HTTP/1.1 and time every token line.

    A bare asyncio client (no httpx) so that the measuring side costs as little CPU as possible:
    client, stand-in and runner share the same few cores.
    """
    fresh = connections is None  # a new connection for this request only, closed after it
    connections = connections or Connections()
    sample = Sample()
    url = urlsplit(target.url)
    body = json.dumps(target.body).encode()
    started = time.perf_counter()
    last = first = started
    connection = None
    try:
        connection = reader, writer = await connections.get(url.hostname or "127.0.0.1", url.port or 80)
        writer.write(
            f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status = int((await reader.readline()).split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        if status != 200:
            sample.error = f"HTTP {status}"
            return sample
        pending = b""
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                await reader.readline()  # the CRLF after the last chunk
                break
            pending += await reader.readexactly(size + 2)
            pending = pending[:-2]
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not target.is_token(line):
                    continue
                now = time.perf_counter()
                if sample.tokens == 0:
                    sample.ttft = now - started
                    first = now
                else:
                    sample.gaps.append(now - last)
                last = now
                sample.tokens += 1
        if sample.tokens:
            sample.duration = last - first
        if not fresh:
            connections.put(connection)
            connection = None
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    finally:
        if connection is not None:
            connection[1].close()
    return sample


async def run_level(target: Target, concurrency: int, connections: Connections | None = None) -> list[Sample]:
    connections = connections or Connections()
    return list(await asyncio.gather(*(one_stream(target, connections) for _ in range(concurrency))))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, int(q) - 1))]


def quantile(values: list[float], q: float) -> float:
    """The q-th quantile (0..1), linear between order statistics; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples: list[Sample]) -> dict:
    good = [s for s in samples if not s.error]
    ttfts = [s.ttft for s in good]
    gaps = [g for s in good for g in s.gaps]
    rates = [s.tokens_per_s for s in good if s.tokens_per_s]
    return {
        "requests": len(samples),
        "errors": len(samples) - len(good),
        "tokens": sum(s.tokens for s in good),
        "ttft_p50_ms": percentile(ttfts, 50) * 1e3,
        "ttft_p99_ms": percentile(ttfts, 99) * 1e3,
        "itl_p50_ms": percentile(gaps, 50) * 1e3,
        "itl_p99_ms": percentile(gaps, 99) * 1e3,
        "tokens_per_s_mean": statistics.fmean(rates) if rates else 0.0,
        "first_error": next((s.error for s in samples if s.error), ""),
    }
