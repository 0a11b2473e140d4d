"""Configuration, read from the environment.

The official Livepeer runner's names are kept where they exist (MODEL_ID, AUTH_TOKEN, VERSION) and
Ollama's own OLLAMA_HOST is honoured; everything that is ours lives under ``LLM_RUNNER_``.
An unknown ``LLM_RUNNER_*`` variable is a start-up error: a typo must not silently do nothing.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llm_runner import __version__
from llm_runner.upstream.hosts import DEFAULT_OLLAMA_HOST, UpstreamSpec, parse_upstreams

ENV_PREFIX = "LLM_RUNNER_"
DEFAULT_OLLAMA_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
DEFAULT_EMBEDDED_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


# Go's time.ParseDuration, which Ollama uses for keep_alive strings: "10m", "1h30m", "-1s", "1.5h".
_GO_DURATION = re.compile(r"^[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")


class Settings(BaseSettings):
    """Everything the service reads at start. Field descriptions double as CLI/README help."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", populate_by_name=True)

    model_id: str | None = Field(
        None,
        validation_alias=AliasChoices("MODEL_ID", "LLM_RUNNER_MODEL_ID", "model_id"),
        description="HuggingFace model id(s) served, comma-separated, case-sensitive as in go-livepeer. "
        f"Default: {DEFAULT_OLLAMA_MODEL} on Ollama, {DEFAULT_EMBEDDED_MODEL} on the embedded engine.",
    )
    auth_token: str | None = Field(
        None,
        validation_alias=AliasChoices("AUTH_TOKEN", "LLM_RUNNER_AUTH_TOKEN", "auth_token"),
        description="The bearer token (aiModels.json `token`). When set, every path but /health and the readiness "
        "URLs requires `Authorization: Bearer <token>`, the live-runner paths too unless LLM_RUNNER_LIVE_AUTH=false, "
        "/metrics too unless LLM_RUNNER_METRICS_OPEN.",
    )
    version: str = Field(
        __version__,
        validation_alias=AliasChoices("VERSION", "LLM_RUNNER_VERSION", "version"),
        description="Semver reported by /version and in live-runner registrations (gateways may filter on it).",
    )
    ollama_host: str | None = Field(
        None,
        validation_alias=AliasChoices("OLLAMA_HOST", "LLM_RUNNER_OLLAMA_HOST", "ollama_host"),
        description="Ollama server(s), comma-separated, each `URL[?parallel=N][&models=ID…][&vram_mb=N]`; "
        "`openai+URL…[&served_model=NAME][&api_key_env=VAR]` is an OpenAI-compatible engine (vLLM, SGLang, "
        "llama-server; VAR: the environment variable holding its --api-key). "
        "`http://host` means port 80, a bare host port 11434, as in Ollama. "
        f"Unset: {DEFAULT_OLLAMA_HOST}. Several: one per GPU, capacity is the sum.",
    )
    ollama_num_parallel: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("OLLAMA_NUM_PARALLEL", "ollama_num_parallel"),
        description="Ollama's own parallelism, when set in this environment: the default slots per upstream.",
    )
    backend: Literal["ollama", "embedded", "auto"] = Field(
        "auto",
        description="ollama: a real Ollama at OLLAMA_HOST. embedded: start the built-in llama.cpp engine. "
        "auto: Ollama if OLLAMA_HOST is set or one answers at the default address, else embedded.",
    )
    num_ctx: int = Field(
        4096, ge=256, description="Context window sent on every request (same value always: no reloads)."
    )
    keep_alive: str = Field(
        "-1",
        description="Ollama keep_alive for every request: seconds (-1 = keep loaded) "
        "or a Go duration (`30m`, `1h30m`).",
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        description="Generations in flight per upstream unless its entry says ?parallel=N "
        "(default: OLLAMA_NUM_PARALLEL, else 1).",
    )
    max_queue: int = Field(16, ge=0, description="/llm requests allowed to wait for a slot; beyond it: 500 busy.")
    queue_timeout_s: float = Field(
        120.0, gt=0, description="Longest wait for a generation slot, or for a swap that loads the model asked for."
    )
    loading_wait_s: float = Field(
        60.0, ge=0, description="Longest wait while a model is pulled or warmed (a dead upstream is not waited for)."
    )
    startup_grace_s: float = Field(
        30.0, ge=0, description="At start, how long requests wait for upstreams that are not up yet."
    )
    openai_max_queue: int = Field(
        0, ge=0, description="/v1 requests allowed to wait for a slot (0: answer 429 at once when full)."
    )
    live_auth: bool | None = Field(
        None,
        description="With AUTH_TOKEN set, the live-runner paths `/models/<slug>/v1/...` need it too (the default); "
        "false opens them, for an orchestrator's clients that do not hold the runner's token.",
    )
    metrics_open: bool = Field(
        False, description="Serve /metrics without AUTH_TOKEN (an in-network Prometheus scraper)."
    )
    keep_alive_s: float = Field(
        75.0, gt=5, description="How long the server keeps idle client connections (over the 5 s health poll)."
    )
    vram_mb: int | None = Field(
        None,
        ge=1,
        description="GPU memory (MB) each upstream's served models share, unless its OLLAMA_HOST entry says "
        "?vram_mb=N. Default: NVML's for one Ollama on this machine, else learned when Ollama unloads one "
        "served model to load another. Models that do not fit together are swapped by the runner.",
    )
    allow_offload: bool = Field(
        False, description="Serve a model partly offloaded to the CPU (several times slower) instead of refusing it."
    )
    swap_wait_s: float = Field(
        10.0,
        ge=0,
        description="Longest a request for a model that is not loaded waits while the loaded one still has "
        "requests queued, before the runner swaps (it never unloads a model with requests in flight).",
    )
    max_swaps_per_minute: int = Field(4, ge=1, description="Model swaps allowed per upstream per minute (no thrash).")
    canary_idle_s: float = Field(
        300.0, ge=0, description="A model idle this long gets a one-token canary generation (0: no canary)."
    )
    canary_timeout_s: float = Field(30.0, gt=0, description="A canary slower than this counts as failed.")
    canary_failures: int = Field(
        2, ge=1, description="Canaries failed in a row before the model is reported not ready."
    )
    think: Literal["inline", "hide", "off"] = Field(
        "inline",
        description="Thinking models: inline = reasoning in `<think>…</think>` before the answer, "
        "hide = drop it, off = ask the model not to think.",
    )
    model_map: dict[str, str] = Field(
        default_factory=dict,
        description='Extra HF id → Ollama tag mappings, JSON: {"org/Model": "tag"}; served with a logged '
        "warning when the tag's identity differs from the catalog's.",
    )
    model_map_file: Path | None = Field(
        None, description="JSON file of extra HF id → Ollama tag mappings, as LLM_RUNNER_MODEL_MAP."
    )
    pull: bool = Field(True, description="Pull missing models from Ollama's library at start (progress in the log).")
    warm: bool = Field(True, description="Load each model into memory at start so the first job is fast.")
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Connect timeout to an upstream (Ollama or an OpenAI-compatible engine)."
    )
    first_token_timeout_s: float = Field(
        600.0, gt=0, description="Longest wait for an upstream's first byte (a cold model load can take minutes)."
    )
    inter_token_timeout_s: float = Field(
        120.0, gt=0, description="Longest silence between two tokens: a stalled stream fails sooner."
    )
    health_interval_s: float = Field(5.0, gt=0, description="How often each upstream's liveness is checked.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted request body in bytes; larger: 400.")
    max_prompt_chars: int = Field(
        400_000, ge=1, description="Largest total message content accepted, in characters; larger: 400."
    )
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM, how long in-flight streams may finish.")
    engine_port: int = Field(0, ge=0, le=65535, description="Embedded engine port (0 = any free port).")
    engine_models_dir: Path | None = Field(
        None, description="Folder of extra `*.gguf` files for the embedded engine, each served as `<file stem>:latest`."
    )
    engine_threads: int | None = Field(None, ge=1, description="llama.cpp threads (default: all cores).")
    live_orchestrator_url: str | None = Field(
        None,
        description="Register dynamically as a live runner with this orchestrator (its -liveRunnerAddr, "
        "e.g. https://orchestrator:8935); off when unset.",
    )
    live_orch_secret: SecretStr | None = Field(None, description="The orchestrator's -orchSecret (never logged).")
    live_public_url: str = Field(
        "http://127.0.0.1:8000",
        description="This runner's base URL as the orchestrator reaches it "
        "(dynamic registration's runner and health URLs).",
    )
    live_price: float | None = Field(
        None,
        gt=0,
        description="price_info.price of a dynamic registration in USD per unit (on-chain); "
        "`llm-runner price` proposes one.",
    )
    live_unit: Literal["hour", "720p", "fixed"] = Field(
        "hour",
        description="price_info.unit of a dynamic registration: hour (billed per second while a call is open), 720p, "
        "or fixed (one payment per call; needs LLM_RUNNER_MAX_TOKENS_CAP).",
    )
    live_verify_tls: bool = Field(
        False, description="Verify the orchestrator's TLS certificate (go-livepeer's own is self-signed)."
    )
    metrics: bool = Field(True, description="Serve Prometheus metrics on /metrics.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level: debug, info, warning or error."
    )
    max_tokens_cap: int | None = Field(
        None,
        ge=1,
        description="The most output tokens a call may ask (max_tokens); a call asking more, or none while "
        "num_ctx is larger, is refused with 400 before any work. Set it to what a fixed price per call "
        "covers (`llm-runner price --unit fixed` prints it); a dynamic registration priced fixed needs it.",
    )
    usage_window_s: float = Field(
        3600.0, gt=0, description="How long /usage keeps a Livepeer session's sums after its last call."
    )
    usage_max_sessions: int = Field(
        10_000, ge=1, description="Sessions /usage keeps at most (the longest idle is dropped first, and counted)."
    )
    upstream_api_key: SecretStr | None = Field(
        None,
        description="Bearer token for OpenAI-compatible upstreams started with --api-key whose OLLAMA_HOST entry "
        "names no api_key_env= (never logged).",
    )

    @field_validator("model_map", mode="before")
    @classmethod
    def _parse_model_map(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("keep_alive")
    @classmethod
    def _check_keep_alive(cls, value: str) -> str:
        value = value.strip()
        if _as_number(value) is None and not _GO_DURATION.match(value):
            raise ValueError(
                f"keep_alive {value!r} is neither a number of seconds (-1 = forever) nor a duration like 10m or 1h30m"
            )
        return value

    @field_validator("ollama_host")
    @classmethod
    def _check_hosts(cls, value: str | None) -> str | None:
        if value:
            parse_upstreams(value)
        return value

    @model_validator(mode="after")
    def _check_version(self) -> Settings:
        core = self.version.split("-")[0].split("+")[0].split(".")
        if len(core) != 3 or not all(p.isdigit() for p in core):
            raise ValueError(f"VERSION must be semver like 1.2.3 (got {self.version!r})")
        return self

    @property
    def model_ids(self) -> list[str]:
        """The served ids in order; empty when MODEL_ID is unset (the backend picks a default)."""
        return [m.strip() for m in (self.model_id or "").split(",") if m.strip()]

    @property
    def ollama_keep_alive(self) -> int | float | str:
        """keep_alive as Ollama wants it: a JSON number for seconds ("-1" as a string is invalid)."""
        number = _as_number(self.keep_alive)
        return number if number is not None else self.keep_alive

    @property
    def upstreams(self) -> list[UpstreamSpec]:
        """OLLAMA_HOST's entries; unset, Ollama's own default address."""
        return parse_upstreams(self.ollama_host) if self.ollama_host else [UpstreamSpec(DEFAULT_OLLAMA_HOST)]

    @property
    def default_slots(self) -> int:
        return self.concurrency or self.ollama_num_parallel or 1

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from the environment, refusing unknown LLM_RUNNER_* names."""
        known = {ENV_PREFIX + name.upper() for name in cls.model_fields}
        unknown = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)
        if unknown:
            raise ValueError("; ".join(_unknown_setting(name, known) for name in unknown))
        return cls(**overrides)


def _unknown_setting(name: str, known: set[str]) -> str:
    """Refused rather than warned: a warning scrolls past in a container's log while the setting silently
    does nothing (a typo in a timeout or a secret's name is found only in production)."""
    suffixes = {k.removeprefix(ENV_PREFIX): k for k in known}
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), sorted(suffixes), n=1, cutoff=0.6)
    fix = f"did you mean {suffixes[close[0]]}?" if close else "docs/configuration.md lists the settings"
    return f"unknown setting {name}: {fix} (remove or rename it)"


def _as_number(value: str) -> int | float | None:
    """Seconds as JSON can carry them: `inf` and `nan` are not numbers to Ollama (nor valid JSON)."""
    for kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            continue
        return number if math.isfinite(number) else None
    return None
