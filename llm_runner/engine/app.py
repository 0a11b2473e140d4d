"""An Ollama-API server over llama.cpp: `/api/chat`, `/api/generate`, `/api/tags`, `/api/show`,
`/api/ps`, `/api/version`, `/api/pull`, with Ollama's request, response and error shapes.

It exists so that llm-runner gives real tokens with no Ollama and no GPU, over exactly the same
client path as a real Ollama. It has no model hub: pulling a model it does not hold fails the way
Ollama fails for an unknown model.

What it honours and refuses, and why, is listed in engine/options.py. Beyond options, it answers
400 as Ollama does for a model without the capability: `tools` ("<name> does not support tools"),
`suffix` ("... does not support insert"), `think` ('"<model>" does not support thinking'), images
("this model is missing data required for image input"); and 400 for what only Ollama can do:
a Go `template` override and the deprecated `context`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from llm_runner import __version__
from llm_runner.engine import llama_log
from llm_runner.engine import options as opts
from llm_runner.engine.llama import LoadedModel, UnreadableModel, train_context
from llm_runner.engine.options import LoadOptions, OllamaError
from llm_runner.engine.registry import EngineModel, canonical_tag, discover
from llm_runner.engine.wire import (
    NDJSON,
    ChatBody,
    GenerateBody,
    NameBody,
    generation,
    line,
    load_reply,
    parse_body,
    single_or_stream,
)

log = logging.getLogger("llm_runner.engine")
NO_IMAGES = "this model is missing data required for image input"


def full_name(tag: str) -> str:
    """How Ollama names a model in capability errors: registry.ollama.ai/library/smollm2:135m."""
    parts = canonical_tag(tag).split("/")
    return "/".join(["registry.ollama.ai", "library"][: 3 - len(parts)] + parts)


class Engine:
    """Models known and loaded; loading is lazy, and different load options reload (like Ollama)."""

    def __init__(self, models: dict[str, EngineModel], n_threads: int | None) -> None:
        self.models = models
        self.n_threads = n_threads
        self.loaded: dict[str, LoadedModel] = {}
        self.train_ctx: dict[str, int | None] = {}
        self._load_lock = asyncio.Lock()

    def find(self, name: str) -> EngineModel:
        model = self.models.get(name) or self.models.get(canonical_tag(name))
        if model is None:
            raise OllamaError(404, f"model '{name}' not found")
        return model

    async def load(self, name: str, wanted: LoadOptions) -> LoadedModel:
        model = self.find(name)
        if model.tag not in self.train_ctx:
            try:
                self.train_ctx[model.tag] = await asyncio.to_thread(train_context, str(model.path))
            except UnreadableModel as exc:
                raise OllamaError(500, f"llama runner process has terminated: {exc}") from exc
        trained = self.train_ctx[model.tag]
        if trained and wanted.n_ctx > trained:  # as Ollama: never more context than the model has
            log.warning("%s: num_ctx %d is more than the model's %d; using %d", name, wanted.n_ctx, trained, trained)
            wanted = replace(wanted, n_ctx=trained)
        current = self.loaded.get(model.tag)
        if current is not None and current.options == wanted:
            return current
        async with self._load_lock:
            current = self.loaded.get(model.tag)
            if current is not None and current.options == wanted:
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
        """The model as it is loaded now (any options), else loaded with the default ones."""
        current = self.loaded.get(self.find(name).tag)
        return current if current is not None else await self.load(name, LoadOptions())

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

    async def answer(self, body: ChatBody | GenerateBody, *, chat: bool) -> Response:
        """Ollama's checks in Ollama's order, then the generation (or the load reply)."""
        if not 0 <= body.top_logprobs <= 20:
            raise OllamaError(400, "top_logprobs must be between 0 and 20")
        model = self.find(body.model)
        if body.think:
            raise OllamaError(400, f'"{body.model}" does not support thinking')
        if isinstance(body, ChatBody) and body.tools:
            raise OllamaError(400, f"{full_name(model.tag)} does not support tools")
        if isinstance(body, GenerateBody):
            if body.suffix:
                raise OllamaError(400, f"{full_name(model.tag)} does not support insert")
            if body.template:
                raise OllamaError(400, "template is not supported by this engine: the GGUF's own chat template is used")
            if body.context:
                raise OllamaError(400, "context is not supported by this engine: send the conversation to /api/chat")
        typed = opts.check_options(body.options or {})
        sampling = opts.sampling(typed, fmt=body.format, logprobs=body.logprobs, top_logprobs=body.top_logprobs)
        loaded = await self.load(model.tag, opts.load_options(typed))
        if isinstance(body, ChatBody):
            if not body.messages:
                return single_or_stream(body.stream, load_reply(body.model, chat=True))
            if any(m.images for m in body.messages):
                raise OllamaError(400, NO_IMAGES)
            messages = [{"role": m.role, "content": m.content} for m in body.messages]
        else:
            if not body.prompt:
                return single_or_stream(body.stream, load_reply(body.model, chat=False))
            if body.images:
                raise OllamaError(400, NO_IMAGES)
            system = [{"role": "system", "content": body.system}] if body.system else []
            messages = [*system, {"role": "user", "content": body.prompt}]
        if sampling.grammar:
            try:
                loaded.check_grammar(sampling.grammar)
            except ValueError as exc:
                raise OllamaError(400, f"invalid JSON schema in format: {exc}") from exc
        if isinstance(body, GenerateBody) and body.raw:
            prompt = loaded.llm.tokenize(body.prompt.encode(), add_bos=True, special=True)
        else:
            prompt = await asyncio.to_thread(loaded.prompt_tokens, messages)
        return await generation(body.model, loaded, prompt, sampling, body.stream, chat=chat)


def create_engine_app(models_dir: Path | None = None, n_threads: int | None = None) -> FastAPI:
    llama_log.install()
    engine = Engine(discover(models_dir), n_threads)
    app = FastAPI(title="llm-runner engine (Ollama API)", version=__version__)
    app.state.engine = engine

    @app.exception_handler(OllamaError)
    async def _ollama_error(_: Request, exc: OllamaError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

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
    async def show(request: Request) -> dict[str, Any]:
        model = engine.find((await parse_body(request, NameBody)).tag)
        loaded = await engine.resident(model.tag)
        return {
            "modelfile": f"FROM {model.path}\n",
            "parameters": "",
            "template": loaded.template,
            "details": engine.details(loaded),
            "model_info": loaded.model_info(),
            "capabilities": ["completion"],
            "modified_at": model.modified_at,
        }

    @app.post("/api/pull")
    async def pull(request: Request) -> Response:
        body = await parse_body(request, NameBody)
        known = engine.models.get(body.tag) or engine.models.get(canonical_tag(body.tag))
        if not body.stream:
            if known is None:
                raise OllamaError(500, "pull model manifest: file does not exist")
            return JSONResponse({"status": "success"})

        async def progress() -> AsyncIterator[bytes]:
            yield line({"status": "pulling manifest"})
            if known is None:
                yield line({"error": "pull model manifest: file does not exist"})
                return
            yield line(
                {
                    "status": f"pulling {known.digest[:12]}",
                    "digest": f"sha256:{known.digest}",
                    "total": known.size,
                    "completed": known.size,
                }
            )
            for status in ("verifying sha256 digest", "writing manifest", "success"):
                yield line({"status": status})

        return StreamingResponse(progress(), media_type=NDJSON)

    @app.post("/api/chat")
    async def chat(request: Request) -> Response:
        return await engine.answer(await parse_body(request, ChatBody), chat=True)

    @app.post("/api/generate")
    async def generate(request: Request) -> Response:
        return await engine.answer(await parse_body(request, GenerateBody), chat=False)

    return app
