"""The OpenAI chat-completions wire, as an upstream speaks it: the request body an engine accepts
(vLLM, SGLang, llama.cpp's llama-server, llama-cpp-python's server), its SSE `data:` lines, tool
calls that arrive in pieces, and its error bodies.

Only what the neutral request carries is sent, and every field is standard OpenAI but `top_k`, which
all four engines take as an extension. Nothing is refused here: an engine that rejects a field says
so with a 400 that names it, and that answer is passed on.
"""

from __future__ import annotations

import json
from typing import Any

from llm_runner.core.events import LENGTH, STOP
from llm_runner.core.request import GenerationRequest, Message, ToolCall
from llm_runner.upstream.base import function_tools, sampling
from llm_runner.upstream.ollama_wire import kind_of, tool_call

# How an image's base64 text starts, per type: the core keeps bytes only, OpenAI wants a data: URL.
_IMAGE_MAGIC = {"iVBOR": "image/png", "/9j/": "image/jpeg", "R0lG": "image/gif", "UklGR": "image/webp"}


def chat_body(served: str, request: GenerationRequest, think_off: bool) -> dict[str, Any]:
    """The /v1/chat/completions body. `stream_options.include_usage` asks for the exact usage in a
    last chunk (vLLM, SGLang and llama-server send it; an engine that ignores it is counted).
    `max_tokens` goes as asked, or not at all: an engine keeps to its own context (vLLM refuses a
    max_tokens past it, so the runner's LLM_RUNNER_NUM_CTX, Ollama's context, must not be sent).
    `think_off` passes `enable_thinking: false` to the chat template, as vLLM, SGLang and
    llama-server document for Qwen3-style models (a template without it ignores it)."""
    body: dict[str, Any] = {
        "model": served,
        "messages": openai_messages(request.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    body |= sampling(request)
    if request.output_format == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(request.output_format, dict):
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": request.output_format, "strict": True},
        }
    if request.tools:
        body["tools"] = function_tools(request.tools)
    if request.top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    if think_off:
        body["chat_template_kwargs"] = {"enable_thinking": False}
    return body


def openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The core's messages back in OpenAI's shape. The core keeps a tool result's function name, not
    the call's id: the id is that of the latest earlier call to the same function."""
    ids: dict[str, str] = {}
    out = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.images:
            item["content"] = [
                *([{"type": "text", "text": message.content}] if message.content else []),
                *({"type": "image_url", "image_url": {"url": _data_url(image)}} for image in message.images),
            ]
        if message.tool_calls:
            item["tool_calls"] = [_call_json(call) for call in message.tool_calls]
            ids.update((call.name, call.id) for call in message.tool_calls)
        if message.role == "tool" and message.tool_name:
            item["tool_call_id"] = ids.get(message.tool_name, message.tool_name)
        out.append(item)
    return out


def _call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _data_url(image: str) -> str:
    kind = next((t for magic, t in _IMAGE_MAGIC.items() if image.startswith(magic)), "image/png")
    return f"data:{kind};base64,{image}"


class ToolCallParts:
    """Streamed tool calls: OpenAI sends each call's id and name once, then its arguments in pieces,
    keyed by index. The core wants whole calls, so they are joined and handed over at the end."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, parts: list[dict[str, Any]]) -> None:
        for part in parts:
            call = self._calls.setdefault(int(part.get("index") or 0), {"id": "", "name": "", "arguments": ""})
            function = part.get("function") or {}
            call["id"] = part.get("id") or call["id"]
            call["name"] += function.get("name") or ""
            arguments = function.get("arguments")
            call["arguments"] += arguments if isinstance(arguments, str) else json.dumps(arguments or {})

    def calls(self) -> list[ToolCall]:
        return [
            tool_call({"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"] or "{}"}})
            for _, c in sorted(self._calls.items())
        ]


def finish_of(reason: str | None) -> str:
    """OpenAI's finish_reason as the core's end: `length` is LENGTH; stop, tool_calls and the rest
    are STOP (the face says tool_calls itself when the generation made calls)."""
    return LENGTH if reason == "length" else STOP


def describe_status(url: str, name: str, status: int, message: str) -> str:
    """An engine's refusal of a generation, with what fixes it when that is known."""
    if status == 404:
        return f"the engine at {url} does not serve {name} ({message}); the runner checks its /v1/models again"
    if kind_of(status, message) == "oom":
        return (
            f"the engine at {url} ran out of memory for {name}: {message} (try a smaller model, a shorter "
            "context (vLLM: --max-model-len) or fewer parallel requests)"
        )
    return f"engine at {url} answered {status}: {message}"


def error_message(body: bytes, status: int) -> str:
    """The message of an OpenAI error body (`{"error": {"message"}}`, `{"error": "..."}`), of a
    FastAPI one (`{"detail": ...}`), or the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip() or f"HTTP {status}"
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message") or json.dumps(error)
        if error:
            return error if isinstance(error, str) else json.dumps(error)
    return body.decode(errors="replace")


def listed_models(body: bytes) -> dict[str, dict[str, Any]]:
    """/v1/models: each listed model by its id."""
    data = json.loads(body)
    return {str(m.get("id")): m for m in data.get("data") or () if isinstance(m, dict)}
