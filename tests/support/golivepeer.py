"""Read an SSE body exactly as go-livepeer's `handleStreamingResponse` does, and check every rule.

go-livepeer splits the body on `\\n` with a bufio.Scanner (64 KiB max line), strips a leading
`data: ` (exactly, with the space), skips empty lines, treats `[DONE]` as a sentinel but keeps
reading until EOF, and json.Unmarshals every other line into LLMResponse. Downstream it indexes
`choices[0].finish_reason` with no length check and stops at the first non-empty finish_reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 64 * 1024


@dataclass
class LivepeerStream:
    chunks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        return self.chunks[-1]

    @property
    def finish_reason(self) -> str:
        return self.final["choices"][0]["finish_reason"]

    @property
    def text(self) -> str:
        return "".join(c["choices"][0]["delta"]["content"] for c in self.chunks)

    @property
    def usage(self) -> dict[str, int]:
        return self.final["usage"]


def parse_livepeer_stream(body: bytes, model_id: str | None = None) -> LivepeerStream:
    """Parse and check a complete /llm SSE body; AssertionError names the first broken rule."""
    stream = LivepeerStream()
    done_seen = False
    lines = body.split(b"\n")
    assert body.endswith(b"\n\n"), "body must end with a blank line after the last event"
    for raw in lines:
        assert len(raw) < MAX_LINE, f"line of {len(raw)} bytes exceeds bufio.Scanner's 64 KiB"
        assert not raw.endswith(b"\r"), "CRLF separators: go-livepeer would miss [DONE]"
        line = raw.decode()
        if line.startswith("data: "):
            line = line[len("data: ") :]
        if not line:
            continue
        assert not done_seen, f"data after [DONE]: {line!r}"
        if line == "[DONE]":
            done_seen = True
            continue
        assert not line.startswith((":", "event:", "id:", "retry:")), f"non-data SSE line: {line!r}"
        chunk = json.loads(line)  # a line go-livepeer cannot parse would be logged and dropped
        assert isinstance(chunk, dict), f"chunk is not an object: {line!r}"
        assert "error" not in chunk, f"bare error payload: {line!r}"
        choices = chunk.get("choices")
        assert isinstance(choices, list) and choices, f"chunk without choices panics go-livepeer: {line!r}"
        assert len(choices) == 1 and choices[0].get("index") == 0, f"exactly one choice expected: {line!r}"
        assert stream.chunks == [] or stream.chunks[-1]["choices"][0]["finish_reason"] in ("", None), (
            "a chunk after the finish chunk would never reach the gateway"
        )
        for key, kind in (("id", str), ("model", str), ("created", int), ("usage", dict)):
            assert isinstance(chunk.get(key), kind), f"{key} missing or not {kind.__name__}: {line!r}"
        usage = chunk["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], line
        delta = choices[0].get("delta")
        assert isinstance(delta, dict) and isinstance(delta.get("content"), str), f"chunk without delta: {line!r}"
        if stream.chunks:
            assert chunk["id"] == stream.chunks[0]["id"], "id must be the same on every chunk"
            previous = stream.chunks[-1]["usage"]["completion_tokens"]
            assert usage["completion_tokens"] >= previous, "usage must be cumulative"
        if model_id is not None:
            assert chunk["model"] == model_id, f"model must echo the HF id {model_id!r}, got {chunk['model']!r}"
        stream.chunks.append(chunk)
    assert stream.chunks, "no chunks at all"
    assert stream.finish_reason not in ("", None), "no final chunk with a non-empty finish_reason"
    assert done_seen, "missing data: [DONE]"
    return stream
