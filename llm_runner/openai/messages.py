"""OpenAI chat messages on the wire, and their translation into the core's messages.

A conversation comes back as the client got it: an assistant answer appended to `messages` holds
every field of OpenAI's response message (`refusal: null`, `annotations: []`, `audio: null`, a
reasoning field from servers that return one). Fields that carry nothing are accepted; a field
that carries something is honoured, or refused with a 400 naming it, never dropped.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from llm_runner.core.errors import BadRequest, Unsupported
from llm_runner.core.events import split_thinking
from llm_runner.core.request import Message, ToolCall


class Strict(BaseModel):
    """Every wire object refuses keys it does not know (pydantic names their path), as the top
    level does: a nested key is a parameter like any other."""

    model_config = ConfigDict(extra="forbid")


def refuse(param: str, why: str) -> Unsupported:
    return Unsupported(f"{param} is not supported by this runner: {why}", param=param)


def given(value: object) -> bool:
    """Whether a field asks anything: null, "", [] and {} do not."""
    return value is not None and value != "" and value != [] and value != {}


class ImageURL(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(Strict):
    """One part; each type reads the key named like it (`text`, `image_url`, `refusal`, ...)."""

    type: str
    text: str | None = None
    image_url: ImageURL | None = None
    refusal: str | None = None
    input_audio: dict[str, Any] | None = None
    file: dict[str, Any] | None = None


class FunctionCall(Strict):
    name: str
    arguments: str = ""
    parsed_arguments: Any = None  # the openai SDK's `.parse()` copy of `arguments`: nothing new


class ToolCallIn(Strict):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    index: int | None = None  # kept by clients that add up streamed deltas; the list's order rules


class ChatMessage(Strict):
    """One message: OpenAI's request message fields, and those of its response message so that an
    answer can be sent back as it came."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None  # an earlier answer's refusal text: kept as its content
    function_call: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    annotations: list[dict[str, Any]] | None = None
    reasoning_content: str | None = None  # DeepSeek, vLLM, LiteLLM: an earlier turn's reasoning
    reasoning: str | None = None  # Ollama's own /v1, OpenRouter, Groq, newer vLLM: the same
    parsed: Any = None  # the openai SDK's `.parse()` copy of `content`: nothing new


def to_messages(messages: list[ChatMessage]) -> list[Message]:
    names: dict[str, str] = {}  # tool_call_id → function name, for tool results
    out: list[Message] = []
    for index, m in enumerate(messages):
        _check(m, index)
        text, images = _content(m.content, index)
        text = "\n\n".join(t for t in (text, m.refusal) if t)
        calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ())
        names.update((c.id, c.name) for c in calls)
        role = "system" if m.role == "developer" else m.role
        tool_name = (names.get(m.tool_call_id or "") or m.name) if m.role == "tool" else None
        thinking = _thinking(m, index)
        if role == "assistant" and not thinking:
            thinking, text = split_thinking(text)  # this runner's own inline form, sent back
        out.append(Message(role, text, images, calls, tool_name, thinking))
    return out


def _check(m: ChatMessage, index: int) -> None:
    """Refuse the message fields that ask for what Ollama cannot do."""
    if given(m.function_call):
        raise refuse(f"messages.{index}.function_call", "use tool_calls")
    if given(m.audio):
        raise refuse(f"messages.{index}.audio", "text only; audio answers cannot be sent back")
    if given(m.annotations):
        raise refuse(f"messages.{index}.annotations", "Ollama messages carry no citations")
    if m.content is None and m.role != "assistant":  # only an answer may be all tool calls or refusal
        raise BadRequest(
            f"messages.{index}.content: a {m.role} message needs content", param=f"messages.{index}.content"
        )
    if m.name is not None and m.role != "tool":
        raise refuse(f"messages.{index}.name", "Ollama has no participant names")


def _thinking(m: ChatMessage, index: int) -> str:
    """An earlier assistant turn's reasoning, for Ollama's `thinking` on that message."""
    held = {name: text for name in ("reasoning_content", "reasoning") if (text := getattr(m, name))}
    if held and m.role != "assistant":
        raise refuse(f"messages.{index}.{next(iter(held))}", "only assistant turns carry reasoning")
    if len(set(held.values())) > 1:
        raise refuse(f"messages.{index}.reasoning", "it differs from reasoning_content (send one)")
    return next(iter(held.values()), "")


def _content(content: str | list[ContentPart] | None, index: int) -> tuple[str, tuple[str, ...]]:
    if content is None or isinstance(content, str):
        return content or "", ()
    texts: list[str] = []
    images: list[str] = []
    for number, part in enumerate(content):
        stray = [key for key in part.model_fields_set - {"type", part.type} if given(getattr(part, key))]
        if stray:
            raise refuse(f"messages.{index}.content.{number}.{stray[0]}", f"a {part.type} part has no {stray[0]}")
        if part.type in ("text", "refusal"):
            texts.append(part.text or part.refusal or "")
        elif part.type == "image_url" and part.image_url is not None:
            images.append(image_data(part.image_url.url, f"messages.{index}.content.image_url"))
        else:
            raise refuse(f"messages.{index}.content.{part.type}", "text and image_url parts only")
    return "".join(texts), tuple(images)


def image_data(url: str, param: str) -> str:
    """Base64 image bytes from a data: URL (the runner fetches nothing from the network)."""
    head, _, data = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        raise Unsupported(f"{param}: only data:image/...;base64 URLs are accepted", param=param)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Unsupported(f"{param}: the base64 data is invalid", param=param) from None
    return data
