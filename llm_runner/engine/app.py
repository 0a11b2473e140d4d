"""An Ollama-API server over llama.cpp: `/api/chat`, `/api/generate`, `/api/tags`, `/api/show`,
`/api/ps`, `/api/version`, `/api/pull`, with Ollama's request, response and error shapes.

It exists so that llm-runner gives real tokens with no Ollama and no GPU, over exactly the same
client path as a real Ollama. It has no model hub: pulling a model it does not hold fails the way
Ollama fails for an unknown model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from llm_runner import __version__
from llm_runner.engine.llama import LoadedModel, Result, Sampling, stream_tokens
from llm_runner.engine.registry import EngineModel, canonical_tag, discover

NDJSON = "application/x-ndjson"
log = logging.getLogger("llm_runner.engine")
DEFAULT_NUM_CTX = 4096


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str = ""


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[_Message] = Field(default_factory=list)
    stream: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    keep_alive: int | float | str | None = None
    think: bool | str | None = None


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str = ""
    system: str | None = None
    stream: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    keep_alive: int | float | str | None = None


class NameBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    name: str | None = None  # older clients send `name`
    stream: bool = True

    @property
    def tag(self) -> str:
        return self.model or self.name or ""


class OllamaError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Engine:
    """Models known and loaded; loading is lazy and reloads when num_ctx changes (like Ollama)."""

    def __init__(self, models: dict[str, EngineModel], n_threads: int | None) -> None:
        self.models = models
        self.n_threads = n_threads
        self.loaded: dict[str, LoadedModel] = {}
        self._load_lock = asyncio.Lock()

    def find(self, name: str) -> EngineModel:
        model = self.models.get(name) or self.models.get(canonical_tag(name))
        if model is None:
            raise OllamaError(404, f"model '{name}' not found")
        return model

    async def load(self, name: str, num_ctx: int | None) -> LoadedModel:
        model = self.find(name)
        wanted = int(num_ctx or DEFAULT_NUM_CTX)
        current = self.loaded.get(model.tag)
        if current is not None and current.n_ctx == wanted:
            return current
        async with self._load_lock:
            current = self.loaded.get(model.tag)
            if current is not None and current.n_ctx == wanted:
                return current
            if current is not None:
                async with current.lock:  # let the running generation finish before reloading
                    self.loaded.pop(model.tag, None)
            try:
                loaded = await asyncio.to_thread(LoadedModel, model, wanted, self.n_threads)
            except Exception as exc:
                raise OllamaError(500, f"llama runner process has terminated: {exc}") from exc
            self.loaded[model.tag] = loaded
            return loaded

    async def resident(self, name: str) -> LoadedModel:
        """The model as it is loaded now (any context size), else loaded at the default one."""
        current = self.loaded.get(self.find(name).tag)
        return current if current is not None else await self.load(name, None)

    def details(self, loaded: LoadedModel | None) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": loaded.family if loaded else "",
            "families": [loaded.family] if loaded else None,
            "parameter_size": loaded.parameter_size if loaded else "",
            "quantization_level": loaded.quantization if loaded else "",
        }

    def listing(self, model: EngineModel, loaded: LoadedModel | None) -> dict[str, Any]:
        return {
            "name": model.tag,
            "model": model.tag,
            "modified_at": model.modified_at,
            "size": model.size,
            "digest": model.digest,
            "details": self.details(loaded),
        }


def create_engine_app(models_dir: Path | None = None, n_threads: int | None = None) -> FastAPI:
    engine = Engine(discover(models_dir), n_threads)
    app = FastAPI(title="llm-runner engine (Ollama API)", version=__version__)
    app.state.engine = engine

    @app.exception_handler(OllamaError)
    async def _ollama_error(_: Request, exc: OllamaError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"invalid request: {where} {first.get('msg', '')}".strip()}, 400)

    @app.get("/")
    @app.head("/")
    async def root() -> Response:
        return Response("Ollama is running", media_type="text/plain")

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": f"0.0.0-llm-runner-engine-{__version__}"}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {"models": [engine.listing(m, engine.loaded.get(m.tag)) for m in engine.models.values()]}

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        far = (datetime.now(UTC) + timedelta(days=3650)).isoformat().replace("+00:00", "Z")
        return {
            "models": [
                {
                    **engine.listing(loaded.model, loaded),
                    "expires_at": far,
                    "size_vram": 0,
                    "context_length": loaded.n_ctx,
                }
                for loaded in engine.loaded.values()
            ]
        }

    @app.post("/api/show")
    async def show(body: NameBody) -> dict[str, Any]:
        model = engine.find(body.tag)
        loaded = await engine.resident(model.tag)
        meta = loaded.metadata
        arch = loaded.family
        info: dict[str, Any] = {
            "general.architecture": arch,
            "general.parameter_count": loaded.llm._model.n_params(),
        }
        for key in ("context_length", "embedding_length", "block_count", "attention.head_count_kv"):
            if f"{arch}.{key}" in meta:
                info[f"{arch}.{key}"] = int(float(meta[f"{arch}.{key}"]))
        return {
            "modelfile": f"FROM {model.path}\n",
            "parameters": "",
            "template": loaded.template,
            "details": engine.details(loaded),
            "model_info": info,
            "capabilities": ["completion"],
            "modified_at": model.modified_at,
        }

    @app.post("/api/pull")
    async def pull(body: NameBody) -> Response:
        tag = body.tag
        known = engine.models.get(tag) or engine.models.get(canonical_tag(tag))
        if not body.stream:
            if known is None:
                raise OllamaError(500, "pull model manifest: file does not exist")
            return JSONResponse({"status": "success"})

        async def progress() -> AsyncIterator[bytes]:
            yield _line({"status": "pulling manifest"})
            if known is None:
                yield _line({"error": "pull model manifest: file does not exist"})
                return
            yield _line(
                {
                    "status": f"pulling {known.digest[:12]}",
                    "digest": f"sha256:{known.digest}",
                    "total": known.size,
                    "completed": known.size,
                }
            )
            for status in ("verifying sha256 digest", "writing manifest", "success"):
                yield _line({"status": status})

        return StreamingResponse(progress(), media_type=NDJSON)

    @app.post("/api/chat")
    async def chat(body: ChatBody) -> Response:
        if body.think:
            raise OllamaError(400, f'"{body.model}" does not support thinking')
        loaded = await engine.load(body.model, body.options.get("num_ctx"))
        if not body.messages:
            return _single_or_stream(body.stream, _load_reply(body.model, chat=True))
        messages = [m.model_dump() for m in body.messages]
        prompt = await asyncio.to_thread(loaded.prompt_tokens, messages)
        return await _generation(body.model, loaded, prompt, _sampling(body.options), body.stream, chat=True)

    @app.post("/api/generate")
    async def generate(body: GenerateBody) -> Response:
        loaded = await engine.load(body.model, body.options.get("num_ctx"))
        if not body.prompt:
            return _single_or_stream(body.stream, _load_reply(body.model, chat=False))
        messages = ([{"role": "system", "content": body.system}] if body.system else []) + [
            {"role": "user", "content": body.prompt}
        ]
        prompt = await asyncio.to_thread(loaded.prompt_tokens, messages)
        return await _generation(body.model, loaded, prompt, _sampling(body.options), body.stream, chat=False)

    return app


def _sampling(options: dict[str, Any]) -> Sampling:
    try:
        return Sampling.from_options(options)
    except (TypeError, ValueError) as exc:
        # Ollama itself answers 500 for badly typed options.
        raise OllamaError(500, f"invalid options: {exc}") from exc


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _piece(model: str, text: str, *, chat: bool) -> dict[str, Any]:
    if chat:
        return {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": text},
            "done": False,
        }
    return {"model": model, "created_at": _now(), "response": text, "done": False}


def _final(model: str, result: Result, total_ns: int, *, chat: bool, text: str = "") -> dict[str, Any]:
    final = _piece(model, text, chat=chat)
    final.update(
        done=True,
        done_reason=result.reason,
        total_duration=total_ns,
        load_duration=result.load_ns,
        prompt_eval_count=result.prompt_tokens,
        prompt_eval_duration=result.prompt_ns,
        eval_count=result.eval_count,
        eval_duration=result.eval_ns,
    )
    return final


def _load_reply(model: str, *, chat: bool) -> dict[str, Any]:
    reply = _piece(model, "", chat=chat)
    reply.update(done=True, done_reason="load")
    return reply


def _single_or_stream(stream: bool, obj: dict[str, Any]) -> Response:
    if stream:
        return Response(_line(obj), media_type=NDJSON)
    return JSONResponse(obj)


async def _generation(
    model: str, loaded: LoadedModel, prompt: list[int], sampling: Sampling, stream: bool, *, chat: bool
) -> Response:
    started = time.perf_counter_ns()
    box: list[Result] = []

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for text in stream_tokens(loaded, prompt, sampling, box):
                sent += 1
                yield _line(_piece(model, text, chat=chat))
            yield _line(_final(model, box[0], time.perf_counter_ns() - started, chat=chat))
        except ValueError as exc:  # prompt longer than the context
            yield _line({"error": str(exc)})
        finally:
            if box:
                log.info("%s: %s after %d tokens", model, box[0].reason, box[0].eval_count)
            else:
                log.info("%s: cancelled after %d tokens (client gone)", model, sent)

    if stream:
        return StreamingResponse(body(), media_type=NDJSON)
    parts = []
    try:
        async for text in stream_tokens(loaded, prompt, sampling, box):
            parts.append(text)
    except ValueError as exc:
        raise OllamaError(400, str(exc)) from exc
    return JSONResponse(_final(model, box[0], time.perf_counter_ns() - started, chat=chat, text="".join(parts)))
