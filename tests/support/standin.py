"""A scripted Ollama stand-in: a real HTTP server speaking Ollama's documented API.

Responses follow Ollama's `docs/api.md`: `/api/chat` NDJSON (chunks with `message`, final chunk
with `done`, `done_reason`, `prompt_eval_count`, `eval_count` and durations in nanoseconds),
`stream:false`, model load with empty `messages` (`done_reason: "load"`), `/api/show`,
`/api/tags`, `/api/pull` progress stream (errors in-stream with HTTP 200), `/api/ps`,
`/api/version`, and `{"error": "..."}` bodies (404 for an unknown model).

The answer follows the request as Ollama's does: `options.num_predict` caps it (`done_reason:
"length"`), `options.stop` cuts it before the first stop string, `format` (`"json"` or a JSON
schema) makes it valid JSON (for a schema, a minimal instance of it) streamed over several chunks,
`tools` with the `tool_call` knob set make it a `message.tool_calls` chunk (arguments an object),
and `logprobs` adds per-chunk `logprobs` entries (`token`, `logprob`, `bytes`, `top_logprobs`).
A model without the `tools` capability refuses `tools` with a 400, as Ollama does.

Knobs (POST /_control, JSON) script token count and rate, the answer, delays, failures (HTTP
status, an error line mid-stream, an abrupt close, a stream that ends without `done`), and GET
/_stats exposes counters: open generations, how many were cancelled by the client, and the
request bodies seen.

Run: python -m tests.support.standin --port 11434
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn

from tests.support.standin_gpu import GPU, keep_alive_seconds

NDJSON = [(b"content-type", b"application/x-ndjson")]
JSON = [(b"content-type", b"application/json")]


# What Ollama's library reports for the tags tests use ([family, size, count, context, quantisation]);
# any other tag is reported as Llama 3.1 8B.
LLAMA_8B = ["llama", "8.0B", 8030261248, 131072, "Q4_K_M"]
IDENTITIES = {"qwen2.5:7b": ["qwen2", "7.6B", 7615616512, 32768, "Q4_K_M"]}


@dataclass
class Script:
    models: list[str] = field(default_factory=lambda: ["llama3.1:8b"])
    capabilities: list[str] = field(default_factory=lambda: ["completion", "tools"])
    tokens: int = 12  # tokens per generation (capped by num_predict): "tok0 ", "tok1 ", ...
    answer: str | None = None  # answer with this text instead (one chunk per word), `format` or not
    # with `tools` in the request: answer with these calls, Ollama's shape (arguments an object),
    # {"name": ..., "arguments": {...}} or a list of them; an "id" key is passed on as newer Ollamas do
    tool_call: dict[str, Any] | list[dict[str, Any]] | None = None
    token_rate: float = 0.0  # tokens per second; 0 = as fast as possible
    first_token_delay: float = 0.0  # seconds before headers + first token (a model load)
    thinking_tokens: int = 0  # thinking chunks before the answer (thinking models)
    chat_status: int = 200  # non-200: answer /api/chat with this status and chat_error
    chat_error: str = "model runner has unexpectedly stopped"
    error_after: int | None = None  # send {"error": ...} after N tokens
    close_after: int | None = None  # drop the connection after N tokens
    end_without_done_after: int | None = None  # end the body cleanly after N tokens, no done line
    stall_after: int | None = None  # go silent for stall_seconds after N tokens
    stall_seconds: float = 0.0
    warm_delay: float = 0.0
    pull_fail: str | None = None  # in-stream pull error message
    pull_delay: float = 0.0  # seconds per pull progress step
    version: str = "0.12.6"
    # A GPU with a VRAM budget, scheduled as Ollama's sched.go (tests/support/standin_gpu.py); 0: off, every
    # model counts as loaded. Sizes per tag in MB (default 5600), loads take load_seconds, a partly
    # offloaded model is offload_slowdown times slower, `wedged` hangs generations and loads.
    vram_mb: int = 0
    model_vram_mb: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0
    offload_slowdown: float = 5.0
    max_loaded: int = 0  # OLLAMA_MAX_LOADED_MODELS (0: 3 per GPU)
    wedged: bool = False
    # tag → [family, parameter_size, parameter_count, context_length, quantization_level]: what
    # /api/show and /api/tags report (a tag that drifted to other weights); see IDENTITIES
    identities: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Stats:
    open_generations: int = 0
    max_open: int = 0
    started: int = 0
    completed: int = 0
    cancelled: int = 0
    warmups: int = 0
    pulls: int = 0
    shows: int = 0
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)


class StandIn:
    def __init__(self) -> None:
        self.script = Script()
        self.stats = Stats()
        self.gpu = GPU(self)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        payload = await read_request(scope, receive, send)
        if payload is None:
            return
        method, path = scope["method"], scope["path"]
        routes = {
            ("GET", "/api/version"): self.version,
            ("GET", "/"): self.root,
            ("HEAD", "/"): self.root,
            ("GET", "/api/tags"): self.tags,
            ("GET", "/api/ps"): self.ps,
            ("POST", "/api/show"): self.show,
            ("POST", "/api/pull"): self.pull,
            ("POST", "/api/chat"): self.chat,
            ("POST", "/_control"): self.control,
            ("POST", "/_reset"): self.reset,
            ("GET", "/_stats"): self.get_stats,
        }
        handler = routes.get((method, path))
        if handler is None:
            await reply(send, 404, {"error": "404 page not found"})
            return
        await handler(payload, receive, send)

    # -- management ------------------------------------------------------------------------------

    async def root(self, _: dict, __: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"Ollama is running"})

    async def version(self, _: dict, __: Any, send: Any) -> None:
        await reply(send, 200, {"version": self.script.version})

    def _identity(self, tag: str) -> list[Any]:
        return self.script.identities.get(tag) or IDENTITIES.get(tag) or LLAMA_8B

    def _model_entry(self, tag: str) -> dict[str, Any]:
        family, size, _, _, quantization = self._identity(tag)
        return {
            "name": tag,
            "model": tag,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 4_920_753_328,
            "digest": "46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": family,
                "families": [family],
                "parameter_size": size,
                "quantization_level": quantization,
            },
        }

    async def tags(self, _: dict, __: Any, send: Any) -> None:
        await reply(send, 200, {"models": [self._model_entry(t) for t in self.script.models]})

    async def ps(self, _: dict, __: Any, send: Any) -> None:
        if self.gpu.on:
            models = [{**self._model_entry(r["name"]), **r} for r in self.gpu.ps()]
        else:
            models = [
                {**self._model_entry(t), "expires_at": "2318-01-01T00:00:00Z", "size_vram": 5_000_000_000}
                for t in self.script.models
            ]
        await reply(send, 200, {"models": models})

    async def show(self, payload: dict, _: Any, send: Any) -> None:
        self.stats.shows += 1
        tag = payload.get("model") or payload.get("name")
        if tag not in self.script.models:
            await reply(send, 404, {"error": f"model '{tag}' not found"})
            return
        family, _, count, context, _ = self._identity(tag)
        await reply(
            send,
            200,
            {
                "modelfile": f"FROM {tag}",
                "parameters": 'stop "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": self._model_entry(tag)["details"],
                "model_info": {
                    "general.architecture": family,
                    "general.parameter_count": count,
                    f"{family}.context_length": context,
                },
                "capabilities": self.script.capabilities,
                "modified_at": "2025-01-01T00:00:00Z",
            },
        )

    async def pull(self, payload: dict, _: Any, send: Any) -> None:
        self.stats.pulls += 1
        tag = payload.get("model") or payload.get("name")
        await start(send, 200, NDJSON)
        await chunk(send, {"status": "pulling manifest"})
        if self.script.pull_fail:
            await chunk(send, {"error": self.script.pull_fail})
            await finish(send)
            return
        total = 1_000_000
        for step in range(5):
            await asyncio.sleep(self.script.pull_delay)
            await chunk(
                send,
                {
                    "status": "pulling 6a0746a1ec1a",
                    "digest": "sha256:6a0746a1ec1a",
                    "total": total,
                    "completed": total * (step + 1) // 5,
                },
            )
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            await chunk(send, {"status": status})
        if tag not in self.script.models:
            self.script.models.append(tag)
        await finish(send)

    # -- generation ------------------------------------------------------------------------------

    async def chat(self, payload: dict, receive: Any, send: Any) -> None:
        script, stats = self.script, self.stats
        tag = payload.get("model")
        if tag not in script.models:
            await reply(send, 404, {"error": f"model '{tag}' not found"})
            return
        if not payload.get("messages"):
            stats.warmups += 1
            await asyncio.sleep(script.warm_delay)
            keep_alive = keep_alive_seconds(payload.get("keep_alive"))
            if self.gpu.on and keep_alive == 0:
                self.gpu.unload_now(tag)
                await reply(send, 200, _load_reply(tag, "unload"))
                return
            if self.gpu.on or script.wedged:
                self.gpu.release(await self.gpu.acquire(tag, keep_alive))
            await reply(send, 200, _load_reply(tag))
            return
        stats.chat_bodies = [*stats.chat_bodies[-49:], payload]
        if script.chat_status != 200:
            await reply(send, script.chat_status, {"error": script.chat_error})
            return
        refusal = self._refusal(payload)
        if refusal:
            await reply(send, 400, {"error": refusal})
            return
        pieces, calls, reason = self._answer(payload)
        count = len(pieces)
        stream = payload.get("stream", True)
        top = int(payload.get("top_logprobs") or 0) if payload.get("logprobs") else None
        prompt_tokens = 10 + sum(len(str(m.get("content", "")).split()) for m in payload["messages"])
        stats.started += 1
        stats.open_generations += 1
        stats.max_open = max(stats.max_open, stats.open_generations)
        finished = False
        # uvicorn drops writes to a closed connection silently, so watch for the disconnect the
        # way Ollama's request context does, and stop at the next token.
        gone = asyncio.create_task(disconnected_within(receive, None))
        runner = None
        try:
            if self.gpu.on or script.wedged:  # Ollama sends no header before the model is loaded
                runner = await _unless_gone(self.gpu.acquire(tag, keep_alive_seconds(payload.get("keep_alive"))), gone)
                if runner is None:
                    return
            token_rate = self.gpu.token_rate(tag, script.token_rate)
            if script.first_token_delay:
                await asyncio.wait([gone], timeout=script.first_token_delay)
            if gone.done():
                return
            if not stream:
                final = _final(tag, reason, prompt_tokens, count)
                final["message"]["content"] = "".join(pieces)
                if calls:
                    final["message"]["tool_calls"] = calls
                if top is not None:
                    final["logprobs"] = [_logprob(i, p, top) for i, p in enumerate(pieces)]
                await reply(send, 200, final)
                finished = True
                return
            await start(send, 200, NDJSON)
            head = f'{{"model":"{tag}","created_at":"2025-01-01T00:00:00Z","message":{{"role":"assistant",'.encode()
            began = time.monotonic()
            for i in range(script.thinking_tokens):
                await send_body(send, head + f'"content":"","thinking":"hmm{i} "}},"done":false}}\n'.encode())
            for i, piece in enumerate(pieces):
                if gone.done():
                    return
                if token_rate:
                    delay = began + (i + 1) / token_rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if i == script.error_after:
                    await send_body(send, b'{"error":"an error was encountered while running the model"}\n')
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
                line = head + b'"content":' + json.dumps(piece).encode() + b'},"done":false'
                if top is not None:
                    line += b',"logprobs":' + json.dumps([_logprob(i, piece, top)]).encode()
                await send_body(send, line + b"}\n")
            if calls:  # Ollama parses the calls out of the model's output and sends them in one chunk
                message = {"role": "assistant", "content": "", "tool_calls": calls}
                await chunk(
                    send, {"model": tag, "created_at": "2025-01-01T00:00:00Z", "message": message, "done": False}
                )
                count += sum(len(_pieces(json.dumps(c["function"]))) for c in calls)
            final = _final(tag, reason, prompt_tokens, script.thinking_tokens + count)  # thinking counts too
            await send_body(send, (json.dumps(final) + "\n").encode())
            await finish(send)
            finished = True
        except OSError:
            pass  # the client went away mid-stream
        finally:
            gone.cancel()
            if runner is not None:
                self.gpu.release(runner)
            stats.open_generations -= 1
            if finished:
                stats.completed += 1
            else:
                stats.cancelled += 1

    def _refusal(self, payload: dict) -> str | None:
        """Ollama's 400s for what the model or the request cannot do."""
        if payload.get("tools") and "tools" not in self.script.capabilities:
            return f'"{payload.get("model")}" does not support tools'
        top = payload.get("top_logprobs")
        if top is not None and not 0 <= int(top) <= 20:
            return "top_logprobs must be between 0 and 20"
        return None

    def _answer(self, payload: dict) -> tuple[list[str], list[dict[str, Any]], str]:
        """The content chunks, the tool calls and the done_reason of one answer."""
        script = self.script
        options = payload.get("options") or {}
        calls: list[dict[str, Any]] = []
        if payload.get("tools") and script.tool_call:
            wanted = script.tool_call if isinstance(script.tool_call, list) else [script.tool_call]
            for want in wanted:
                call: dict[str, Any] = {"function": {"name": want["name"], "arguments": want.get("arguments", {})}}
                if "id" in want:
                    call["id"] = want["id"]
                calls.append(call)
            return [], calls, "stop"
        fmt = payload.get("format")
        if script.answer is not None:  # what the model writes, `format` or not (a test scripts JSON itself)
            pieces = re.findall(r"\S+\s*|\s+", script.answer) or [script.answer]
        elif fmt:
            pieces = _pieces(json.dumps(_json_answer(fmt, script.tokens)))
        else:
            pieces = [f"tok{i} " for i in range(script.tokens)]
        stopped = False
        text = "".join(pieces)
        cuts = [text.find(s) for s in options.get("stop") or () if s and s in text]
        if cuts:
            pieces, stopped = _cut(pieces, min(cuts)), True
        limit = int(options.get("num_predict", -1))
        if limit >= 0 and (limit < len(pieces) or (limit == len(pieces) and not stopped)):
            return pieces[:limit], [], "length"
        return pieces, [], "stop"

    # -- knobs -----------------------------------------------------------------------------------

    async def control(self, payload: dict, _: Any, send: Any) -> None:
        await reply(send, *set_knobs(self.script, payload))

    async def reset(self, _: dict, __: Any, send: Any) -> None:
        self.gpu.close()
        self.script, self.stats, self.gpu = Script(), Stats(), GPU(self)
        await reply(send, 200, {})

    async def get_stats(self, _: dict, __: Any, send: Any) -> None:
        gpu = asdict(self.gpu.stats) | {"loaded": self.gpu.ps()}
        await reply(send, 200, asdict(self.stats) | {"gpu": gpu})


