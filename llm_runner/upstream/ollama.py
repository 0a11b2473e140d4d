"""The translator: the only module that knows both the Livepeer contract and Ollama's wire format.

Management calls (show, pull, ps, list, warm-up) go through the official `ollama.AsyncClient`.
The token path reads Ollama's `/api/chat` NDJSON itself, over httpcore (the transport under
httpx), because the official client cannot meet three contract rules there: it does not notice a
stream that ends without a `done:true` line (we must then send `finish_reason: "error"`), it has
one timeout for everything (a cold model load needs minutes before the first byte, a stalled
stream must fail in two), and its per-chunk pydantic validation plus httpx's per-request layers
cost more than the rest of the relay. Closing the upstream response is also the only way to make
Ollama stop generating, and here it is explicit.

Generations yield backend-neutral events: `str` deltas (one per Ollama chunk, i.e. per token,
possibly empty) and one final `Finish` with Ollama's exact token counts. A generation either ends
with that `Finish` or raises `UpstreamError` (a stream cut short included): consumers rely on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx
import ollama

from llm_runner.core.errors import UpstreamError
from llm_runner.livepeer.contract import LLMRequest
from llm_runner.settings import Settings

THINK_OPEN, THINK_CLOSE = "<think>", "</think>\n\n"


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ModelInfo:
    tag: str
    capabilities: tuple[str, ...]
    quantization: str


class OllamaBackend:
    """Talks to one Ollama server. Create once per app; close with `aclose()`."""

    def __init__(self, base_url: str, settings: Settings) -> None:
        self.base_url = base_url
        self.settings = settings
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.first_token_timeout_s,
            write=30.0,
            pool=settings.queue_timeout_s,
        )
        self.client = ollama.AsyncClient(host=base_url, timeout=timeout)
        # The token path uses httpcore (httpx's transport) directly: same connections and errors,
        # without httpx's per-request layers, which cost a third of the bridge's CPU per request.
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=None, max_keepalive_connections=64, keepalive_expiry=30.0
        )
        self._host_header = (b"Host", urlsplit(base_url).netloc.encode())
        self._chat_headers = [self._host_header, (b"Content-Type", b"application/json")]
        self._timeouts = {"timeout": timeout.as_dict()}
        self._options_base = {"num_ctx": settings.num_ctx}

    async def aclose(self) -> None:
        await self._pool.aclose()
        await self.client.close()

    # -- liveness and management -------------------------------------------------------------

    async def version(self) -> str:
        """Ollama's version; raises UpstreamError(unreachable) when it does not answer."""
        quick = self.settings.connect_timeout_s
        try:
            response = await self._pool.request(
                "GET",
                f"{self.base_url}/api/version",
                headers=[self._host_header],
                extensions={"timeout": {"connect": quick, "read": quick, "write": quick, "pool": quick}},
            )
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            return str(json.loads(response.content).get("version", "unknown"))
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, ValueError) as exc:
            raise UpstreamError("unreachable", self._unreachable(exc)) from exc

    async def show(self, tag: str) -> ModelInfo | None:
        """What Ollama knows of `tag`, or None when it is not pulled."""
        try:
            shown = await self.client.show(tag)
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                return None
            raise UpstreamError(_kind_of(exc.status_code, exc.error), f"Ollama show {tag}: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise UpstreamError("unreachable", self._unreachable(exc)) from exc
        details = shown.details
        return ModelInfo(
            tag=tag,
            capabilities=tuple(shown.capabilities or ()),
            quantization=(details.quantization_level if details else None) or "",
        )

    async def pull(self, tag: str) -> AsyncIterator[ollama.ProgressResponse]:
        """Ollama's pull progress; an in-stream error raises UpstreamError(pull_failed)."""
        try:
            async for progress in await self.client.pull(tag, stream=True):
                yield progress
        except ollama.ResponseError as exc:
            raise UpstreamError("pull_failed", f"pulling {tag} failed: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise UpstreamError("unreachable", self._unreachable(exc)) from exc

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
            raise UpstreamError(_kind_of(exc.status_code, exc.error), f"loading {tag}: {exc.error}") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise UpstreamError("unreachable", self._unreachable(exc)) from exc

    # -- the token path --------------------------------------------------------------------------

    def chat_body(self, tag: str, request: LLMRequest, think_off: bool) -> dict:
        """The exact /api/chat body for a Livepeer request."""
        options: dict[str, int | float] = {
            **self._options_base,
            # never more than the context: past it Ollama shifts the context and can run away
            "num_predict": min(request.max_tokens, self.settings.num_ctx),
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.top_k > 0:
            options["top_k"] = request.top_k
        body: dict = {
            "model": tag,
            "messages": [m.model_dump() for m in request.messages],
            "stream": True,
            "options": options,
            "keep_alive": self.settings.ollama_keep_alive,
        }
        if think_off:
            body["think"] = False
        return body

    async def generate(self, tag: str, request: LLMRequest, *, think_off: bool = False) -> AsyncIterator[str | Finish]:
        """Stream one chat generation. Closing this generator closes the upstream connection,
        which is what makes Ollama stop."""
        content = json.dumps(self.chat_body(tag, request, think_off)).encode()
        headers = [*self._chat_headers, (b"Content-Length", str(len(content)).encode())]
        hide_thinking = self.settings.think == "hide"
        inter_token = self.settings.inter_token_timeout_s
        # httpcore reads the read timeout when the body starts: the first wait (headers, i.e. a
        # model load) gets first_token_timeout_s, every later read inter_token_timeout_s.
        timeouts = {"timeout": dict(self._timeouts["timeout"])}
        thinking = False
        try:
            async with self._pool.stream(
                "POST", f"{self.base_url}/api/chat", headers=headers, content=content, extensions=timeouts
            ) as response:
                if response.status != 200:
                    message = _error_text(await response.aread(), response.status)
                    raise UpstreamError(
                        _kind_of(response.status, message), _describe_status(tag, response.status, message)
                    )
                timeouts["timeout"]["read"] = inter_token
                lines = _ndjson_lines(response.aiter_stream())
                while True:
                    try:
                        line = await anext(lines)
                    except StopAsyncIteration:
                        raise UpstreamError("truncated", f"Ollama closed the {tag} stream before it was done") from None
                    chunk = json.loads(line)
                    if "error" in chunk:
                        message = str(chunk["error"])
                        raise UpstreamError(_kind_of(500, message), f"Ollama failed mid-stream: {message}")
                    message_part = chunk.get("message") or {}
                    thought = message_part.get("thinking")
                    text = message_part.get("content") or ""
                    if thought and not hide_thinking:
                        text = thought if thinking else THINK_OPEN + thought
                        thinking = True
                    elif thought:
                        text = ""
                    elif thinking and (text or chunk.get("done")):
                        text = THINK_CLOSE + text
                        thinking = False
                    if chunk.get("done"):
                        if text:
                            yield text
                        await _drain(lines)  # a fully read response keeps its connection for reuse
                        yield Finish(
                            reason="length" if chunk.get("done_reason") == "length" else "stop",
                            prompt_tokens=int(chunk.get("prompt_eval_count") or 0),
                            completion_tokens=int(chunk.get("eval_count") or 0),
                        )
                        return
                    yield text
        except httpcore.TimeoutException as exc:
            waited = timeouts["timeout"]["read"]
            raise UpstreamError("timeout", f"Ollama sent nothing for {waited:g}s for {tag} ({exc!r})") from exc
        except httpcore.ConnectError as exc:
            raise UpstreamError("unreachable", self._unreachable(exc)) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise UpstreamError("truncated", f"connection to Ollama broke during {tag}: {exc!r}") from exc
        except json.JSONDecodeError as exc:
            raise UpstreamError("protocol", f"Ollama sent a line that is not JSON: {exc}") from exc

    def _unreachable(self, exc: BaseException) -> str:
        return f"Ollama at {self.base_url} is unreachable ({type(exc).__name__}: {exc})"


async def _ndjson_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Split a byte stream into non-empty lines (Ollama writes one JSON object per line)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


async def _drain(lines: AsyncIterator[bytes], limit_s: float = 1.0) -> None:
    """Read the (empty) rest of a finished stream, so the connection goes back to the pool."""
    try:
        async with asyncio.timeout(limit_s):
            async for _ in lines:
                pass
    except (TimeoutError, httpcore.NetworkError, httpcore.ProtocolError):
        pass  # the connection is simply closed instead


def _error_text(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body).get("error") or body.decode(errors="replace"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace") or f"HTTP {status}"


def _kind_of(status: int, message: str) -> str:
    lowered = message.lower()
    if "out of memory" in lowered or "cudamalloc" in lowered or "unable to allocate" in lowered:
        return "oom"
    if status == 404:
        return "not_found"
    if status >= 500 or status == -1:
        return "upstream_5xx"
    return "upstream_4xx"


def _describe_status(tag: str, status: int, message: str) -> str:
    if status == 404:
        return f"model {tag} is not in Ollama ({message}); it is being pulled, or run `llm-runner pull`"
    if _kind_of(status, message) == "oom":
        return f"Ollama ran out of memory for {tag}: {message} (try a smaller model or LLM_RUNNER_NUM_CTX)"
    return f"Ollama answered {status} for {tag}: {message}"
