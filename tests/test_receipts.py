"""A fixed price's token cap and a receipt per call: in the core (the in-process Rig of
test_core_loop) and through both faces of a real runner over the Ollama stand-in."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from llm_runner.core.errors import BadRequest
from llm_runner.core.events import STOP, End
from llm_runner.core.receipts import Receipt, Receipts
from llm_runner.core.request import GenerationRequest, Message
from tests.conftest import LLAMA, go_body
from tests.support.servers import Runner, StandIn, serving
from tests.test_cli import serve_fails
from tests.test_core_loop import Limits, Rig, Scripted, drain_events, until
from tests.test_core_loop import summaries as summaries  # the fixture: one summary line per request

SLUG = LLAMA.replace("/", "--")
TOKEN = "operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAP = 8


def job(session: str, max_tokens: int | None) -> GenerationRequest:
    return GenerationRequest(
        LLAMA, [Message("user", "hi")], stream=True, max_tokens=max_tokens, face="test", session=session
    )


# -- the core -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_tokens", "said"), [(101, "max_tokens 101 is over the cap of 100"), (None, "required")])
async def test_a_call_past_the_cap_is_refused_before_any_work_with_one_invalid_line(summaries, max_tokens, said):
    async with Rig(Scripted("A"), limits=Limits(num_ctx=4096, max_tokens_cap=100)) as rig:
        await rig.ready()
        with pytest.raises(BadRequest, match=said) as refused:
            await rig.loop.start(job("s1", max_tokens), rig.client.receive)
        assert refused.value.param == "max_tokens" and "LLM_RUNNER_MAX_TOKENS_CAP" in refused.value.msg
        assert rig.upstreams["A"].chats == 0
        (line,) = summaries()
        assert ": invalid (max_tokens" in line and "0 prompt + 0 completion tokens" in line
        assert rig.count("invalid") == 1
        (row,) = rig.loop.receipts.usage()["sessions"]
        assert row["refused"] == 1 and row["requests"] == row["prompt_tokens"] == row["completion_tokens"] == 0


async def test_at_the_cap_or_with_a_context_no_larger_than_it_a_call_is_served(summaries):
    async with Rig(Scripted("A"), limits=Limits(num_ctx=100, max_tokens_cap=100)) as rig:
        await rig.ready()
        await drain_events(await rig.loop.start(job("s1", 100), rig.client.receive))
        await drain_events(await rig.loop.start(job("s1", None), rig.client.receive))  # num_ctx bounds it
        assert rig.upstreams["A"].chats == 2 and rig.count(STOP) == 2


async def test_receipts_sum_exactly_per_session_over_a_thousand_concurrent_calls():
    """1,000 calls at once over 10 sessions, one in ten refused by the cap: the sums are exact."""
    upstream = Scripted("A", slots=64)
    limits = Limits(num_ctx=4096, max_tokens_cap=100)
    async with Rig(upstream, max_queue=1000, limits=limits) as rig:
        await rig.ready()
        upstream.scripts = [["x", "y", End(STOP, 7 + i % 3, 2 + i % 5)] for i in range(900)]

        async def call(i: int) -> None:
            try:
                generation = await rig.loop.start(job(f"s{i % 10}", 500 if i % 10 == 9 else 50), rig.client.receive)
            except BadRequest:
                return
            await drain_events(generation)

        await asyncio.gather(*(call(i) for i in range(1000)))
        await until(lambda: rig.admission.in_flight == 0)
        usage = rig.loop.receipts.usage()
        # each End was handed out in call order to whichever call got the slot: the totals are exact
        assert usage["totals"] == {
            "requests": 900,
            "refused": 100,
            "prompt_tokens": sum(7 + i % 3 for i in range(900)),
            "completion_tokens": sum(2 + i % 5 for i in range(900)),
        }
        rows = {row["session"]: row for row in usage["sessions"]}
        assert set(rows) == {f"s{i}" for i in range(10)}
        assert all(rows[f"s{i}"]["requests"] == 100 and rows[f"s{i}"]["refused"] == 0 for i in range(9))
        assert rows["s9"] == {**rows["s9"], "requests": 0, "refused": 100, "prompt_tokens": 0, "completion_tokens": 0}
        assert rig.sample("llm_runner_completion_tokens_total", model=LLAMA) == usage["totals"]["completion_tokens"]


def receipt(session: str, at: float, tokens: int = 1, served: bool = True, rid: str = "") -> Receipt:
    return Receipt(rid, LLAMA, "test", session, STOP, tokens, tokens, 0.0, 0.1, at, served)


def test_receipts_forget_idle_sessions_past_the_window_and_the_longest_idle_past_the_limit():
    receipts = Receipts(window_s=60, max_sessions=2, max_receipts=2)
    receipts.record(receipt("a", 1000))
    receipts.record(receipt("b", 1010))
    receipts.record(receipt("a", 1020, tokens=2))
    receipts.record(receipt("c", 1030))  # three sessions > 2: b, the longest idle, goes
    assert [r["session"] for r in receipts.usage(now=1030)["sessions"]] == ["a", "c"]
    assert receipts.usage("a", now=1030)["sessions"][0] == {
        "session": "a",
        "requests": 2,
        "refused": 0,
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "first_at": 1000,
        "last_at": 1020,
    }
    usage = receipts.usage(now=1085)  # a idle 65 s > 60: gone; c idle 55 s: kept
    assert [r["session"] for r in usage["sessions"]] == ["c"] and usage["dropped_sessions"] == 2
    for n in range(3):
        receipts.record(receipt("c", 1090, rid=f"r{n}"))
    assert receipts.find("r0") is None and receipts.find("r2") is not None  # at most 2 single receipts


# -- both faces of a real runner ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capped(standin_server: StandIn) -> Iterator[Runner]:
    """A runner priced per call: at most 8 output tokens, operator pages behind AUTH_TOKEN."""
    standin_server.reset()
    env = {
        "OLLAMA_HOST": standin_server.url,
        "MODEL_ID": LLAMA,
        "AUTH_TOKEN": TOKEN,
        "LLM_RUNNER_MAX_TOKENS_CAP": str(CAP),
        "LLM_RUNNER_CONCURRENCY": "4",
    }
    with serving(env) as server:
        yield server


LLM_REFUSALS = [({"max_tokens": CAP + 1}, f"max_tokens {CAP + 1} is over the cap of {CAP}"), ({}, "max_tokens 256")]


@pytest.mark.parametrize(("fields", "said"), LLM_REFUSALS)
async def test_llm_refuses_past_the_cap_with_a_400_detail_msg(capped, ollama, client, fields, said):
    body = go_body(**fields)
    if not fields:
        del body["max_tokens"]  # the contract's default, 256
    before = len(ollama.stats()["chat_bodies"])
    response = await client.post(capped.url + "/llm", json=body, headers=AUTH)
    assert response.status_code == 400
    assert said in response.json()["detail"]["msg"] and f"at most {CAP}" in response.json()["detail"]["msg"]
    assert set(response.json()) == {"detail"} and len(ollama.stats()["chat_bodies"]) == before
    capped.wait_log(f"livepeer answer {LLAMA}: invalid (max_tokens")


V1_REFUSALS = [
    ({"max_tokens": CAP + 1}, "max_tokens"),
    ({"max_completion_tokens": CAP + 1}, "max_completion_tokens"),
    ({}, "max_tokens"),  # none, while num_ctx (4096) could run past the cap
]


@pytest.mark.parametrize(("fields", "param"), V1_REFUSALS)
@pytest.mark.parametrize("prefix", ["", f"/models/{SLUG}"])
async def test_v1_refuses_past_the_cap_with_a_400_naming_the_field(capped, ollama, client, fields, param, prefix):
    body = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], **fields}
    before = len(ollama.stats()["chat_bodies"])
    response = await client.post(f"{capped.url}{prefix}/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and str(CAP) in error["message"]
    assert len(ollama.stats()["chat_bodies"]) == before


async def test_answers_carry_their_receipt_and_usage_sums_per_session(capped, ollama, client):
    session = {"Livepeer-Session-Id": "sess-receipts", **AUTH}
    answer = await client.post(capped.url + "/llm", json=go_body(max_tokens=CAP), headers=session)
    assert answer.status_code == 200
    request_id = answer.headers["LLM-Runner-Request-Id"]
    assert answer.json()["id"] == f"chatcmpl-{request_id}"
    receipt = dict(part.split("=", 1) for part in answer.headers["LLM-Runner-Receipt"].split("; "))
    usage = answer.json()["usage"]
    assert receipt["id"] == request_id and receipt["model"] == LLAMA
    assert (int(receipt["prompt_tokens"]), int(receipt["completion_tokens"])) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    capped.wait_log(f"session sess-receipts, request {request_id}")

    body = {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}
    async with client.stream(
        "POST", f"{capped.url}/models/{SLUG}/v1/chat/completions", json=body, headers=session
    ) as stream:
        stream_id = stream.headers["LLM-Runner-Request-Id"]
        lines = [line async for line in stream.aiter_lines() if line.startswith("data: {")]
    assert f'"id":"chatcmpl-{stream_id}"' in lines[-1] and '"completion_tokens":5' in lines[-1]

    assert (await client.get(capped.url + "/usage")).status_code == 401  # behind AUTH_TOKEN, as /status
    looked_up = (await client.get(capped.url + "/usage", params={"request_id": stream_id}, headers=AUTH)).json()
    assert looked_up["completion_tokens"] == 5 and looked_up["session"] == "sess-receipts"
    sums = (await client.get(capped.url + "/usage", params={"session": "sess-receipts"}, headers=AUTH)).json()
    (row,) = sums["sessions"]
    assert row["requests"] == 2 and row["refused"] == 0
    assert row["completion_tokens"] == usage["completion_tokens"] + 5
    assert row["first_at"] <= row["last_at"]
    assert TOKEN not in capped.log() and re.search(r"request [0-9a-f]{32}", capped.log())


async def test_a_refused_call_leaves_a_refusal_and_no_tokens_in_its_session(capped, client):
    headers = {"Livepeer-Session-Id": "sess-refused", **AUTH}
    refused = await client.post(capped.url + "/llm", json=go_body(max_tokens=CAP * 10), headers=headers)
    assert refused.status_code == 400
    sums = (await client.get(capped.url + "/usage", params={"session": "sess-refused"}, headers=AUTH)).json()
    (row,) = sums["sessions"]
    assert (row["requests"], row["refused"], row["prompt_tokens"], row["completion_tokens"]) == (0, 1, 0, 0)


def test_a_dynamic_registration_priced_per_call_needs_a_cap():
    env = {"LLM_RUNNER_LIVE_ORCHESTRATOR_URL": "https://127.0.0.1:9", "LLM_RUNNER_LIVE_ORCH_SECRET": "s"}
    env |= {"LLM_RUNNER_LIVE_PRICE": "0.0002", "LLM_RUNNER_LIVE_UNIT": "fixed"}
    assert "LLM_RUNNER_MAX_TOKENS_CAP" in serve_fails(env)


def test_receipt_header_is_the_summary_lines_numbers():
    text = receipt("s", 0.0, tokens=3, rid="abc").header()
    assert text == f"id=abc; model={LLAMA}; prompt_tokens=3; completion_tokens=3; ttft_ms=0; total_ms=100"
    assert httpx.Headers({"LLM-Runner-Receipt": text})["llm-runner-receipt"] == text
