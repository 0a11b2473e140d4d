"""OLLAMA_HOST: the list of upstreams a runner serves from, read as Ollama reads its own variable
(`0.0.0.0:11434`, `ollama` → http://…:11434), each entry with its options (`parallel=`, `models=`,
`vram_mb=`; `openai+http://…` for an OpenAI-compatible engine, with `served_model=` and
`api_key_env=`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
OPENAI_PREFIX = "openai+"  # an OLLAMA_HOST entry naming an OpenAI-compatible engine
_HOSTNAME = re.compile(r"^[A-Za-z0-9._-]+$|^[0-9A-Fa-f:.]+$")  # a name, an IPv4 or an IPv6 address


def normalize_ollama_host(host: str) -> str:
    """Ollama's own reading of OLLAMA_HOST: `0.0.0.0:11434`, `ollama` → http://…:11434; an
    explicit http:// or https:// without a port means 80 or 443, as in Ollama's client. A scheme with no
    server (`http://`) is refused: read as a bare host it would become http://http:11434, a name that
    resolves nowhere and fails only later, as "unreachable"."""
    raw = host.strip()
    if re.fullmatch(r"(?i)https?:/*", raw) or ("://" in raw and not urlsplit(raw).netloc):
        raise ValueError(
            f"OLLAMA_HOST {raw!r} names no server: set it to one, e.g. http://127.0.0.1:11434 (or unset it)"
        )
    host = raw.rstrip("/")
    scheme, has_scheme = "http", "://" in host
    if has_scheme:
        scheme = host.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"OLLAMA_HOST {host!r}: only http:// and https:// are supported")
    else:
        host = "http://" + host
    parts = urlsplit(host)
    hostname = parts.hostname or "127.0.0.1"
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not _HOSTNAME.match(hostname) or port == -1:
        raise ValueError(
            f"OLLAMA_HOST {raw!r} is not a server address: write host:port or a URL, e.g. http://127.0.0.1:11434"
        )
    if hostname == "0.0.0.0":
        hostname = "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    default_port = {"http": 80, "https": 443}[scheme] if has_scheme else 11434
    return f"{scheme}://{hostname}:{port or default_port}{parts.path}"


@dataclass(frozen=True)
class UpstreamSpec:
    """One server from OLLAMA_HOST: `URL[?parallel=N][&models=ID&models=ID][&vram_mb=N]`, an Ollama
    server, or with `openai+` before the URL an OpenAI-compatible engine (vLLM, SGLang,
    llama-server, llama-cpp-python), which may add `&served_model=NAME` (its name for the model) and
    `&api_key_env=VAR` (the environment variable holding its --api-key: a key in the URL would be
    logged wherever the URL is)."""

    url: str
    parallel: int | None = None
    models: frozenset[str] | None = None
    vram_mb: int | None = None  # the GPU memory its served models share
    kind: str = "ollama"  # or "openai"
    served_model: str | None = None  # openai: the engine's name for the one model in models=
    api_key: SecretStr | None = None  # openai: read from the variable api_key_env= names


def parse_upstreams(value: str, environ: Mapping[str, str] = os.environ) -> list[UpstreamSpec]:
    """OLLAMA_HOST as a comma-separated list; one value works exactly as before. `environ` holds the
    variables api_key_env= names."""
    specs = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            raise ValueError(f"OLLAMA_HOST {value!r} has an empty entry")
        base, _, query = item.partition("?")
        kind = "openai" if base.lower().startswith(OPENAI_PREFIX) else "ollama"
        if kind == "openai":
            base = base[len(OPENAI_PREFIX) :]
            if "://" not in base:
                raise ValueError(f"OLLAMA_HOST entry {item!r}: write openai+http://host:port (or openai+https://)")
        try:
            options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError as exc:
            raise ValueError(f"OLLAMA_HOST entry {item!r}: options are name=value ({exc})") from None
        if "api_key" in options:  # the message leaves the query out: it holds the key
            raise ValueError(
                f"OLLAMA_HOST entry {base!r}: a key written in the URL would be logged; put it in an environment "
                "variable and name that with api_key_env=NAME"
            )
        engine_only = {"served_model", "api_key_env"} if kind == "openai" else set()
        unknown = set(options) - {"parallel", "models", "vram_mb"} - engine_only
        if unknown:
            raise ValueError(f"OLLAMA_HOST entry {item!r}: unknown option(s) {', '.join(sorted(unknown))}")
        numbers: dict[str, int | None] = {}
        for name in ("parallel", "vram_mb"):
            text = options[name][-1] if name in options else None
            if text is not None and (not text.isdigit() or int(text) < 1):
                raise ValueError(f"OLLAMA_HOST entry {item!r}: {name} must be a whole number >= 1")
            numbers[name] = int(text) if text is not None else None
        models = frozenset(options["models"]) if "models" in options else None
        if models is not None and not all(models):
            raise ValueError(f"OLLAMA_HOST entry {item!r}: models= is empty (name a served HF id)")
        served = options["served_model"][-1] if "served_model" in options else None
        if served is not None and (not served or models is None or len(models) != 1):
            raise ValueError(f"OLLAMA_HOST entry {item!r}: served_model= needs exactly one models= (its HF id)")
        key = _api_key(item, options["api_key_env"][-1], environ) if "api_key_env" in options else None
        url = normalize_ollama_host(base)
        if kind == "openai":
            url = url.removesuffix("/v1")  # the runner adds /v1/... itself
        specs.append(UpstreamSpec(url, numbers["parallel"], models, numbers["vram_mb"], kind, served, key))
    urls = [s.url for s in specs]
    if len(set(urls)) != len(urls):
        raise ValueError(f"OLLAMA_HOST lists a server twice: {value}")
    return specs


def _api_key(item: str, name: str, environ: Mapping[str, str]) -> SecretStr:
    """The key in the variable api_key_env= names; refused at start when it is unset or empty."""
    if not name:
        raise ValueError(f"OLLAMA_HOST entry {item!r}: api_key_env= is empty (name the variable holding the key)")
    key = environ.get(name, "").strip()
    if not key:
        raise ValueError(
            f"OLLAMA_HOST entry {item!r}: api_key_env={name} names an environment variable that is not set: "
            f"set {name} to the engine's --api-key"
        )
    return SecretStr(key)
