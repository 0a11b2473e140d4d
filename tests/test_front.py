"""The front door in-process (llm_runner/front.py): what it promises whatever handler it carries.

The handlers here are stand-ins for the faces' (those are tested through HTTP in test_contract and
test_openai): one that answers, one that refuses, one with a bug.
"""

from __future__ import annotations

import httpx
from starlette.responses import JSONResponse

from llm_runner.core.errors import NotReady
from llm_runner.core.metrics import RunnerMetrics
from llm_runner.front import FrontDoor, FrontRoute, Incoming, RunnerApp
from llm_runner.livepeer.errors import livepeer_error
from llm_runner.openai.errors import as_openai


async def echo(incoming: Incoming) -> JSONResponse:
    return JSONResponse({"bytes": len(incoming.body), "session": incoming.header(b"livepeer-session-id")})


async def refuse(incoming: Incoming) -> JSONResponse:
    raise NotReady("loading")


async def broken(incoming: Incoming) -> JSONResponse:
    raise KeyError("oops")


def front_app(max_body: int = 64) -> tuple[RunnerApp, RunnerMetrics]:
    app, metrics = RunnerApp(), RunnerMetrics()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "OK"}

    routes = {
        "/llm": FrontRoute(echo, livepeer_error),
        "/refuse": FrontRoute(refuse, as_openai),
        "/v1/broken": FrontRoute(broken, as_openai),
        "/broken": FrontRoute(broken, livepeer_error),
    }
    app.front_door = FrontDoor(routes, metrics, max_body)
    return app, metrics


def client(app: RunnerApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://runner")


async def test_front_paths_are_answered_and_the_rest_goes_to_fastapi():
    app, metrics = front_app()
    async with client(app) as http:
        answered = await http.post("/llm", content=b"12345", headers={"Livepeer-Session-Id": "s1"})
        assert answered.json() == {"bytes": 5, "session": "s1"}
        assert (await http.get("/health")).json() == {"status": "OK"}
        assert (await http.get("/llm")).status_code == 404  # only POSTs take the front door: FastAPI answers
    assert b'llm_runner_requests_total{endpoint="/llm",status="200"} 1.0' in metrics.render()


async def test_errors_leave_in_the_route_face_shape():
    app, metrics = front_app()
    async with client(app) as http:
        busy = await http.post("/refuse", content=b"{}")
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
