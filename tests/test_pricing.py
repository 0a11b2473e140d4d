"""Pricing a call: the arithmetic (pure, table-driven) and `llm-runner price` through the command line,
calibrating against the Ollama stand-in or reading a running runner's measured speed."""

from __future__ import annotations

import json
from decimal import Decimal as D

import httpx
import pytest

from llm_runner.live.pricing import (
    billed_seconds,
    cap_for_price,
    fixed_call_seconds,
    fixed_quote,
    hour_call,
    hour_price,
    round_up,
)
from tests.conftest import LLAMA, go_body
from tests.support.operator_tools import check_runners_json
from tests.test_cli import cli


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (D("0.0002048"), 6, D("0.0002048")),
        (D("0.03599568"), 6, D("0.0359957")),  # up, never down: the price covers the tokens
        (D("0.123456001"), 6, D("0.123457")),
        (D("12"), 6, D("12")),
        (D("0"), 6, D("0")),
    ],
)
def test_round_up_keeps_significant_digits_and_never_rounds_down(value, digits, expected):
    assert round_up(value, digits) == expected


@pytest.mark.parametrize(
    ("out", "inp", "cap", "prompt", "price", "covered"),
    [
        (D("0.20"), D("0"), 1024, 3072, D("0.0002048"), 1024),  # cap x out price
        (D("0.20"), D("0.05"), 1024, 3072, D("0.0003584"), 1024),  # + 3072 x $0.05/1M = 0.0001536
        (D("0.20"), D("0"), 1, 0, D("0.0000002"), 1),
        (D("0.30"), D("0"), 7, 0, D("0.0000021"), 7),
        (D("0.07"), D("0.01"), 333, 100, D("0.00002431"), 333),  # 0.00002331 + 0.000001
        (D("0.13"), D("0"), 1000001, 0, D("0.130001"), 1000007),  # rounded up: covers a few more
    ],
)
def test_a_fixed_price_is_the_cap_times_the_output_price_plus_the_prompt_allowance(
    out, inp, cap, prompt, price, covered
):
    quote = fixed_quote(out, inp, cap, prompt)
    assert (quote.price, quote.max_tokens) == (price, covered)
    assert quote.max_tokens >= cap  # the largest cap the price covers is never less than asked


@pytest.mark.parametrize(
    ("price", "out", "inp", "prompt", "cap"),
    [
        (D("0.0002048"), D("0.20"), D("0"), 0, 1024),
        (D("0.0002047"), D("0.20"), D("0"), 0, 1023),  # a hair short of 1024 tokens
        (D("0.001"), D("0.20"), D("0.10"), 4000, 3000),  # 0.001 - 0.0004 = 0.0006 → 3000 tokens
        (D("0.0001"), D("0.20"), D("0.10"), 4000, 0),  # the allowance eats it all
    ],
)
def test_the_cap_is_the_largest_max_tokens_a_price_covers(price, out, inp, prompt, cap):
    assert cap_for_price(price, out, inp, prompt) == cap


@pytest.mark.parametrize(
    ("tokens_per_s", "out", "per_hour"),
    [
        (50, D("0.20"), D("0.036")),  # 50 x 3600 x 0.2e-6
        (49.99, D("0.20"), D("0.036")),  # 3 significant digits of speed: the rest is noise
        (94.8, D("0.20"), D("0.068256")),
        (41.7, D("0.60"), D("0.090072")),
        (1234.5, D("0.20"), D("0.8856")),  # 1230 tokens/s
    ],
)
def test_an_hour_price_is_tokens_per_second_times_3600_times_the_price_per_token(tokens_per_s, out, per_hour):
    assert hour_price(tokens_per_s, out) == per_hour


@pytest.mark.parametrize(
    ("duration_s", "billed"), [(0.1, 10), (2, 10), (9.99, 10), (10, 10), (10.01, 11), (61.2, 62), (600, 600)]
)
def test_the_remote_signer_bills_whole_seconds_with_a_10_second_minimum(duration_s, billed):
    assert billed_seconds(duration_s) == billed


