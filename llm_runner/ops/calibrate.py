"""How fast a model serves, for `llm-runner price`: measured by a short calibration run against the
upstream itself, or read from a running runner's `/status` (what its real requests measured).

A price per hour is only as honest as the speed it is computed from, so the source is always said.
Both ways measure as the runner does (core.speed.Speed): time to the first event, then decode
tokens per second after it, from the upstream's exact token counts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from llm_runner.core.errors import UpstreamError
from llm_runner.core.events import End
from llm_runner.core.request import GenerationRequest, Message
from llm_runner.core.speed import Speed
from llm_runner.settings import Settings
from llm_runner.upstream.catalog import Catalog
from llm_runner.upstream.ollama import OllamaUpstream

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
ENGINE_START_S = 180.0  # the embedded engine's process start and model load


class CalibrationError(Exception):
    """The speed could not be measured; the message says why and what to do."""


@dataclass(frozen=True)
class Measured:
    model_id: str
    tokens_per_s: float
    ttft_s: float
    samples: int
    source: str  # said in the proposal: where the numbers come from


def from_runner(url: str, token: str | None, ids: list[str] | None) -> list[Measured]:
    """The speeds a running runner measured on its real requests (`/status` models[])."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url.rstrip("/") + "/status", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise CalibrationError(f"cannot read {url}/status: {exc}") from exc
    if response.status_code != 200:
        raise CalibrationError(f"{url}/status answered {response.status_code} (set AUTH_TOKEN if it needs one)")
    models = [m for m in response.json().get("models", []) if ids is None or m["model_id"] in ids]
    if not models:
        raise CalibrationError(f"{url} serves none of {', '.join(ids or [])}")
    out = []
    for model in models:
        if not model.get("tokens_per_s") or model.get("ttft_p50_s") is None:
            raise CalibrationError(
                f"{url} has not measured {model['model_id']} yet: send it a few requests, or calibrate "
                "against its upstream (leave out --from-runner)"
            )
        source = f"measured by the runner at {url} over its last {model.get('measured_requests', 0)} request(s)"
        out.append(
            Measured(model["model_id"], model["tokens_per_s"], model["ttft_p50_s"], model["measured_requests"], source)
        )
    return out


async def calibrate(
    settings: Settings, ids: list[str], upstream: OllamaUpstream, runs: int, max_tokens: int, start_wait_s: float = 0
) -> list[Measured]:
    """Stream `runs` generations of up to `max_tokens` per model through the upstream's chat,
    after one untimed generation that loads the model; `start_wait_s`: how long an upstream that
    is starting (the embedded engine's process) may take to answer."""
    catalog = Catalog.load(settings.model_map, settings.model_map_file)
    await upstream.start()
    try:
        await _until_up(upstream, start_wait_s)
        out = []
        for model_id in ids:
            tag = catalog.resolve(model_id)
            speed = Speed()
            await _one(upstream, tag, 1)  # the load is not the speed
            for _ in range(runs):
                ttft_s, tokens, decode_s = await _one(upstream, tag, max_tokens)
                speed.record(model_id, ttft_s, tokens, decode_s)
            measured = speed.of(model_id)
            if measured.tokens_per_s is None or measured.ttft_p50_s is None:
                raise CalibrationError(f"{model_id} ({tag}) answered with fewer than 2 tokens: no speed to measure")
            source = f"calibrated against {upstream.name}: {runs} generation(s) of up to {max_tokens} tokens"
            out.append(Measured(model_id, measured.tokens_per_s, measured.ttft_p50_s, runs, source))
        return out
    except UpstreamError as exc:
        raise CalibrationError(f"calibration against {upstream.name} failed: {exc.msg}") from exc
    finally:
        await upstream.aclose()


async def _until_up(upstream: OllamaUpstream, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await upstream.version()
            return
        except UpstreamError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # a process starting: nothing to wait on but its port


async def _one(upstream: OllamaUpstream, tag: str, max_tokens: int) -> tuple[float, int, float]:
    """One generation: (time to the first event, completion tokens, seconds after the first event)."""
    request = GenerationRequest(tag, [Message("user", PROMPT)], stream=True, max_tokens=max_tokens, temperature=0.7)
    started = time.monotonic()
    first = None
    end = End("error")
    async for event in upstream.chat(tag, request, think_off=False):
        if first is None:
            first = time.monotonic()
        if type(event) is End:
            end = event
    done = time.monotonic()
    first = first or done
    return first - started, end.completion_tokens, done - first
