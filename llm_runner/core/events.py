"""What a generation yields: text deltas (plain `str`, one per upstream token, possibly empty),
tool calls, per-token log probabilities, and exactly one `End` with the exact usage.

`str` stays a bare string on purpose: it is the event of the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_runner.core.request import ToolCall

# Every way a generation ends. The first three come from the upstream, the rest from the loop.
STOP, LENGTH, ERROR, CANCELLED, DRAINED = "stop", "length", "error", "cancelled", "drained"
# Ways a request ends before a generation starts (refusals), for the summary line and metrics.
BUSY, UNAVAILABLE, INVALID = "busy", "unavailable", "invalid"


# A thinking model's reasoning, inline in the text before its answer (LLM_RUNNER_THINK=inline).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>\n\n"


def split_thinking(content: str) -> tuple[str, str]:
    """(reasoning, answer) of an earlier answer sent back with its reasoning inline, as this
    runner streams it; ("", content) otherwise. Passed on as the message's reasoning, it reaches
    the model's template as such (most drop it from earlier turns) instead of as tagged words."""
    if not content.startswith(THINK_OPEN):
        return "", content
    thought, closed, answer = content[len(THINK_OPEN) :].partition(THINK_CLOSE.strip())
    return (thought, answer.lstrip("\n")) if closed else ("", content)


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    index: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class Scored:
    """A text delta with its log probabilities (only when the request asked for them)."""

    text: str
    logprobs: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class End:
    reason: str  # STOP | LENGTH | ERROR | CANCELLED | DRAINED
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""  # what went wrong, for ERROR

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


Event = str | Scored | ToolCallEvent | End


def text_of(events: list[Event]) -> str:
    """The answer's text, from the events of a non-streamed generation."""
    return "".join(e if type(e) is str else e.text for e in events if type(e) is str or type(e) is Scored)
