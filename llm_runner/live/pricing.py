"""Price arithmetic for a live runner: from a target price per million tokens to go-livepeer's
`price_info` (`{price, currency: "usd", unit}`), and what each unit really bills a call.

Facts from go-livepeer that shape it:
- `fixed` is one payment per call, taken at reservation, before the work. It buys at most a cap of
  output tokens (`max_tokens`), which the runner must then enforce (LLM_RUNNER_MAX_TOKENS_CAP):
  price = cap × output price + prompt allowance × input price.
- `hour` is turned into a price per second and debited every payment interval while the call is
  open; the remote signer bills whole seconds with a 10 s minimum on the first payment (go-livepeer
  #3992). At the measured decode speed: price per hour = tokens/s × 3600 × output price per token.
  A call shorter than 10 s pays for 10 s: a 2 s call pays 5× its tokens.
- Gateways bill their users per token from `usage`: the runner's price is what they pay for it.

Everything here is pure (Decimal, no float drift in a price), so it is tested table-driven.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

MTOK = Decimal(1_000_000)
MIN_BILLED_S = 10  # the remote signer's first payment covers at least 10 s (go-livepeer #3992)
SIGNIFICANT = 6  # digits kept in a computed price (rounded up: the price always covers the tokens)


def decimal(value: float | int | str | Decimal) -> Decimal:
    """An exact decimal of what was typed (floats through their shortest repr, never their binary)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def round_up(value: Decimal, digits: int = SIGNIFICANT) -> Decimal:
    """`value` rounded up to `digits` significant digits, without trailing zeros."""
    if value <= 0:
        return value
    exponent = value.adjusted() - digits + 1
    return value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_CEILING).normalize()


@dataclass(frozen=True)
class FixedQuote:
    """One price per call and the largest `max_tokens` it covers."""

    price: Decimal  # USD per call
    max_tokens: int  # the cap the runner must enforce
    prompt_tokens: int  # the prompt allowance the price includes
    output_usd: Decimal  # max_tokens × output price
    prompt_usd: Decimal  # prompt_tokens × input price


def fixed_quote(usd_per_mtok_out: Decimal, usd_per_mtok_in: Decimal, max_tokens: int, prompt_tokens: int) -> FixedQuote:
    """The price per call for a cap of `max_tokens` output and `prompt_tokens` input tokens,
    rounded up; the cap is then the largest the rounded price covers (never less than asked)."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    output = max_tokens * usd_per_mtok_out / MTOK
    prompt = prompt_tokens * usd_per_mtok_in / MTOK
    price = round_up(output + prompt)
    return FixedQuote(
        price, cap_for_price(price, usd_per_mtok_out, usd_per_mtok_in, prompt_tokens), prompt_tokens, output, prompt
    )


def cap_for_price(price: Decimal, usd_per_mtok_out: Decimal, usd_per_mtok_in: Decimal, prompt_tokens: int) -> int:
    """The largest max_tokens a fixed `price` covers once the prompt allowance is paid (0: none)."""
    left = price - prompt_tokens * usd_per_mtok_in / MTOK
    if left <= 0 or usd_per_mtok_out <= 0:
        return 0
    return int((left * MTOK / usd_per_mtok_out).to_integral_value(rounding=ROUND_FLOOR))


def hour_price(tokens_per_s: float, usd_per_mtok_out: Decimal) -> Decimal:
    """USD per hour such that a call decoding at `tokens_per_s` pays the output price per token."""
    if tokens_per_s <= 0:
        raise ValueError("tokens_per_s must be positive")
    measured = decimal(f"{tokens_per_s:.3g}")  # 3 significant digits: more is measurement noise
    return round_up(measured * 3600 * usd_per_mtok_out / MTOK)


def billed_seconds(duration_s: float) -> int:
    """What the remote signer bills for a call open `duration_s`: whole seconds, at least 10."""
    return max(MIN_BILLED_S, math.ceil(duration_s - 1e-9))


@dataclass(frozen=True)
class HourCall:
    """One call of a given length under an `hour` price: what it is billed against its tokens."""

    duration_s: float
    tokens: int  # output tokens decoded in that time (after the first token's wait)
    billed_s: int
    billed_usd: Decimal
    tokens_usd: Decimal  # the same tokens at the target price per token
    ratio: float  # billed / tokens_usd (1: honest; 5: a short call pays five times its tokens)


def hour_call(
    duration_s: float, tokens_per_s: float, ttft_s: float, per_hour: Decimal, usd_per_mtok_out: Decimal
) -> HourCall:
    """A call open `duration_s` whose first token came after `ttft_s`, decoding at `tokens_per_s`."""
    tokens = max(0, int((duration_s - ttft_s) * tokens_per_s))
    billed = billed_seconds(duration_s)
    billed_usd = per_hour * billed / 3600
    tokens_usd = tokens * usd_per_mtok_out / MTOK
    ratio = float(billed_usd / tokens_usd) if tokens_usd > 0 else math.inf
    return HourCall(duration_s, tokens, billed, billed_usd, tokens_usd, ratio)


def fixed_call_seconds(max_tokens: int, tokens_per_s: float, ttft_s: float) -> float:
    """How long a call that uses the whole cap takes at the measured speed."""
    return ttft_s + max_tokens / tokens_per_s
