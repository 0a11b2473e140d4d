"""OpenAI chat-completions wire types, and their translation into the core's request.

Every parameter of the API is either honoured or refused with a 400 naming it; nothing is
silently dropped (docs/openai-api.md has the table). Unknown fields are refused too, as OpenAI does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictBool

from llm_runner.core.errors import Unsupported
from llm_runner.core.request import GenerationRequest, Tool
from llm_runner.openai.messages import ChatMessage, Strict, refuse, to_messages


class FunctionDef(Strict):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(Strict):
    type: Literal["function"]
    function: FunctionDef


class JSONSchemaFormat(Strict):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class ChosenFunction(Strict):
    name: str


class ToolChoice(Strict):
    type: Literal["function"]
    function: ChosenFunction


class StreamOptions(Strict):
    include_usage: bool = False
    include_obfuscation: bool = False  # true asks for padding fields on chunks: refused


class ChatCompletionRequest(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)  # not OpenAI's, but vLLM's and common
    n: int | None = Field(None, ge=1)
    stream: StrictBool | None = False  # "yes" or 1 is a mistake to name, not a choice to guess
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoice | None = None
    parallel_tool_calls: bool | None = None  # false: only the first call is passed on
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    user: str | None = None  # no effect on output at OpenAI either: accepted
    safety_identifier: str | None = None  # likewise
    prompt_cache_key: str | None = None  # likewise (Ollama reuses a matching prefix by itself)
    metadata: dict[str, str] | None = None  # only meaningful with store, which is refused
    store: bool | None = None
    service_tier: str | None = None
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None


def check_supported(chat: ChatCompletionRequest) -> None:
    """Refuse, naming the parameter, everything that would change the answer and cannot be done."""
    if chat.n not in (None, 1):
        raise refuse("n", "one choice per request (send several requests)")
    if chat.logit_bias:
        raise refuse("logit_bias", "Ollama has no logit bias")
    if chat.audio is not None or (chat.modalities and set(chat.modalities) - {"text"}):
        raise refuse("audio" if chat.audio is not None else "modalities", "text output only")
    for name in ("prediction", "reasoning_effort", "verbosity", "web_search_options", "functions", "function_call"):
        if getattr(chat, name) is not None:
            hint = " (use tools)" if name.startswith("function") else ""
            raise refuse(name, f"no such feature upstream{hint}")
    if chat.store:
        raise refuse("store", "completions are not stored")
    if chat.service_tier not in (None, "auto", "default"):
        raise refuse("service_tier", "one tier only")
    if chat.stream_options is not None and chat.stream_options.include_obfuscation:
        raise refuse("stream_options.include_obfuscation", "chunks carry no obfuscation padding")
    if chat.top_logprobs is not None and not chat.logprobs:
        raise refuse("top_logprobs", "needs logprobs: true")


def forced_tool(chat: ChatCompletionRequest) -> ToolDef | None:
    """The tool a `tool_choice` forces, if any. Ollama cannot force a call, so the runner does it
    with structured output: the model must answer with that function's arguments."""
    choice, tools = chat.tool_choice, chat.tools or []
    if not isinstance(choice, ToolChoice):
        if choice != "required":
            return None
        if len(tools) == 1:
            return tools[0]
        raise refuse("tool_choice", "'required' needs exactly one tool (or name the function)")
    name = choice.function.name
    for tool in tools:
        if tool.function.name == name:
            return tool
    raise Unsupported(f"tool_choice names {name!r}, which is not in tools", param="tool_choice")


def to_generation(chat: ChatCompletionRequest, model_id: str) -> GenerationRequest:
    check_supported(chat)
    forced = forced_tool(chat)
    tools = () if forced or chat.tool_choice == "none" else tuple(_tool(t) for t in chat.tools or ())
    output_format: str | dict[str, Any] | None = None
    if forced is not None:
        output_format = forced.function.parameters or {"type": "object"}
    elif chat.response_format is not None and chat.response_format.type != "json_schema":
        if chat.response_format.json_schema is not None:
            raise refuse("response_format.json_schema", f"a {chat.response_format.type} format has no schema")
        output_format = "json" if chat.response_format.type == "json_object" else None
    elif chat.response_format is not None:  # json_schema
        spec = chat.response_format.json_schema
        if spec is None or not spec.schema_:
            raise Unsupported("response_format.json_schema.schema is required", param="response_format")
        output_format = spec.schema_
    stop = (chat.stop,) if isinstance(chat.stop, str) else tuple(chat.stop or ())
    return GenerationRequest(
        model_id=model_id,
        messages=to_messages(chat.messages),
        stream=bool(chat.stream),
        max_tokens=chat.max_completion_tokens or chat.max_tokens,
        temperature=chat.temperature,
        top_p=chat.top_p,
        top_k=chat.top_k or None,
        seed=chat.seed,
        stop=stop,
        frequency_penalty=chat.frequency_penalty,
        presence_penalty=chat.presence_penalty,
        output_format=output_format,
        tools=tools,
        top_logprobs=(chat.top_logprobs or 0) if chat.logprobs else None,
        face="openai",
    )


def _tool(tool: ToolDef) -> Tool:
    return Tool(tool.function.name, tool.function.description, tool.function.parameters)
