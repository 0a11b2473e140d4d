"""The app factory: `create_app(settings)` wires runtime, routes, errors and middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from llm_runner import __version__
from llm_runner.errors import install_error_handlers
from llm_runner.front import FrontDoor, FrontRoute, RunnerApp
from llm_runner.livepeer.errors import livepeer_error
from llm_runner.livepeer.routes import livepeer_router, llm_handler
from llm_runner.middleware import OperatorAuth, RequestMetricsMiddleware
from llm_runner.openai.errors import as_openai
from llm_runner.openai.routes import chat_handler, openai_router, responses_handler
from llm_runner.runtime import Runtime
from llm_runner.settings import Settings
from llm_runner.status import status_router
from llm_runner.usage import usage_router


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. Raises ConfigurationError for settings that cannot work."""
    settings = settings or Settings.from_env()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = RunnerApp(
        title="llm-runner",
        version=__version__,
        description="Serves LLMs on Livepeer from Ollama: the `llm` pipeline contract and an OpenAI-compatible "
        "API for live runners.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)

    app.include_router(livepeer_router(runtime, runtime.models[0], root=True))
    app.include_router(openai_router(runtime))
    for model in runtime.models:
        prefix = f"/models/{model.slug}"
        app.include_router(livepeer_router(runtime, model, root=False), prefix=prefix)
        app.include_router(openai_router(runtime, pinned=model), prefix=prefix)
    app.include_router(status_router(runtime))
    app.include_router(usage_router(runtime.loop.receipts))

    app.openapi = lambda: contract_openapi(app)  # type: ignore[method-assign]
    routes = token_routes(runtime)
    app.front_door = FrontDoor(routes, runtime.metrics, settings.max_body_bytes)
    app.add_middleware(OperatorAuth, token=settings.auth_token, metrics_open=settings.metrics_open)
    app.add_middleware(RequestMetricsMiddleware, metrics=runtime.metrics)
    logging.getLogger("llm_runner").setLevel(settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    return app


def token_routes(runtime: Runtime) -> dict[str, FrontRoute]:
    """Every path that carries tokens, for the front door (front.py), with its face's errors."""
    routes: dict[str, FrontRoute] = {}
    for prefix, model in [("", None), *((f"/models/{m.slug}", m) for m in runtime.models)]:
        llm = FrontRoute(llm_handler(runtime, model or runtime.models[0], root=model is None), livepeer_error)
        chat = FrontRoute(chat_handler(runtime, model), as_openai)
        responses = FrontRoute(responses_handler(runtime, model), as_openai)
        routes |= {f"{prefix}/llm": llm, f"{prefix}/llm/": llm, f"{prefix}/v1/chat/completions": chat}
        routes[f"{prefix}/v1/responses"] = responses
    return routes


def contract_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents its 422 for every body; we answer 400 instead (go-livepeer reads 422 as
    a silent success), so the published schema says so too."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in schema["paths"].values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault(
                        "400",
                        {
                            "description": "Bad request",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPError"}}},
                        },
                    )
        schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        app.openapi_schema = schema
    return app.openapi_schema
