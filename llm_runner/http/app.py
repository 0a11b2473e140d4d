"""The app factory: `create_app(settings)` builds the runtime, the route table and the front door."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from llm_runner import __version__
from llm_runner.http.access import required_token
from llm_runner.http.front import FrontDoor, RouteTable, RunnerApp
from llm_runner.http.operator import operator_routes
from llm_runner.http.route import Access, Route
from llm_runner.livepeer.errors import LIVEPEER
from llm_runner.livepeer.routes import livepeer_routes
from llm_runner.openai.routes import openai_routes
from llm_runner.runtime import Runtime
from llm_runner.settings import Settings

log = logging.getLogger("llm_runner")
API_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def create_app(settings: Settings | None = None) -> RunnerApp:
    """Build the service. Raises ConfigurationError for settings that cannot work."""
    settings = settings or Settings.from_env()
    runtime = Runtime(settings)
    table = RouteTable(route_table(runtime), default=LIVEPEER)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("%s", access_line(table, settings))
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
    declare(app, table)
    app.openapi = lambda: contract_openapi(app)  # type: ignore[method-assign]
    app.front_door = FrontDoor(table, app.fastapi, settings, runtime.metrics, settings.max_body_bytes)
    logging.getLogger("llm_runner").setLevel(settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    return app


def route_table(runtime: Runtime) -> list[Route]:
    """Every route: each face at the root and under each model's prefix, the runner's own, and
    FastAPI's API pages (served by FastAPI, guarded like /status)."""
    routes = livepeer_routes(runtime, runtime.models[0], root=True) + openai_routes(runtime)
    for model in runtime.models:
        routes += livepeer_routes(runtime, model, root=False) + openai_routes(runtime, pinned=model)
    routes += operator_routes(runtime)
    return routes + [Route(page, "GET", None, LIVEPEER, Access.OPERATOR) for page in API_PAGES]


def access_line(table: RouteTable, settings: Settings) -> str:
    """One start-up line saying which routes answer without a token, so that nobody learns it later."""
    open_paths = sorted({r.path for r in table.routes if required_token(r.access, settings) is None})
    if not settings.auth_token:
        return "AUTH_TOKEN is not set: every path answers anyone who reaches this port"
    live = "open (LLM_RUNNER_LIVE_AUTH=false)" if settings.live_auth is False else "need it"
    if settings.live_auth is not False and settings.live_orchestrator_url:
        live += ": clients calling through the orchestrator send it as their API key"
    shown = ", ".join(p for p in open_paths if "/models/" not in p)
    return f"AUTH_TOKEN guards every path but {shown} (and each model's /ready); live-runner paths {live}"


def declare(app: FastAPI, table: RouteTable) -> None:
    """Describe the documented routes to FastAPI, for the OpenAPI document only: the front door
    answers them before FastAPI sees the request."""
    for route in table.routes:
        if route.doc is None or route.handler is None:
            continue
        app.add_api_route(
            route.template,
            declaration(route.body, [route.rest] if route.rest else []),
            methods=[route.method],
            response_model=route.response,
            name=route.handler.__name__,
            **route.doc,
        )


def declaration(body: type[BaseModel] | None, path_params: list[str]) -> Callable[..., Awaitable[None]]:
    """An endpoint with the signature FastAPI documents (body and path parameters); never run."""

    async def endpoint(**_: object) -> None:
        raise AssertionError("served by the front door")

    params = [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, annotation=str) for p in path_params]
    if body is not None:
        params.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body))
    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return endpoint


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
