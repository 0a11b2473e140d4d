"""OpenAI Responses API wire types (`POST /v1/responses`), and their translation into the core's
request, stateless: nothing is stored, so `store: true` and `previous_response_id` are refused
by name; a conversation is carried by the client in `input`, earlier outputs included.

As on chat completions, every field is honoured or refused with a 400 naming its path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, StrictBool, Tag

from llm_runner.core.events import split_thinking
from llm_runner.core.request import GenerationRequest, Message
from llm_runner.openai.messages import Strict, given, image_data, refuse


class InputPart(Strict):
    """A content part; each type reads its own key (`text`, `image_url`, `refusal`)."""

    type: str
    text: str | None = None
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None
    file_id: str | None = None
    refusal: str | None = None
    annotations: list[dict[str, Any]] | None = None  # on an earlier output_text
    logprobs: list[dict[str, Any]] | None = None  # on an earlier output_text: what was returned


class MessageItem(Strict):
    """An input message, or an earlier output message sent back (with its `id` and `status`)."""

    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputPart]
    id: str | None = None
    status: str | None = None


class OtherItem(Strict):
    """Any other item (function calls and outputs, reasoning, references): refused by its type."""

    model_config = ConfigDict(extra="allow")
    type: str


def _item_kind(item: Any) -> str:
    kind = item.get("type", "message") if isinstance(item, dict) else getattr(item, "type", "message")
    return "message" if kind in ("message", None) else "other"


Item = Annotated[
    Annotated[MessageItem, Tag("message")] | Annotated[OtherItem, Tag("other")],
    Discriminator(_item_kind),
]


class TextFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(Strict):
    format: TextFormat | None = None
    verbosity: str | None = None


class Reasoning(Strict):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesStreamOptions(Strict):
    include_obfuscation: bool = False


class ResponseRequest(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str
    input: str | list[Item]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stream: StrictBool | None = False
    stream_options: ResponsesStreamOptions | None = None
    text: TextConfig | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None  # echoed on the response
    user: str | None = None  # no effect on output at OpenAI either: accepted
    safety_identifier: str | None = None  # likewise
    prompt_cache_key: str | None = None  # likewise (Ollama reuses a matching prefix by itself)
    service_tier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    parallel_tool_calls: bool | None = None  # no tools here: asks nothing
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    reasoning: Reasoning | None = None
    include: list[str] | None = None
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None


_NOT_HERE = {
    "previous_response_id": "responses are not stored (send the conversation in input)",
    "conversation": "conversations are not stored (send them in input)",
    "prompt": "no stored prompts",
    "tools": "no tools on /v1/responses yet (use /v1/chat/completions)",
    "max_tool_calls": "no tools on /v1/responses yet",
    "include": "nothing extra to include",
    "top_logprobs": "no logprobs on /v1/responses yet (use /v1/chat/completions)",
}


def check_supported(req: ResponseRequest) -> None:
    """Refuse, naming it, every field that asks what the runner cannot do."""
    for name, why in _NOT_HERE.items():
        if given(getattr(req, name)):
            raise refuse(name, why)
    if req.store:
        raise refuse("store", "responses are not stored (send store: false)")
    if req.background:
        raise refuse("background", "responses are answered in the request")
    if req.tool_choice not in (None, "auto", "none"):
        raise refuse("tool_choice", "no tools on /v1/responses yet")
    if req.truncation == "auto":
        raise refuse("truncation", "the context is never cut by the runner")
    if req.service_tier not in (None, "auto", "default"):
        raise refuse("service_tier", "one tier only")
    if req.stream_options is not None and req.stream_options.include_obfuscation:
        raise refuse("stream_options.include_obfuscation", "events carry no obfuscation padding")
    if req.reasoning is not None:
        for name in ("effort", "summary", "generate_summary"):
            if getattr(req.reasoning, name) is not None:
                raise refuse(f"reasoning.{name}", "reasoning is the model's own (LLM_RUNNER_THINK)")
    if req.text is not None and req.text.verbosity is not None:
        raise refuse("text.verbosity", "no such feature upstream")


def to_generation(req: ResponseRequest, model_id: str) -> GenerationRequest:
    check_supported(req)
    messages = [Message("system", req.instructions)] if req.instructions else []
    items = [MessageItem(role="user", content=req.input)] if isinstance(req.input, str) else req.input
    messages += [_message(item, n) for n, item in enumerate(items)]
    return GenerationRequest(
        model_id=model_id,
        messages=messages,
        stream=bool(req.stream),
        max_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        output_format=_output_format(req.text),
        face="openai",
    )


def _message(item: MessageItem | OtherItem, n: int) -> Message:
    if isinstance(item, OtherItem):
        raise refuse(f"input.{n}.type", f"{item.type} items are not supported (messages only)")
    if isinstance(item.content, str):
        text, images = item.content, ()
    else:
        text, images = _parts(item.content, n)
    role = "system" if item.role == "developer" else item.role
    thinking, text = split_thinking(text) if role == "assistant" else ("", text)
    return Message(role, text, images, thinking=thinking)


# The keys each part type reads; any other key given on it is refused.
_READS = {
    "input_text": {"text"},
    "output_text": {"text", "annotations", "logprobs"},
    "refusal": {"refusal"},
    "input_image": {"image_url", "detail", "file_id"},
}


def _parts(parts: list[InputPart], n: int) -> tuple[str, tuple[str, ...]]:
    texts: list[str] = []
    images: list[str] = []
    for number, part in enumerate(parts):
        param = f"input.{n}.content.{number}"
        if given(part.annotations):
            raise refuse(f"{param}.annotations", "Ollama messages carry no citations")
        if part.type not in _READS:
            raise refuse(f"{param}.type", "input_text, output_text, refusal and input_image parts only")
        stray = [k for k in part.model_fields_set - _READS[part.type] - {"type"} if given(getattr(part, k))]
        if stray:
            raise refuse(f"{param}.{stray[0]}", f"a {part.type} part has no {stray[0]}")
        if given(part.file_id):
            raise refuse(f"{param}.file_id", "no stored files (send the image as a data URL)")
        if part.type == "input_image":
            images.append(image_data(part.image_url or "", f"{param}.image_url"))
        else:
            texts.append((part.refusal or "") if part.type == "refusal" else (part.text or ""))
    return "".join(texts), tuple(images)


def _output_format(text: TextConfig | None) -> str | dict[str, Any] | None:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if not fmt.schema_:
        raise refuse("text.format.schema", "json_schema needs a schema")
    return fmt.schema_
