"""The neutral generation request: every face translates its wire type into it, every upstream
takes it. No face owns it, so a parameter one face knows is never lost on the way to another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None  # JSON schema of the arguments


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str = ""
    images: tuple[str, ...] = ()  # base64-encoded image bytes
    tool_calls: tuple[ToolCall, ...] = ()
    tool_name: str | None = None  # role=tool: the function whose result this is
    thinking: str = ""  # role=assistant: the reasoning the model gave before this earlier answer


@dataclass(slots=True)
class GenerationRequest:
    """What to generate. `None` means "the model's own default" (the upstream sends nothing)."""

    model_id: str
    messages: list[Message]
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    output_format: str | dict[str, Any] | None = None  # "json", or a JSON schema
    tools: tuple[Tool, ...] = ()
    top_logprobs: int | None = None  # None: no logprobs; n: the chosen token and n alternatives
    face: str = ""  # which face asked ("livepeer", "openai"), for the summary line and metrics
    session: str = ""  # Livepeer-Session-Id when an orchestrator proxied the call
    request_id: str = ""  # set by the generation loop when it takes the request: its receipt's id
    labels: dict[str, str] = field(default_factory=dict)

    def prompt_chars(self) -> int:
        return sum(len(m.content) + len(m.thinking) for m in self.messages)


def model_slug(model_id: str) -> str:
    """Path-safe form of an HF id, for the per-model prefix `/models/<slug>/`."""
    return model_id.replace("/", "--")


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model this runner serves: the HF id clients name, and the upstream's tag for it."""

    model_id: str
    tag: str

    @property
    def slug(self) -> str:
        return model_slug(self.model_id)
