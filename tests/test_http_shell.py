"""The HTTP shell in-process (llm_runner/http/): what the front door promises whatever routes it
carries: one lookup, one token check, errors in the route's face, the body limit, metrics.

The handlers here are stand-ins for the faces' (those are tested through HTTP in test_contract and
test_openai): one that answers, one that refuses, one with a bug.
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from starlette.responses import JSONResponse

from llm_runner.core.errors import NotReady
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.http.access import required_token
from llm_runner.http.front import FrontDoor, RouteTable, RunnerApp
from llm_runner.http.route import Access, Incoming, Route
from llm_runner.livepeer.errors import LIVEPEER
from llm_runner.openai.errors import OPENAI


async def echo(incoming: Incoming) -> JSONResponse:
    body = {"bytes": len(incoming.body), "session": incoming.header(b"livepeer-session-id"), "rest": incoming.rest}
    return JSONResponse(body)


async def refuse(incoming: Incoming) -> JSONResponse:
    raise NotReady("loading")


async def broken(incoming: Incoming) -> JSONResponse:
    raise KeyError("oops")


def settings(token: str | None = None, live_auth: bool | None = None, metrics_open: bool = False) -> SimpleNamespace:
    return SimpleNamespace(auth_token=token, live_auth=live_auth, metrics_open=metrics_open)


def front_app(max_body: int = 64, token: str | None = None) -> tuple[RunnerApp, RunnerMetrics]:
    app, metrics = RunnerApp(), RunnerMetrics()

    @app.get("/page")
    async def docs() -> dict:
        return {"page": "fastapi"}

    routes = [
        Route("/llm", "POST", echo, LIVEPEER, Access.RUNNER),
        Route("/health", "GET", echo, LIVEPEER, Access.OPEN),
        Route("/v1/models/", "GET", echo, OPENAI, Access.LIVE, rest="model_id"),
        Route("/v1/refuse", "POST", refuse, OPENAI, Access.RUNNER),
        Route("/v1/broken", "POST", broken, OPENAI, Access.RUNNER),
        Route("/broken", "POST", broken, LIVEPEER, Access.RUNNER),
        Route("/page", "GET", None, LIVEPEER, Access.OPERATOR),
    ]
    app.front_door = FrontDoor(RouteTable(routes, LIVEPEER), app.fastapi, settings(token), metrics, max_body)
    return app, metrics


def client(app: RunnerApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://runner")


async def test_routes_are_answered_from_the_table_and_pages_by_fastapi():
    app, metrics = front_app()
    async with client(app) as http:
        answered = await http.post("/llm", content=b"12345", headers={"Livepeer-Session-Id": "s1"})
        assert answered.json() == {"bytes": 5, "session": "s1", "rest": ""}
        assert (await http.get("/health")).json()["bytes"] == 0  # a GET's body is not read
        assert (await http.get("/v1/models/org/model-7b")).json()["rest"] == "org/model-7b"
        assert (await http.get("/page")).json() == {"page": "fastapi"}
    rendered = metrics.render()
    assert b'llm_runner_requests_total{endpoint="/llm",status="200"} 1.0' in rendered
    assert b'llm_runner_requests_total{endpoint="/v1/models/{model_id}",status="200"} 1.0' in rendered
    assert b'llm_runner_requests_total{endpoint="/page",status="200"} 1.0' in rendered


async def test_a_path_or_method_the_table_lacks_is_refused_by_the_nearest_face():
    app, metrics = front_app()
    async with client(app) as http:
        livepeer_method = await http.get("/llm")  # go-livepeer knows only 400/401/500
        assert livepeer_method.status_code == 400 and "only POST" in livepeer_method.json()["detail"]["msg"]
        livepeer_path = await http.get("/nowhere")
        assert livepeer_path.status_code == 400 and "no such path" in livepeer_path.json()["detail"]["msg"]
        openai_path = await http.get("/v1/nowhere")
        assert openai_path.status_code == 404 and openai_path.json()["error"]["type"] == "not_found_error"
        openai_method = await http.put("/v1/refuse")
        assert openai_method.status_code == 405 and openai_method.json()["error"]["type"] == "invalid_request_error"
    assert b'llm_runner_requests_total{endpoint="unmatched",status="404"} 1.0' in metrics.render()


@pytest.mark.parametrize(
    ("access", "configured", "needed"),
    [
        (Access.OPEN, settings("t"), None),
        (Access.RUNNER, settings(None), None),
        (Access.RUNNER, settings("t"), "t"),
        (Access.OPERATOR, settings("t", live_auth=False, metrics_open=True), "t"),
        (Access.LIVE, settings("t"), "t"),  # guarded by default when a token is set
        (Access.LIVE, settings("t", live_auth=False), None),
        (Access.METRICS, settings("t"), "t"),
        (Access.METRICS, settings("t", metrics_open=True), None),
    ],
)
def test_one_function_decides_which_token_a_route_needs(access, configured, needed):
    assert required_token(access, configured) == needed


async def test_the_token_is_checked_before_the_body_or_the_page():
    app, metrics = front_app(token="s3cret")
    async with client(app) as http:
        for method, path in [("POST", "/llm"), ("GET", "/v1/models/x"), ("GET", "/page")]:
            refused = await http.request(method, path, content=b"{}")
            assert refused.status_code == 401, path
        openai = await http.get("/v1/models/x", headers={"Authorization": "Bearer wrong"})
        assert openai.json()["error"]["type"] == "authentication_error"
        livepeer = await http.post("/llm")
        assert livepeer.json() == {"detail": {"msg": "Invalid bearer token"}}
        assert livepeer.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/health")).status_code == 200
        good = {"Authorization": "Bearer s3cret"}
        assert (await http.post("/llm", content=b"ok", headers=good)).json()["bytes"] == 2
        assert (await http.get("/page", headers=good)).status_code == 200
    assert b'llm_runner_requests_total{endpoint="/page",status="401"} 1.0' in metrics.render()


async def test_errors_leave_in_the_route_face_shape():
    app, metrics = front_app()
    async with client(app) as http:
        busy = await http.post("/v1/refuse", content=b"{}")
        assert busy.status_code == 503 and busy.json()["error"]["type"] == "service_unavailable"
        assert busy.headers["retry-after"] == "5"
        bug_openai = await http.post("/v1/broken", content=b"{}")
        assert bug_openai.status_code == 500 and "KeyError" in bug_openai.json()["error"]["message"]
        bug_livepeer = await http.post("/broken", content=b"{}")
        assert bug_livepeer.status_code == 500 and "KeyError" in bug_livepeer.json()["detail"]["msg"]
        assert (await http.post("/llm", content=b"fine")).status_code == 200  # the service goes on
    assert b'llm_runner_requests_total{endpoint="/broken",status="500"} 1.0' in metrics.render()


async def test_body_limit_declared_and_streamed():
    app, _ = front_app(max_body=64)
    async with client(app) as http:
        declared = await http.post("/llm", content=b"x" * 65)
        assert declared.status_code == 400 and "65 bytes > limit 64" in declared.json()["detail"]["msg"]

        async def pieces():
            for _ in range(3):
                yield b"y" * 30

        streamed = await http.post("/llm", content=pieces())
        assert streamed.status_code == 400 and "limit 64" in streamed.json()["detail"]["msg"]
        assert (await http.post("/llm", content=b"z" * 64)).json()["bytes"] == 64


async def test_a_client_gone_before_its_body_gets_no_answer():
    app, metrics = front_app()
    sent: list[dict] = []
    messages = [{"type": "http.disconnect"}]

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/llm", "headers": [], "query_string": b""}
    await app(scope, receive, send)
    assert sent == []
    assert b'endpoint="/llm"' not in metrics.render()


def test_a_route_declared_twice_is_refused():
    twice = [Route("/llm", "POST", echo, LIVEPEER, Access.RUNNER)] * 2
    with pytest.raises(ValueError, match="declared twice: POST /llm"):
        RouteTable(twice, LIVEPEER)
