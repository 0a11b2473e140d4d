"""Edges an operator or a client meets first: how settings are read, one-line start-up errors,
busy answers, unknown paths in each face's shape, and which pages need AUTH_TOKEN."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from llm_runner.settings import Settings
from llm_runner.upstream.hosts import normalize_ollama_host, parse_upstreams
from llm_runner.upstream.shares import capacities_for
from tests.conftest import LLAMA, go_body
from tests.support.servers import Runner, StandIn, serving
from tests.test_cli import cli

TOKEN = "s3cret"
AUTHED = {"Authorization": f"Bearer {TOKEN}"}
SLUG = "meta-llama--Meta-Llama-3.1-8B-Instruct"
V1_BODY = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def one_line_error(result, *needles: str) -> str:
    """A start-up refusal: exit 2, one `llm-runner: error:` line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-runner: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def serve(env: dict[str, str]):
    return cli("serve", "--port", "1", env={"MODEL_ID": LLAMA, "LLM_RUNNER_BACKEND": "ollama", **env})


# -- OLLAMA_HOST -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("http://gpu-box", "http://gpu-box:80"),  # an explicit scheme means its own port, as Ollama's client reads it
        ("https://gpu-box", "https://gpu-box:443"),
        ("https://gpu-box/", "https://gpu-box:443"),
        ("gpu-box", "http://gpu-box:11434"),  # bare host: Ollama's port
        ("gpu-box:8080", "http://gpu-box:8080"),
        ("0.0.0.0", "http://127.0.0.1:11434"),  # the server's listen address, reached on loopback
        ("HTTPS://GPU-Box:8443", "https://gpu-box:8443"),
        ("http://[::1]", "http://[::1]:80"),
        ("[::1]:11435", "http://[::1]:11435"),
        ("http://proxy/ollama", "http://proxy:80/ollama"),
    ],
)
def test_ollama_host_resolves_ports_as_ollama_does(value, url):
    assert normalize_ollama_host(value) == url
    (spec,) = parse_upstreams(value)
    assert spec.url == url and spec.parallel is None and spec.models is None


def test_an_ollama_host_list_keeps_each_entrys_options():
    specs = parse_upstreams(f"http://a?parallel=2&models={LLAMA}, https://b ,c:1")
    assert [s.url for s in specs] == ["http://a:80", "https://b:443", "http://c:1"]
    assert [s.parallel for s in specs] == [2, None, None]
    assert specs[0].models == frozenset({LLAMA}) and specs[1].models is None
    settings = Settings(ollama_host="http://a?parallel=2,https://b", concurrency=3)
    assert capacities_for(settings, [LLAMA]) == {LLAMA: 5}


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("http://127.0.0.1:9?parallel=1,,http://127.0.0.1:10", "has an empty entry"),
        ("ftp://127.0.0.1:9", "only http:// and https:// are supported"),
        ("http://127.0.0.1:9?parallel=0", "parallel must be a whole number >= 1"),
        ("http://127.0.0.1:9?gpu=1", "unknown option(s) gpu"),
        ("http://127.0.0.1:9?parallel=1,127.0.0.1:9", "lists a server twice"),
    ],
)
def test_an_invalid_ollama_host_stops_serve_with_one_line(value, needle):
    one_line_error(serve({"OLLAMA_HOST": value}), "OLLAMA_HOST", needle)


def test_a_bad_list_of_bare_urls_is_a_one_line_error_too():
    """`import ollama` once parsed OLLAMA_HOST as one URL at import, before the settings (a traceback)."""
    one_line_error(serve({"OLLAMA_HOST": "http://127.0.0.1:9,,http://127.0.0.1:10"}), "has an empty entry")


# -- LLM_RUNNER_KEEP_ALIVE and OLLAMA_NUM_PARALLEL ---------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "bogus_ms", "10 m", "inf"])
def test_a_keep_alive_ollama_would_not_parse_is_refused_at_start(value):
    result = serve({"OLLAMA_HOST": "http://127.0.0.1:9", "LLM_RUNNER_KEEP_ALIVE": value})
    one_line_error(result, "keep_alive", repr(value))


