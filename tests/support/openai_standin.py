"""A scripted OpenAI-compatible engine: the liveness of vLLM, SGLang and llama-server, and their
/v1/chat/completions SSE stream, as a real HTTP server.

Liveness per `flavor`: `vllm` has `/health` (200, 500 once its engine died) and `/version`;
`sglang` has `/health` and `/health_generate` (503 until it can generate); `llama-server` has
`/health` (503 `{"error": {"message": "Loading model"}}` while loading) and answers /v1/models
503 meanwhile too; `plain` has no `/health` at all (llama-cpp-python's server). `loading` and
`dead` script the states.

The stream follows vLLM's: a first chunk with the role, one chunk per token ("tok0 ", "tok1 ", ...),
a chunk with `finish_reason`, then with `stream_options.include_usage` a chunk with `choices: []`
and the usage (prompt tokens: 10 + the words of the messages, as tests/support/standin.py counts), then
`data: [DONE]`. `max_tokens` caps it (`length`), `tools` with the `tool_call` knob make a call
streamed in pieces (`tool_calls`), `logprobs` adds `logprobs.content`, `reasoning_tokens` sends
`reasoning_content` first. An unlisted model is a 404 with vLLM's error body.

Knobs: POST /_control (JSON), POST /_reset, GET /_stats, with tests/support/servers.py's StandIn helpers.
Run: python -m tests.support.openai_standin --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn

from tests.conftest import LLAMA
from tests.support.standin import (
    ScriptedAbort,
    disconnected_within,
    finish,
    read_request,
    reply,
    send_body,
    set_knobs,
    start,
)

SSE = [(b"content-type", b"text/event-stream")]


@dataclass
class Script:
    models: list[str] = field(default_factory=lambda: [LLAMA])
    flavor: str = "vllm"  # vllm | sglang | llama-server | plain
    loading: bool = False
    dead: bool = False
    tokens: int = 12
    token_rate: float = 0.0  # tokens per second; 0 = as fast as possible
    usage: bool = True  # honour stream_options.include_usage
    chat_status: int = 200
    chat_error: str = "scripted engine failure"
    error_after: int | None = None  # a data: {"error": ...} line after N tokens
    close_after: int | None = None  # drop the connection after N tokens
    end_without_done_after: int | None = None  # end the body after N tokens, no finish, no [DONE]
    stall_after: int | None = None  # go silent for stall_seconds after N tokens
    stall_seconds: float = 0.0
    tool_call: dict[str, Any] | None = None  # {"name": ..., "arguments": {...}} with tools in the request
    reasoning_tokens: int = 0
    api_key: str | None = None  # as `vllm serve --api-key`: /v1/* need `Authorization: Bearer <key>`


@dataclass
class Stats:
    open_generations: int = 0
    started: int = 0
    completed: int = 0
    cancelled: int = 0
    health_checks: int = 0
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)


class OpenAIStandIn:
    def __init__(self) -> None:
        self.script, self.stats = Script(), Stats()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        payload = await read_request(scope, receive, send)
        if payload is None:
            return
        route = (scope["method"], scope["path"])
        key = self.script.api_key
        if (
            key
            and scope["path"].startswith("/v1/")
            and (b"authorization", f"Bearer {key}".encode()) not in scope["headers"]
        ):
            await reply(send, 401, {"error": "Unauthorized"})
            return
        if route == ("POST", "/v1/chat/completions"):
            await self.chat(payload, receive, send)
        elif route == ("POST", "/_control"):
            await reply(send, *set_knobs(self.script, payload))
        elif route == ("POST", "/_reset"):
            self.script, self.stats = Script(), Stats()
            await reply(send, 200, {})
        elif route == ("GET", "/_stats"):
            await reply(send, 200, asdict(self.stats))
        else:
            status, answer = self.probe(route[1])
            await reply(send, status, answer)

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        """The GET endpoints a flavor has, in the state the script says."""
        script, flavor = self.script, self.script.flavor
        loading = (503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
        if path == "/v1/models":
            if script.loading and flavor == "llama-server":
                return loading
            return 200, {"object": "list", "data": [{"id": m, "object": "model", "root": m} for m in script.models]}
        has = {"/health"} if flavor != "plain" else set()
        has |= {"/version"} if flavor in ("vllm", "sglang") else set()
        has |= {"/health_generate"} if flavor == "sglang" else set()
        if path not in has:
            return 404, {"detail": "Not Found"}
        if path == "/version":
            return 200, {"version": "0.9.9-standin"}
        self.stats.health_checks += 1
        if script.dead:
            return 500, {"error": {"message": "EngineDeadError: engine loop is not running"}}
        return loading if script.loading else (200, {"status": "ok"} if flavor == "llama-server" else {})

    async def chat(self, payload: dict, receive: Any, send: Any) -> None:
        script, stats = self.script, self.stats
        model = payload.get("model")
        if model not in script.models:
            error = {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "code": 404}
            await reply(send, 404, {"error": error})
            return
        stats.chat_bodies = [*stats.chat_bodies[-49:], payload]
        if script.chat_status != 200:
            error = {"message": script.chat_error, "type": "InternalServerError", "code": script.chat_status}
            await reply(send, script.chat_status, {"error": error})
            return
        limit = payload.get("max_tokens")
        count = min(script.tokens, limit) if limit is not None else script.tokens
        reason = "length" if limit is not None and limit < script.tokens else "stop"
        call = script.tool_call if payload.get("tools") else None
        top = int(payload.get("top_logprobs") or 0) if payload.get("logprobs") else None
        prompt = 10 + sum(len(str(m.get("content", "")).split()) for m in payload["messages"])
        stats.started += 1
        stats.open_generations += 1
        finished = False
        gone = asyncio.create_task(disconnected_within(receive, None))

        async def data(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> None:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason, **extra}
            line = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "model": model, "choices": [choice]}
            await send_body(send, b"data: " + json.dumps(line).encode() + b"\n\n")

        try:
            await start(send, 200, SSE)
            await data({"role": "assistant", "content": ""})
            for i in range(script.reasoning_tokens):
                await data({"reasoning_content": f"hmm{i} "})
            began = time.monotonic()
            for i in range(0 if call else count):
                if script.token_rate and (delay := began + (i + 1) / script.token_rate - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
                if gone.done():
                    return
                if i == script.error_after:
                    await send_body(
                        send, b'data: {"error": {"message": "scripted mid-stream failure", "code": 500}}\n\n'
                    )
                    await send_body(send, b"data: [DONE]\n\n")
                    await finish(send)
                    finished = True
                    return
                if i == script.close_after:
                    finished = True  # on purpose, not a cancellation
                    raise ScriptedAbort("scripted abrupt close")
                if i == script.stall_after:
                    await asyncio.wait([gone], timeout=script.stall_seconds)
                    if gone.done():
                        return
                if i == script.end_without_done_after:
                    await finish(send)
                    finished = True
                    return
                entry = {"token": f"tok{i} ", "logprob": -0.5, "bytes": None, "top_logprobs": []}
                entry["top_logprobs"] = [
                    {"token": f"alt{j}", "logprob": -1.0 - j, "bytes": None} for j in range(top or 0)
                ]
                await data({"content": f"tok{i} "}, **({"logprobs": {"content": [entry]}} if top is not None else {}))
            if call:
                arguments = json.dumps(call.get("arguments") or {})
                half = len(arguments) // 2
                head = {"index": 0, "id": "call_standin", "type": "function"}
                await data({"tool_calls": [{**head, "function": {"name": call["name"], "arguments": ""}}]})
                for piece in (arguments[:half], arguments[half:]):
                    await data({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                count, reason = 3, "tool_calls"
            await data({}, reason)
            if script.usage and (payload.get("stream_options") or {}).get("include_usage"):
                completion = count + script.reasoning_tokens
                usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
                line = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "choices": [], "usage": usage}
                await send_body(send, b"data: " + json.dumps(line).encode() + b"\n\n")
            await send_body(send, b"data: [DONE]\n\n")
            await finish(send)
            finished = True
        except OSError:
            pass  # the client went away mid-stream
        finally:
            gone.cancel()
            stats.open_generations -= 1
            stats.completed += finished
            stats.cancelled += not finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(OpenAIStandIn(), host=args.host, port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
