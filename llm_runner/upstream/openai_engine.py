"""An OpenAI-compatible engine as an upstream: vLLM, SGLang, llama.cpp's llama-server,
llama-cpp-python's server (`OLLAMA_HOST=openai+http://host:port?models=<HF id>`).

Everything goes over the runner's own HTTP/1.1 client (`http1`), as Ollama's token path does: the
same timeouts (the first token may wait for a queue or a load, later ones only for a stall), and
closing the generator closes the connection, which is how these engines learn to stop (vLLM and
SGLang abort the request when its client goes).

Liveness is what each engine offers: `/health` (vLLM: 200 when up, 500 when its engine died;
SGLang: 503 until it can generate; llama-server: 503 while loading); llama-cpp-python's server has
none and listens only once its model is loaded. Anything else counts as down: the engine cannot
serve yet, and that is what the readiness URL and fail-fast must say. The model paid for is the
served name in `/v1/models`; it cannot be pulled, and warming it is one 1-token generation (SGLang's
own `/health_generate` does just that), so a model is ready only once it has generated.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping

from pydantic import SecretStr

from llm_runner.core import fastjson
from llm_runner.core.errors import UpstreamError
from llm_runner.core.events import End, Event, Scored, ToolCallEvent
from llm_runner.core.request import GenerationRequest, Message
from llm_runner.upstream.base import ModelInfo, PullProgress, Resident, UpstreamSettings, transport_errors, unreachable
from llm_runner.upstream.http1 import HTTP1Error, HTTP1Pool, probe
from llm_runner.upstream.ollama_wire import drain, kind_of
from llm_runner.upstream.openai_wire import (
    ToolCallParts,
    chat_body,
    describe_status,
    error_message,
    finish_of,
    listed_models,
)
from llm_runner.upstream.thinking import ThinkFolder

log = logging.getLogger("llm_runner.upstream")


class OpenAIUpstream:
    """Talks to one OpenAI-compatible engine. `served` maps each runner tag to the engine's name for
    that model (the HF id unless `served_model=` says otherwise); `api_key`, its --api-key, goes in
    every request's Authorization header and nowhere else."""

    kind = "openai"
    peer = "engine"

    def __init__(
        self,
        base_url: str,
        settings: UpstreamSettings,
        *,
        slots: int = 1,
        model_ids: frozenset[str] | None = None,
        served: Mapping[str, str] | None = None,
        api_key: SecretStr | None = None,
    ) -> None:
        self.base_url = self.name = base_url
        self.settings = settings
        self.slots, self.model_ids = slots, model_ids
        self.served = dict(served or {})
        self._http = HTTP1Pool(base_url, max_idle=64, keepalive_expiry_s=30.0)
        self._headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else None
        self._version: str | None = None
        self._models: dict[str, dict] | None = None  # what /v1/models last listed
        self._uncounted_warned = False

    def serves(self, model_id: str) -> bool:
        return self.model_ids is None or model_id in self.model_ids

    def served_name(self, tag: str) -> str:
        return self.served.get(tag, tag)

    def watch(self, notify: Callable[[bool], None]) -> None:
        """An engine gives no restart signal: the lifecycle's probe notices."""

    async def start(self) -> None:
        """Nothing to start: the engine runs on its own."""

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- liveness and management -------------------------------------------------------------

    async def _get(self, path: str) -> tuple[int, bytes]:
        """One quick GET (see http1.probe); UpstreamError(unreachable) when it gets no answer."""
        try:
            return await probe(self._http, path, self.settings.connect_timeout_s, _as_is, self._headers)
        except HTTP1Error as exc:
            raise UpstreamError("unreachable", unreachable(self, exc)) from exc

    async def version(self) -> str:
        """Healthy or UpstreamError(unreachable): `/health` must answer 200 (a 503 is an engine still
        loading its model). An engine without one (404: llama-cpp-python's server) is up once it
        answers at all: it loads its model before it listens."""
        try:
            status, body = await self._get("/health")
            if status not in (200, 404):
                state = "is still loading" if status == 503 else "is unhealthy"
                message = error_message(body, status)
                raise UpstreamError("unreachable", f"engine at {self.base_url} {state} (HTTP {status}: {message})")
        except UpstreamError:
            self._models = None  # it may come back with other models: list them again
            raise
        if self._version is None:
            status, body = await self._get("/version")  # vLLM and SGLang tell theirs
            found = fastjson.loads(body).get("version") if status == 200 and body.startswith(b"{") else None
            self._version = f"openai-compatible {found or ''}".strip()
        return self._version

    async def _listed(self) -> dict[str, dict]:
        """/v1/models, remembered until the engine is next found down. Not asked on every probe:
        llama-cpp-python's server takes its model lock to answer it, which interrupts a running
        generation (its interrupt_requests)."""
        status, body = await self._get("/v1/models")
        if status != 200:
            message = error_message(body, status)
            raise UpstreamError(kind_of(status, message), f"{self.base_url}/v1/models answered {status}: {message}")
        try:
            self._models = listed_models(body)
        except ValueError as exc:
            raise UpstreamError("protocol", f"{self.base_url}/v1/models is not a model list: {exc}") from exc
        return self._models

    async def show(self, tag: str) -> ModelInfo:
        """The served model as `/v1/models` lists it. An engine serves what it was started with: a
        model it does not list is UpstreamError(no_such_model), saying what it serves and the fix."""
        name = self.served_name(tag)
        listed = await self._listed()
        model = listed.get(name)
        if model is None:
            raise UpstreamError("no_such_model", self._not_served(name, listed))
        details = {k: model[k] for k in ("id", "root", "owned_by", "max_model_len") if model.get(k) is not None}
        return ModelInfo(tag=tag, details=details)  # capabilities: /v1/models tells none

    async def pull(self, tag: str) -> AsyncIterator[PullProgress]:
        """An engine serves the model it was started with: nothing can be pulled."""
        name = self.served_name(tag)
        raise UpstreamError("no_such_model", f"an engine cannot pull: {self._not_served(name, await self._listed())}")
        yield  # an async generator, like every upstream's pull

    def _not_served(self, name: str, listed: Mapping[str, object]) -> str:
        return (
            f"the engine at {self.base_url} does not serve {name}: its /v1/models lists "
            f"{', '.join(sorted(listed)) or 'nothing'}. Start it with that model (vLLM: `vllm serve {name}` or "
            f"--served-model-name {name}; llama-server: --alias {name}), or, when it serves the model under "
            "another name, give that name with served_model= in its OLLAMA_HOST entry"
        )

    async def warm(self, tag: str, think_off: bool) -> None:
        """One 1-token generation: a model is ready once it has generated."""
        request = GenerationRequest(self.served_name(tag), [Message("user", "Hi")], max_tokens=1)
        async for _ in self.chat(tag, request, think_off=think_off):
            pass

    async def unload(self, tag: str) -> None:
        """An engine keeps its model loaded: nothing to do."""

    async def ps(self) -> list[Resident]:
        """What `/v1/models` listed when last asked (by show), as resident: an engine loads its
        model before it serves. Sizes unknown (0)."""
        listed = self._models or {}
        return [Resident(tag, 0, 0) for tag, name in self.served.items() if name in listed]

    # -- the token path --------------------------------------------------------------------------

    async def chat(self, tag: str, request: GenerationRequest, *, think_off: bool = False) -> AsyncIterator[Event]:
        """Stream one generation. Closing this generator closes the connection, which stops it."""
        settings = self.settings
        think_off = think_off or settings.think == "off"  # engines report no thinking capability
        content = fastjson.dumps(chat_body(self.served_name(tag), request, think_off))
        thinking = ThinkFolder(settings.think == "hide")
        calls = ToolCallParts()
        finish: str | None = None
        usage: dict | None = None
        counted = 0  # content chunks, one per token, for an engine that sends no usage
        wait = settings.first_token_timeout_s  # until the first token (queue, prefill), then a stall
        async with (
            transport_errors(self, tag),
            self._http.request(
                "POST",
                "/v1/chat/completions",
                content,
                headers=self._headers,
                connect_timeout_s=settings.connect_timeout_s,
                first_byte_timeout_s=settings.first_token_timeout_s,
            ) as response,
        ):
            if response.status != 200:
                status, message = response.status, error_message(await response.read(wait), response.status)
                name = self.served_name(tag)
                raise UpstreamError(kind_of(status, message), describe_status(self.base_url, name, status, message))
            pending = b""
            while True:
                data = await response.next_chunk(wait)
                if data:
                    lines = (pending + data).split(b"\n")
                    pending = lines.pop()
                elif pending.strip():
                    lines, pending = [pending], b""
                elif finish is not None:  # ended without [DONE]: the finish chunk came
                    lines = [b"data: [DONE]"]
                else:
                    raise UpstreamError("truncated", f"the engine closed the {tag} stream before it was done")
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank lines, `: ping` comments, event: and id: fields
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        if finish is None:
                            raise UpstreamError("truncated", f"the engine ended {tag}'s stream with no finish")
                        for index, call in enumerate(calls.calls()):
                            yield ToolCallEvent(index, call)
                        await drain(response)
                        yield self._end(finish, usage, counted)
                        return
                    chunk = fastjson.loads(payload)
                    if "error" in chunk:
                        error = chunk["error"]
                        message = str(error.get("message", error) if isinstance(error, dict) else error)
                        raise UpstreamError(kind_of(500, message), f"the engine failed mid-stream: {message}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        thought = delta.get("reasoning_content") or delta.get("reasoning")
                        text = delta.get("content") or ""
                        finish = choice.get("finish_reason") or finish
                        if delta.get("tool_calls"):
                            calls.add(delta["tool_calls"])
                        if thought or thinking.open:
                            text = thinking.fold(thought, text, finish is not None)
                        if text or thought:
                            counted += 1
                            wait = settings.inter_token_timeout_s
                        logprobs = (choice.get("logprobs") or {}).get("content")
                        if logprobs:
                            yield Scored(text, logprobs)
                        elif text:
                            yield text

    def _end(self, finish: str, usage: dict | None, counted: int) -> End:
        """The exact usage when the engine sent it; else the chunks counted (one per token in every
        engine named above) and no prompt count, with one warning per upstream."""
        if usage and usage.get("completion_tokens") is not None:
            return End(finish_of(finish), int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"]))
        if not self._uncounted_warned:
            self._uncounted_warned = True
            log.warning(
                "%s sends no usage (stream_options.include_usage): completion tokens are counted, one per "
                "chunk, and prompt tokens are reported as 0",
                self.base_url,
            )
        return End(finish_of(finish), 0, counted)


def _as_is(status: int, body: bytes) -> tuple[int, bytes]:
    return status, body