@pytest.mark.parametrize("value", ["", "nan", "-inf", "1e999", "1h 30m", "0x10", "forever"])
def test_every_keep_alive_that_is_neither_seconds_nor_a_go_duration_is_refused(value):
    with pytest.raises(ValueError, match="keep_alive"):
        Settings(keep_alive=value)


@pytest.mark.parametrize(
    ("value", "sent"),
    [("10m", "10m"), ("1h30m", "1h30m"), ("-1", -1), ("300", 300), ("1.5", 1.5), ("-1s", "-1s"), (" 60 ", 60)],
)
def test_a_keep_alive_is_sent_as_ollama_parses_it(value, sent):
    """Ollama reads a JSON number as seconds and a string as a Go duration ("300" is not one)."""
    keep_alive = Settings(keep_alive=value).ollama_keep_alive
    assert keep_alive == sent and type(keep_alive) is type(sent)


def test_a_non_numeric_ollama_num_parallel_is_refused_at_start():
    result = serve({"OLLAMA_HOST": "http://127.0.0.1:9", "OLLAMA_NUM_PARALLEL": "abc"})
    one_line_error(result, "OLLAMA_NUM_PARALLEL", "valid integer")


# -- a malformed model map file ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "content", "problem"),
    [
        (["models"], "{not json", "Expecting property name"),
        (["ai-models"], "{not json", "Expecting property name"),
        (["doctor", "--runner-url", "http://127.0.0.1:9"], "{not json", "Expecting property name"),
        (["models"], '["a"]', "must be a JSON object"),
        (["ai-models"], '{"acme/Model": 7}', "must be a JSON object"),
        (["doctor"], b"\xff\xfe", "utf-8"),
    ],
)
def test_a_malformed_model_map_file_is_one_line_naming_it(tmp_path, command, content, problem):
    path = tmp_path / "map.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    env = {"LLM_RUNNER_MODEL_MAP_FILE": str(path), "OLLAMA_HOST": "http://127.0.0.1:9"}
    one_line_error(cli(*command, env=env), str(path), problem)


# -- busy, unknown paths, /v1/models/{id} ------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(standin_server: StandIn) -> Iterator[Runner]:
    """AUTH_TOKEN set, one slot and no queue (the next request is busy), keep_alive as a duration."""
    standin_server.reset()
    env = {
        "OLLAMA_HOST": standin_server.url,
        "MODEL_ID": LLAMA,
        "AUTH_TOKEN": TOKEN,
        "LLM_RUNNER_CONCURRENCY": "1",
        "LLM_RUNNER_MAX_QUEUE": "0",
        "LLM_RUNNER_KEEP_ALIVE": "1h30m",
    }
    with serving(env) as server:
        yield server


async def test_keep_alive_reaches_ollama_as_a_duration_or_a_number(guarded, runner, ollama, client):
    assert (await client.post(guarded.url + "/llm", json=go_body(), headers=AUTHED)).status_code == 200
    assert ollama.stats()["chat_bodies"][-1]["keep_alive"] == "1h30m"
    assert (await client.post(runner.url + "/llm", json=go_body())).status_code == 200
    assert ollama.stats()["chat_bodies"][-1]["keep_alive"] == -1  # the default, a JSON number


async def test_busy_answers_say_when_to_retry(guarded, ollama, client):
    ollama.script(tokens=1000, token_rate=20)
    async with client.stream(
        "POST", guarded.url + "/llm", json=go_body(stream=True, max_tokens=1000), headers=AUTHED
    ) as holding:
        assert holding.status_code == 200
        await ollama.until(lambda s: s["open_generations"] == 1)
        busy = await client.post(guarded.url + "/llm", json=go_body(), headers=AUTHED)
        assert busy.status_code == 500 and "busy" in busy.json()["detail"]["msg"]
        assert busy.headers["retry-after"] == "1"
        v1 = await client.post(guarded.url + "/v1/chat/completions", json=V1_BODY, headers=AUTHED)
        assert v1.status_code == 429 and v1.headers["retry-after"] == "1"
        assert v1.json()["error"]["type"] == "rate_limit_error" and "busy" in v1.json()["error"]["message"]
    await ollama.until(lambda s: s["open_generations"] == 0)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nope", 404),
        ("POST", "/v1/completions", 404),  # legacy completions: not served
        ("GET", f"/models/{SLUG}/v1/nope", 404),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/models", 405),
        ("PUT", f"/models/{SLUG}/v1/chat/completions", 405),
    ],
)
async def test_unknown_v1_paths_and_methods_answer_in_openai_shape(runner, client, method, path, status):
    response = await client.request(method, runner.url + path)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and path in error["message"]
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("GET", "/llm"), ("POST", "/health"), ("GET", "/v2")])
async def test_unknown_livepeer_paths_stay_400_in_livepeer_shape(runner, client, method, path):
    response = await client.request(method, runner.url + path)
    assert response.status_code == 400  # go-livepeer reads a 404 or a 405 as a silent success
    assert path in response.json()["detail"]["msg"]


