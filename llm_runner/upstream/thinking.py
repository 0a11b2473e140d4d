"""A thinking model's reasoning, folded into the text stream as `<think>…</think>` (or hidden with
LLM_RUNNER_THINK=hide). Ollama sends it as `message.thinking`, OpenAI engines as
`delta.reasoning_content` (or `reasoning`); both upstreams fold it here, the same way."""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>\n\n"


class ThinkFolder:
    """One generation's state: whether a `<think>` block is open."""

    __slots__ = ("hide", "open")

    def __init__(self, hide: bool) -> None:
        self.hide, self.open = hide, False

    def fold(self, thought: str | None, text: str, done: bool) -> str:
        """The delta to pass on for one chunk's reasoning and text (`done`: the last chunk).
        Callers skip it when there is neither a thought nor an open block (the hot path)."""
        if thought:
            if self.hide:
                return ""
            text = thought if self.open else THINK_OPEN + thought
            self.open = True
            return text
        if self.open and (text or done):
            self.open = False
            return THINK_CLOSE + text
        return text
