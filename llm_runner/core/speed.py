"""How fast each model really serves, measured on its real requests: decode tokens per second (a
moving average) and the median time to first token over the last requests. Published in /status,
the metrics and a live runner's public metadata, so a gateway can pick by speed that was measured,
not claimed."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

WINDOW = 64  # requests in the TTFT median
ALPHA = 0.2  # weight of the newest request in the tokens/s average


@dataclass
class ModelSpeed:
    tokens_per_s: float | None = None
    ttfts: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    samples: int = 0

    @property
    def ttft_p50_s(self) -> float | None:
        return statistics.median(self.ttfts) if self.ttfts else None


class Speed:
    def __init__(self) -> None:
        self.models: dict[str, ModelSpeed] = {}

    def record(self, model_id: str, ttft_s: float, tokens: int, decode_s: float) -> None:
        """One finished generation: its first-token time, and `tokens` generated over `decode_s`
        after the first one (tokens/s needs at least two tokens to mean anything)."""
        speed = self.models.setdefault(model_id, ModelSpeed())
        speed.samples += 1
        speed.ttfts.append(ttft_s)
        if tokens >= 2 and decode_s > 0:
            rate = (tokens - 1) / decode_s
            speed.tokens_per_s = rate if speed.tokens_per_s is None else (1 - ALPHA) * speed.tokens_per_s + ALPHA * rate

    def of(self, model_id: str) -> ModelSpeed:
        return self.models.get(model_id) or ModelSpeed()
