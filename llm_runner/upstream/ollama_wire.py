"""Ollama's wire format: NDJSON lines, messages and tool calls, error bodies and their kinds."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from llm_runner.core.request import Message, ToolCall
from llm_runner.upstream.http1 import HTTP1Error, Response


def ollama_message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        out["images"] = list(message.images)
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": _arguments(c.arguments)}} for c in message.tool_calls
        ]
    if message.tool_name:
        out["tool_name"] = message.tool_name
    if message.thinking:
        out["thinking"] = message.thinking
    return out


def _arguments(text: str) -> Any:
    """OpenAI carries arguments as JSON text, Ollama as an object."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


def tool_call(call: dict[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    return ToolCall(
        id=call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        name=str(function.get("name", "")),
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
    )


async def drain(response: Response, limit_s: float = 1.0) -> None:
    """Read the (empty) rest of a finished stream, at most `limit_s` in all, so the connection goes
    back to the pool. Usually the body's end came with the final line and nothing is waited for."""
    if response.complete:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    try:
        while (left := deadline - loop.time()) > 0 and await response.next_chunk(left):
            pass
    except HTTP1Error:
        pass  # the connection is simply closed instead


def error_text(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body).get("error") or body.decode(errors="replace"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace") or f"HTTP {status}"


def kind_of(status: int, message: str) -> str:
    lowered = message.lower()
    if "out of memory" in lowered or "cudamalloc" in lowered or "unable to allocate" in lowered:
        return "oom"
    if status == 404:
        return "not_found"
    if status >= 500 or status == -1:
        return "upstream_5xx"
    return "upstream_4xx"


def describe_status(tag: str, status: int, message: str) -> str:
    if status == 404:
        return f"model {tag} is not in Ollama ({message}); it is being pulled, or run `llm-runner pull`"
    if kind_of(status, message) == "oom":
        return f"Ollama ran out of memory for {tag}: {message} (try a smaller model or LLM_RUNNER_NUM_CTX)"
    return f"Ollama answered {status} for {tag}: {message}"


def short_tag(name: str) -> str:
    """A tag as Ollama displays it in /api/ps (`DisplayShortest`): no default registry or namespace,
    no `:latest`, so a served tag and a loaded one compare equal."""
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name.removesuffix(":latest")
