"""`llm-runner price`: from a target price per million output tokens and the model's measured speed,
propose go-livepeer `price_info` for `fixed` (per call, with the max_tokens cap it covers) and for
`hour` (per second of an open call), show the arithmetic and what each bills a short call, and
write the chosen one into runners.json or print the settings of a dynamic registration.

The arithmetic is in live/pricing.py (pure); the speed comes from ops/calibrate.py.
"""

from __future__ import annotations

import argparse
import asyncio
from decimal import Decimal, InvalidOperation
from pathlib import Path

from llm_runner.live.pricing import (
    MIN_BILLED_S,
    FixedQuote,
    decimal,
    fixed_call_seconds,
    fixed_quote,
    hour_call,
    hour_price,
)
from llm_runner.live.runners_json import RunnersJSONError
from llm_runner.ops.calibrate import ENGINE_START_S, CalibrationError, Measured, calibrate, from_runner
from llm_runner.ops.console import fail, load_settings
from llm_runner.ops.live import add_entry_arguments, build_entries, emit, served_ids
from llm_runner.settings import DEFAULT_EMBEDDED_MODEL, Settings
from llm_runner.upstream.build import resolve_backend
from llm_runner.upstream.catalog import CatalogError
from llm_runner.upstream.ollama import OllamaUpstream

SHORT_CALLS_S = (1, 2, 5, 10, 30, 60)  # call lengths shown under `hour`


def register(commands: argparse._SubParsersAction) -> None:
    price = commands.add_parser("price", help="propose price_info (fixed or hour) from a price per million tokens")
    price.add_argument("--usd-per-mtok-out", type=_usd, required=True, help="target USD per million output tokens")
    price.add_argument("--usd-per-mtok-in", type=_usd, default=Decimal(0), help="USD per million prompt tokens")
    price.add_argument("--from-runner", metavar="URL", help="use the speed this running runner measured (/status)")
    price.add_argument("--upstream", metavar="URL", help="calibrate against this Ollama-API server")
    price.add_argument("--runs", type=int, default=3, help="calibration generations per model")
    price.add_argument("--calibration-tokens", type=int, default=128, help="max_tokens of each calibration run")
    price.add_argument("--max-tokens", type=int, default=None, help="fixed: the cap (default 1024)")
    price.add_argument("--prompt-tokens", type=int, default=None, help="fixed: prompt allowance (num_ctx - cap)")
    price.add_argument("--unit", choices=["fixed", "hour"], default="fixed", help="the one to write and print env for")
    price.add_argument("--write", type=Path, default=None, help="merge the chosen price into this runners.json")
    add_entry_arguments(price)
    price.set_defaults(run=price_command)


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number of USD: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative decimal: {text!r}")
    return value


def price_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.usd_per_mtok_out <= 0:
        return fail("--usd-per-mtok-out must be positive")
    cap = args.max_tokens if args.max_tokens is not None else min(1024, settings.num_ctx)
    if not 1 <= cap <= settings.num_ctx:
        return fail(f"--max-tokens must be between 1 and num_ctx ({settings.num_ctx})")
    allowance = args.prompt_tokens if args.prompt_tokens is not None else settings.num_ctx - cap
    try:
        speeds = _speeds(settings, args)
        quote = fixed_quote(args.usd_per_mtok_out, args.usd_per_mtok_in, cap, allowance)
        hourly = {m.model_id: hour_price(m.tokens_per_s, args.usd_per_mtok_out) for m in speeds}
        print(f"target: ${args.usd_per_mtok_out} per million output tokens, ${args.usd_per_mtok_in} per million input")
        for measured in speeds:
            print()
            print(proposal(measured, quote, hourly[measured.model_id], args.usd_per_mtok_out, args.usd_per_mtok_in))
        prices = {m: (quote.price if args.unit == "fixed" else hourly[m]) for m in hourly}
        print()
        print(chosen(args.unit, prices, quote))
        if args.write:
            entries = build_entries(settings, list(prices), args, prices, args.unit)
            return emit(entries, args.write, on_chain=args.on_chain)
    except (CalibrationError, CatalogError, RunnersJSONError) as exc:
        return fail(str(exc))
    return 0


def _speeds(settings: Settings, args: argparse.Namespace) -> list[Measured]:
    """The runner's measured speed (--from-runner), or a calibration run against the upstream."""
    given = served_ids(settings, args.model_id) if args.model_id else None
    if args.from_runner:
        return from_runner(args.from_runner, settings.auth_token, given)
    wait_s = 0.0
    if args.upstream:
        upstream: OllamaUpstream = OllamaUpstream(args.upstream, settings)
    elif resolve_backend(settings) == "embedded":
        from llm_runner.upstream.embedded import EmbeddedUpstream

        upstream, wait_s = EmbeddedUpstream(settings, 1), ENGINE_START_S
        given = given or settings.model_ids or [DEFAULT_EMBEDDED_MODEL]
    else:
        upstream = OllamaUpstream(settings.upstreams[0].url, settings)
    ids = given or served_ids(settings, None)
    return asyncio.run(calibrate(settings, ids, upstream, args.runs, args.calibration_tokens, wait_s))