@pytest.mark.parametrize(
    ("duration_s", "tokens", "billed_s", "ratio"),
    [
        (2, 100, 10, 5.0),  # a 2 s call is billed 10 s: five times its tokens
        (5, 250, 10, 2.0),
        (10, 500, 10, 1.0),
        (30, 1500, 30, 1.0),
    ],
)
def test_a_short_call_under_an_hour_price_pays_for_ten_seconds(duration_s, tokens, billed_s, ratio):
    call = hour_call(duration_s, 50, 0.0, hour_price(50, D("0.20")), D("0.20"))
    assert (call.tokens, call.billed_s) == (tokens, billed_s)
    assert call.ratio == pytest.approx(ratio)


def test_a_full_fixed_call_lasts_the_first_token_wait_plus_the_cap_at_the_decode_speed():
    assert fixed_call_seconds(1000, 50, 0.5) == pytest.approx(20.5)


# -- the command ------------------------------------------------------------------------------------


def test_price_calibrates_against_the_upstream_and_writes_the_fixed_price_and_its_cap(ollama, tmp_path):
    ollama.script(tokens=40)
    path = tmp_path / "runners.json"
    result = cli(
        *("price", "--usd-per-mtok-out", "0.20", "--upstream", ollama.url, "--model-id", LLAMA, "--runs", "2"),
        *("--max-tokens", "512", "--unit", "fixed", "--no-gpu", "--write", str(path)),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"calibrated against {ollama.url}: 2 generation(s)" in out
    assert "512 max_tokens x $0.20/1M = $0.0001024" in out and "LLM_RUNNER_MAX_TOKENS_CAP=512" in out
    assert "LLM_RUNNER_LIVE_PRICE=0.0001024" in out and "LLM_RUNNER_LIVE_UNIT=fixed" in out
    check_runners_json(path)  # as go-livepeer reads it
    (entry,) = json.loads(path.read_text())["runners"]
    assert entry["price_info"] == {"price": 0.0001024, "currency": "usd", "unit": "fixed"}
    assert ollama.stats()["chat_bodies"][-1]["options"]["num_predict"] == 128  # the calibration's own cap


def test_price_from_a_running_runner_uses_its_measured_speed_and_writes_an_hour_price(runner, tmp_path):
    for _ in range(3):
        httpx.post(runner.url + "/llm", json=go_body(max_tokens=8), timeout=10).raise_for_status()
    measured = httpx.get(runner.url + "/status", timeout=5).json()["models"][0]["tokens_per_s"]
    path = tmp_path / "runners.json"
    result = cli(
        *("price", "--usd-per-mtok-out", "0.20", "--from-runner", runner.url, "--unit", "hour"),
        *("--no-gpu", "--write", str(path)),
    )
    assert result.returncode == 0, result.stderr
    assert f"measured by the runner at {runner.url}" in result.stdout
    check_runners_json(path)
    (entry,) = json.loads(path.read_text())["runners"]
    assert entry["price_info"]["unit"] == "hour"
    assert D(str(entry["price_info"]["price"])) == hour_price(measured, D("0.20"))
    assert "LLM_RUNNER_MAX_TOKENS_CAP: not needed for hour" in result.stdout
    assert "billed" in result.stdout and json.dumps(entry["price_info"]["price"]) in result.stdout


def test_price_refuses_what_it_cannot_measure(tmp_path):
    result = cli("price", "--usd-per-mtok-out", "0.20", "--upstream", "http://127.0.0.1:9", "--model-id", LLAMA)
    assert result.returncode == 2 and "calibration against http://127.0.0.1:9 failed" in result.stderr
    result = cli("price", "--usd-per-mtok-out", "0", "--upstream", "http://127.0.0.1:9")
    assert result.returncode == 2 and "must be positive" in result.stderr
