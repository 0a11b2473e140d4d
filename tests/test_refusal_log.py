"""Every refused request leaves one log line (method, path, status, reason), as docs/failure-behaviour.md promises for
every request: a bad body, a wrong token, an unknown path, an unserved model, on both faces and on the
operator pages. A refusal the generation loop already summarised gets no second line. Never a token."""

from __future__ import annotations

import time

from tests.conftest import LLAMA, go_body
from tests.support.servers import Runner, serving

SECRET = "operator-secret-4c1e"
WRONG = "not-the-token-77d0"
SESSION_TOKEN = "livepeer-session-token-9b2a"
HI = [{"role": "user", "content": "hi"}]


def refusal_lines(runner: Runner, count: int, within: float = 10.0) -> list[str]:
    """The runner's refusal lines, once there are at least `count` of them."""
    deadline = time.monotonic() + within
    while True:
        lines = [line for line in runner.log().splitlines() if "llm_runner.refused: " in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


async def test_each_refused_request_leaves_one_line_naming_why_and_no_token(ollama, client):
    env = {"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "AUTH_TOKEN": SECRET, "LLM_RUNNER_MAX_PROMPT_CHARS": "50"}
    good = {"Authorization": f"Bearer {SECRET}", "Livepeer-Session-Token": SESSION_TOKEN}
    bad = {"Authorization": f"Bearer {WRONG}", "Livepeer-Session-Token": SESSION_TOKEN}
    slug = LLAMA.replace("/", "--")
    refusals = [  # method, path, request, status, what the line says
        ("POST", "/llm", {"content": b'{"messages": []}', "headers": good}, 400, "messages"),
        ("POST", "/llm", {"json": go_body(stream="yes"), "headers": good}, 400, "stream"),
        ("POST", "/llm", {"json": go_body(model="acme/Other-7B"), "headers": good}, 400, "acme/Other-7B"),
        ("POST", "/llm", {"json": go_body(), "headers": bad}, 401, "Invalid bearer token"),
        ("GET", "/version", {"headers": bad}, 401, "Invalid bearer token"),
        ("GET", "/status", {"headers": bad}, 401, "Invalid bearer token"),
        ("GET", "/nope", {"headers": good}, 400, "no such path"),
        ("GET", "/v1/nope", {"headers": good}, 404, "no such path"),
        ("DELETE", "/llm", {"headers": good}, 400, "method not allowed (only POST)"),
        ("POST", "/v1/chat/completions", {"json": {"model": "acme/x", "messages": HI}, "headers": good}, 404, "acme/x"),
        ("POST", f"/models/{slug}/v1/chat/completions", {"json": {"model": "acme/x"}}, 401, "Invalid bearer token"),
        (
            "POST",
            f"/models/{slug}/v1/chat/completions",
            {"json": {"model": "acme/x", "messages": HI}, "headers": good},
            400,
            "acme/x",
        ),
    ]
    with serving(env) as runner:
        for count, (method, path, request, status, reason) in enumerate(refusals, 1):
            response = await client.request(method, runner.url + path, **request)
            assert response.status_code == status, (path, response.text)
            lines = refusal_lines(runner, count)
            assert len(lines) == count, lines
            assert f"refused {method} {path}: {status} " in lines[-1] and reason in lines[-1], lines[-1]
        # refused by the generation loop (prompt over the limit): its summary line, and no second one
        too_long = go_body(messages=[{"role": "user", "content": "x" * 60}])
        assert (await client.post(runner.url + "/llm", json=too_long, headers=good)).status_code == 400
        assert "prompt too large" in runner.wait_log(f"livepeer answer {LLAMA}: invalid")
        # and an answered request leaves no refusal line
        assert (await client.post(runner.url + "/llm", json=go_body(), headers=good)).status_code == 200
        runner.wait_log(f"livepeer answer {LLAMA}: stop")
        log = runner.log()
    assert len(refusal_lines(runner, len(refusals) + 1, within=0)) == len(refusals)
    assert SECRET not in log and WRONG not in log and SESSION_TOKEN not in log