class ScriptedAbort(Exception):
    """Raised mid-stream so the server drops the connection (no done line, no clean end)."""


def _load_reply(tag: str, reason: str = "load") -> dict[str, Any]:
    return {
        "model": tag,
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": reason,
        "done": True,
    }


def _pieces(text: str) -> list[str]:
    """Token-like chunks of a text (words, numbers, punctuation, with their leading space)."""
    return re.findall(r"\s*(?:[\w.+-]+|\S)", text) or [text]


def _cut(pieces: list[str], at: int) -> list[str]:
    """The chunks before character `at`; the chunk holding it is cut short, as Ollama does."""
    out, seen = [], 0
    for piece in pieces:
        if seen + len(piece) > at:
            if at > seen:
                out.append(piece[: at - seen])
            break
        out.append(piece)
        seen += len(piece)
    return out


def _json_answer(fmt: str | dict[str, Any], tokens: int) -> Any:
    """What a model constrained by `format` writes: for "json" an object, for a schema an instance."""
    if isinstance(fmt, dict):
        return instance(fmt, fmt)
    return {"answer": " ".join(f"tok{i}" for i in range(max(1, tokens // 3)))}


def instance(schema: Any, root: dict[str, Any]) -> Any:
    """A small valid instance of a JSON schema (the subset structured output uses)."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if part else target
        return instance(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key) or () if o.get("type") != "null"] or schema.get(key)
        if options:
            return instance(options[0], root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = instance(part, root)
            if isinstance(value, dict):
                merged |= value
            else:
                return value
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return {name: instance(sub, root) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        count = min(count, int(schema.get("maxItems", count)))
        return [instance(schema.get("items") or {"type": "string"}, root) for _ in range(count)]
    if kind == "string":
        formats = {
            "date-time": "2025-01-01T00:00:00Z",
            "date": "2025-01-01",
            "time": "00:00:00",
            "email": "tok@example.com",
            "uri": "https://example.com/",
            "uuid": "00000000-0000-4000-8000-000000000000",
        }
        if schema.get("format") in formats:
            return formats[schema["format"]]
        return "tok".ljust(int(schema.get("minLength", 0)), "o")[: int(schema.get("maxLength", 1 << 30))]
    if kind in ("integer", "number"):
        value = max(1, schema.get("minimum", 1), schema.get("exclusiveMinimum", 0) + 1)
        value = min(value, schema.get("maximum", value), schema.get("exclusiveMaximum", value + 1) - 1)
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {}


def _logprob(index: int, token: str, top: int) -> dict[str, Any]:
    """Ollama's logprobs entry for one generated token (top_logprobs only when asked for)."""
    logprob = -round(0.05 * (index % 7 + 1), 4)
    entry: dict[str, Any] = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
    if top:
        alternatives = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
        alternatives += [
            {"token": f"alt{k}", "logprob": logprob - k, "bytes": list(f"alt{k}".encode())} for k in range(1, top)
        ]
        entry["top_logprobs"] = alternatives
    return entry


def _final(tag: str, reason: str, prompt_tokens: int, eval_count: int) -> dict[str, Any]:
    return {
        "model": tag,
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": reason,
        "done": True,
        "total_duration": 4_883_583_458,
        "load_duration": 1_334_875,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": 342_546_000,
        "eval_count": eval_count,
        "eval_duration": 4_535_599_000,
    }


async def _unless_gone(wait: Any, gone: asyncio.Task[bool]) -> Any:
    """The result of `wait`, or None once the client has gone (a reference granted meanwhile is given back
    by the caller's caller: Ollama's scheduler skips a request whose context ended)."""
    task = asyncio.ensure_future(wait)
    await asyncio.wait([task, gone], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return task.result()
    task.cancel()
    return None


async def disconnected_within(receive: Any, seconds: float | None) -> bool:
    """True once the client has gone (False if `seconds` passed first)."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
            return True
    except TimeoutError:
        return False


def set_knobs(script: Any, knobs: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /_control: 400 naming the unknown knobs (none set), else 200 with the whole script."""
    unknown = sorted(set(knobs) - set(asdict(script)))
    if unknown:
        return 400, {"error": f"unknown knob(s) {', '.join(unknown)}"}
    for key, value in knobs.items():
        setattr(script, key, value)
    return 200, asdict(script)


async def read_request(scope: dict, receive: Any, send: Any) -> dict[str, Any] | None:
    """An ASGI call's JSON body ({} when empty); None for the server's lifespan, answered here."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return None
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return json.loads(body) if body.strip() else {}


async def start(send: Any, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def send_body(send: Any, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def chunk(send: Any, obj: dict[str, Any]) -> None:
    await send_body(send, (json.dumps(obj) + "\n").encode())


async def finish(send: Any) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def reply(send: Any, status: int, obj: dict[str, Any]) -> None:
    await start(send, status, JSON)
    await send({"type": "http.response.body", "body": json.dumps(obj).encode()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    args = parser.parse_args()
    uvicorn.run(StandIn(), host=args.host, port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