async def test_one_model_card_by_id(runner, client):
    card = await client.get(runner.url + f"/v1/models/{LLAMA}")
    assert card.status_code == 200
    assert card.json() == {"id": LLAMA, "object": "model", "created": 0, "owned_by": "llm-runner"}
    assert (await client.get(runner.url + f"/models/{SLUG}/v1/models/{LLAMA}")).json()["id"] == LLAMA
    missing = await client.get(runner.url + "/v1/models/acme/Unknown-7B")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error" and missing.json()["error"]["param"] == "model"


# -- which pages need AUTH_TOKEN ---------------------------------------------------------------------

OPERATOR_PAGES = ["/metrics", "/status", "/docs", "/redoc", "/openapi.json"]
OPEN_PAGES = ["/health", "/ready", f"/models/{SLUG}/ready", f"/models/{SLUG}/health"]


async def test_operator_pages_need_the_token_and_readiness_urls_do_not(guarded, client):
    for path in OPERATOR_PAGES:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = await client.get(guarded.url + path, headers=headers)
            assert refused.status_code == 401, (path, headers)
            assert refused.json() == {"detail": {"msg": "Invalid bearer token"}}
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (await client.get(guarded.url + path, headers=AUTHED)).status_code == 200, path
    for path in OPEN_PAGES:
        assert (await client.get(guarded.url + path)).status_code == 200, path
    for path in ("/version", "/hardware/info"):  # the contract's: go-livepeer sends the token
        assert (await client.get(guarded.url + path)).status_code == 401, path


async def test_metrics_open_opens_metrics_only(standin_server, client):
    env = {"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA, "AUTH_TOKEN": TOKEN, "LLM_RUNNER_METRICS_OPEN": "true"}
    with serving(env) as runner:
        pages = await asyncio.gather(*(client.get(runner.url + p) for p in OPERATOR_PAGES + OPEN_PAGES))
        status = {path: page.status_code for path, page in zip(OPERATOR_PAGES + OPEN_PAGES, pages, strict=True)}
        assert status == {"/metrics": 200, **dict.fromkeys(OPERATOR_PAGES[1:], 401), **dict.fromkeys(OPEN_PAGES, 200)}
        assert "llm_runner_in_flight" in pages[0].text


async def test_the_bearer_scheme_is_case_insensitive_and_the_token_exact(guarded, client):
    for header in (f"bearer {TOKEN}", f"Bearer  {TOKEN}"):
        assert (await client.get(guarded.url + "/status", headers={"Authorization": header})).status_code == 200
    for header in (f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
        assert (await client.get(guarded.url + "/status", headers={"Authorization": header})).status_code == 401


async def test_live_paths_need_the_token_when_one_is_set_unless_opened(guarded, standin_server, client):
    live = f"/models/{SLUG}/v1/models"
    assert (await client.get(guarded.url + live)).status_code == 401  # secure by default
    assert (await client.get(guarded.url + live, headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200
    assert "live-runner paths need it" in guarded.wait_log("AUTH_TOKEN guards every path but")
    env = {"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA, "AUTH_TOKEN": TOKEN, "LLM_RUNNER_LIVE_AUTH": "false"}
    with serving(env) as runner:
        assert (await client.get(runner.url + live)).status_code == 200
        assert (await client.get(runner.url + "/v1/models")).status_code == 401  # the root paths stay guarded
        assert "live-runner paths open (LLM_RUNNER_LIVE_AUTH=false)" in runner.wait_log("AUTH_TOKEN guards")
