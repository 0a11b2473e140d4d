"""One Ollama server as an upstream: the only module that knows Ollama's wire format.

Management calls (show, pull, ps, list, warm-up) go through the official `ollama.AsyncClient`.
The token path reads Ollama's `/api/chat` NDJSON itself, over a small HTTP/1.1 client of ours
(`http1`), because the official client cannot meet three contract rules there: it does not notice a
stream that ends without a `done:true` line (we must then send `finish_reason: "error"`), it has
one timeout for everything (a cold model load needs minutes before the first byte, a stalled
stream must fail in two), and its per-chunk pydantic validation plus httpx's and httpcore's layers
cost more than the rest of the relay. Closing the upstream response is also the only way to make
Ollama stop generating, and here it is explicit.

Generations yield the core's events: `str` deltas (one per Ollama chunk, i.e. per token, possibly
empty), tool calls, and one final `End` with Ollama's exact token counts. A generation either ends
with that `End` or raises `UpstreamError` (a stream cut short included): the core relies on it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from llm_runner.core import fastjson
from llm_runner.core.errors import UpstreamError
from llm_runner.core.events import LENGTH, STOP, End, Event, Scored, ToolCallEvent
from llm_runner.core.request import GenerationRequest
from llm_runner.upstream.base import (
    ModelInfo,
    PullProgress,
    Resident,
    UpstreamSettings,
    function_tools,
    sampling,
    transport_errors,
    unreachable,
)
from llm_runner.upstream.http1 import HTTP1Error, HTTP1Pool, probe
from llm_runner.upstream.ollama_import import ollama
from llm_runner.upstream.ollama_wire import (
    describe_status,
    drain,
    error_text,
    kind_of,
    ollama_message,
    short_tag,
    tool_call,
)
from llm_runner.upstream.thinking import ThinkFolder


class OllamaUpstream:
    """Talks to one Ollama server. Create once per app; close with `aclose()`."""

    kind = "ollama"
    peer = "Ollama"

    def __init__(
        self, base_url: str, settings: UpstreamSettings, *, slots: int = 1, model_ids: frozenset[str] | None = None
    ) -> None:
        self.base_url = self.name = base_url
        self.settings = settings
        self.slots, self.model_ids = slots, model_ids
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.first_token_timeout_s,
            write=30.0,
            pool=settings.queue_timeout_s,
        )
        self.client = ollama.AsyncClient(host=base_url, timeout=timeout)
        # The token path (chat and the version probe) uses our own HTTP/1.1 client: httpcore's
        # per-chunk layers cost about 40% of the runner's CPU per request.
        self._http = HTTP1Pool(base_url, max_idle=64, keepalive_expiry_s=30.0)
        self._options_base = {"num_ctx": settings.num_ctx}

    def serves(self, model_id: str) -> bool:
        return self.model_ids is None or model_id in self.model_ids

    def watch(self, notify: Callable[[bool], None]) -> None:
        """Ollama gives no restart signal: the lifecycle's probe notices."""

    async def start(self) -> None:
        """Nothing to start: the server runs on its own."""

    async def aclose(self) -> None:
        await self._http.aclose()
        await self.client.close()

    # -- liveness and management -------------------------------------------------------------

    async def version(self) -> str:
        """Ollama's version; raises UpstreamError(unreachable) when it does not answer twice.

        connect_timeout_s bounds every step. A pooled connection the server closed just as we
        reuse it is retried by the pool itself; any other failure but a refused connection is
        tried once more (the failed connection is closed, never reused)."""
        try:
            return await probe(self._http, "/api/version", self.settings.connect_timeout_s, _version_of)
        except (HTTP1Error, ValueError) as exc:
            raise UpstreamError("unreachable", unreachable(self, exc)) from exc

    async def show(self, tag: str) -> ModelInfo | None:
        """What Ollama knows of `tag`, or None when it is not pulled."""
        try:
            shown = await self.client.show(tag)
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                return None
            raise UpstreamError(kind_of(exc.status_code, exc.error), f"Ollama show {tag}: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise UpstreamError("unreachable", unreachable(self, exc)) from exc
        details = shown.details.model_dump() if shown.details else {}
        return ModelInfo(
            tag=tag,
            capabilities=tuple(shown.capabilities or ()),
            quantization=details.get("quantization_level") or "",
            details=details,
            model_info=dict(shown.modelinfo or {}),
        )

    async def pull(self, tag: str) -> AsyncIterator[PullProgress]:
        """Ollama's pull progress; an in-stream error raises UpstreamError(pull_failed)."""
        try:
            async for progress in await self.client.pull(tag, stream=True):
                yield PullProgress(
                    progress.status or "", progress.digest or "", progress.total or 0, progress.completed or 0
                )
        except ollama.ResponseError as exc:
            raise UpstreamError("pull_failed", f"pulling {tag} failed: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise UpstreamError("unreachable", unreachable(self, exc)) from exc

    async def warm(self, tag: str, think_off: bool) -> None:
        """Load the model with the same runner options every request sends (no reload later)."""
        try:
            await self.client.chat(
                model=tag,
                messages=[],
                keep_alive=self.settings.ollama_keep_alive,
                options=dict(self._options_base),
                think=False if think_off else None,
            )
        except ollama.ResponseError as exc:
            raise UpstreamError(kind_of(exc.status_code, exc.error), f"loading {tag}: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise UpstreamError("unreachable", unreachable(self, exc)) from exc

    async def unload(self, tag: str) -> None:
        try:
            await self.client.chat(model=tag, messages=[], keep_alive=0)
        except ollama.ResponseError as exc:
            raise UpstreamError(kind_of(exc.status_code, exc.error), f"unloading {tag}: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise UpstreamError("unreachable", unreachable(self, exc)) from exc

    async def ps(self) -> list[Resident]:
        try:
            loaded = await self.client.ps()
        except ollama.ResponseError as exc:
            raise UpstreamError(kind_of(exc.status_code, exc.error), f"Ollama ps: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise UpstreamError("unreachable", unreachable(self, exc)) from exc
        return [
            Resident(
                short_tag(m.model or m.name or ""),
                int(m.size or 0),
                int(m.size_vram or 0),
                m.expires_at.isoformat() if m.expires_at else "",
            )
            for m in loaded.models
        ]

    # -- the token path --------------------------------------------------------------------------

    def chat_body(self, tag: str, request: GenerationRequest, think_off: bool) -> dict:
        """The exact /api/chat body for a request. num_ctx and num_predict are always set: the same
        num_ctx on every call avoids reloads, and num_predict never exceeds it (past the context
        Ollama shifts it and can run away)."""
        num_ctx = self.settings.num_ctx
        options: dict[str, Any] = {
            **self._options_base,
            "num_predict": min(request.max_tokens or num_ctx, num_ctx),
            **sampling(request),
        }
        body: dict[str, Any] = {
            "model": tag,
            "messages": [ollama_message(m) for m in request.messages],
            "stream": True,
            "options": options,
            "keep_alive": self.settings.ollama_keep_alive,
        }
        if request.output_format is not None:
            body["format"] = request.output_format
        if request.tools:
            body["tools"] = function_tools(request.tools)
        if request.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = request.top_logprobs
        if think_off:
            body["think"] = False
        return body

    async def chat(self, tag: str, request: GenerationRequest, *, think_off: bool = False) -> AsyncIterator[Event]:
        """Stream one chat generation. Closing this generator closes the upstream connection,
        which is what makes Ollama stop."""
        content = fastjson.dumps(self.chat_body(tag, request, think_off))
        settings = self.settings
        thinking = ThinkFolder(settings.think == "hide")
        inter_token = settings.inter_token_timeout_s
        tool_calls = 0
        # The wait for the headers is the model load (first_token_timeout_s); every later wait for
        # bytes gets inter_token_timeout_s.
        async with (
            transport_errors(self, tag),
            self._http.request(
                "POST",
                "/api/chat",
                content,
                connect_timeout_s=settings.connect_timeout_s,
                first_byte_timeout_s=settings.first_token_timeout_s,
            ) as response,
        ):
            if response.status != 200:
                message = error_text(await response.read(settings.first_token_timeout_s), response.status)
                raise UpstreamError(kind_of(response.status, message), describe_status(tag, response.status, message))
            pending = b""  # a line cut between two reads (Ollama writes one line per chunk)
            while True:
                data = await response.next_chunk(inter_token)
                if data:
                    if pending:
                        data = pending + data
                    lines = data.split(b"\n")
                    pending = lines.pop()
                elif pending.strip():  # the body ended on a line without its newline
                    lines, pending = [pending], b""
                else:
                    raise UpstreamError("truncated", f"Ollama closed the {tag} stream before it was done")
                for line in lines:
                    if not line or line.isspace():
                        continue
                    chunk = fastjson.loads(line)
                    if "error" in chunk:
                        message = str(chunk["error"])
                        raise UpstreamError(kind_of(500, message), f"Ollama failed mid-stream: {message}")
                    message_part = chunk.get("message") or {}
                    thought = message_part.get("thinking")
                    text = message_part.get("content") or ""
                    done = chunk.get("done")
                    if thought or thinking.open:
                        text = thinking.fold(thought, text, bool(done))
                    calls = message_part.get("tool_calls")
                    if calls:
                        for call in calls:
                            yield ToolCallEvent(tool_calls, tool_call(call))
                            tool_calls += 1
                    if done:
                        if text:
                            yield text
                        await drain(response)  # a fully read response keeps its connection for reuse
                        yield End(
                            LENGTH if chunk.get("done_reason") == "length" else STOP,
                            int(chunk.get("prompt_eval_count") or 0),
                            int(chunk.get("eval_count") or 0),
                        )
                        return
                    logprobs = chunk.get("logprobs")
                    yield Scored(text, logprobs) if logprobs else text


def _version_of(status: int, body: bytes) -> str:
    if status != 200:
        raise ValueError(f"HTTP {status}")
    return str(json.loads(body).get("version", "unknown"))