def proposal(measured: Measured, quote: FixedQuote, per_hour: Decimal, out: Decimal, inp: Decimal) -> str:
    """Both units for one model, with the arithmetic and in plain words."""
    tps, ttft = measured.tokens_per_s, measured.ttft_s
    mtok = f"${out}/1M"
    full_s = fixed_call_seconds(quote.max_tokens, tps, ttft)
    slot_hour = quote.price * 3600 / decimal(round(full_s, 3))
    short = hour_call(5, tps, ttft, per_hour, out)
    lines = [
        f"{measured.model_id}: {tps:.1f} tokens/s decode, first token {ttft * 1e3:.0f} ms (median)",
        f"  speed {measured.source}",
        "",
        "  fixed: one payment per call, taken at reservation, before any token",
        f"    price_info {_price_info(quote.price, 'fixed')}",
        f"    {quote.max_tokens} max_tokens x {mtok} = ${_usd_text(quote.output_usd)}, + a prompt allowance of"
        f" {quote.prompt_tokens} tokens x ${inp}/1M = ${_usd_text(quote.prompt_usd)}:",
        f"    ${quote.price:f} per call (rounded up), which covers max_tokens <= {quote.max_tokens}",
        f"    Every call pays ${quote.price:f}, whatever it uses. The runner refuses (400, before any work) a call",
        f"    asking more than {quote.max_tokens} tokens, or none: LLM_RUNNER_MAX_TOKENS_CAP={quote.max_tokens}.",
        f"    A call using the whole cap takes about {full_s:.1f} s here: back to back, ${_usd_text(slot_hour)}"
        " per slot-hour;",
        f"    a 100-token answer pays {float(quote.price / (100 * out / 1_000_000)):.1f}x its tokens"
        " (a gateway billing per token carries the difference).",
        "",
        "  hour: a price per second, debited while the call is open",
        f"    price_info {_price_info(per_hour, 'hour')}",
        f"    {tps:.1f} tokens/s x 3600 s x {mtok} = ${per_hour:f} per hour = ${_usd_text(per_hour / 3600)} per second",
        f"    A call pays for the seconds it is open, in whole seconds and at least {MIN_BILLED_S}"
        " (remote signer, go-livepeer #3992):",
        f"    the first-token wait ({ttft * 1e3:.0f} ms) is billed as time; a {short.duration_s:g} s call pays"
        f" {short.billed_s} s, {short.ratio:.1f}x its tokens.",
        "      call  tokens  billed      billed $      tokens $   x tokens",
    ]
    for seconds in SHORT_CALLS_S:
        call = hour_call(seconds, tps, ttft, per_hour, out)
        lines.append(
            f"    {seconds:>4} s {call.tokens:>7} {call.billed_s:>5} s  {_usd_text(call.billed_usd):>12}"
            f"  {_usd_text(call.tokens_usd):>12}   {call.ratio:>6.1f}"
        )
    return "\n".join(lines)


def chosen(unit: str, prices: dict[str, Decimal], quote: FixedQuote) -> str:
    """What to do with the chosen unit: runners.json and the dynamic registration's settings."""
    first = next(iter(prices.values()))
    lines = [
        f"chosen: {unit} (--unit); static: add --write runners.json to merge it into each model's entry",
        "dynamic registration (LLM_RUNNER_LIVE_PRICE is one price for every served model):",
        f"  LLM_RUNNER_LIVE_PRICE={first:f}",
        f"  LLM_RUNNER_LIVE_UNIT={unit}",
    ]
    if unit == "fixed":
        lines.append(f"  LLM_RUNNER_MAX_TOKENS_CAP={quote.max_tokens}   # on the runner, static or dynamic")
    else:
        lines.append("  # LLM_RUNNER_MAX_TOKENS_CAP: not needed for hour (a longer call pays for its time)")
    return "\n".join(lines)


def _price_info(price: Decimal, unit: str) -> str:
    return f'{{"price": {price:f}, "currency": "usd", "unit": "{unit}"}}'


def _usd_text(value: Decimal) -> str:
    """A USD amount readable at a glance: up to 6 significant digits, no exponent."""
    rounded = decimal(f"{value:.6g}") if value else Decimal(0)
    return f"{rounded:f}"
