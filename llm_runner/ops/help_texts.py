"""What each subcommand's --help says beyond its options: what it does, and one example to copy.
Kept in one place so that every command gets both (tests/test_first_hour.py checks each one)."""

from __future__ import annotations

import argparse
import textwrap

DESCRIPTIONS = {
    "serve": (
        "Run the service: the Livepeer `llm` pipeline (/llm) and the live-runner OpenAI app (/v1, "
        "/models/<slug>/v1) in front of Ollama, or of the embedded llama.cpp engine when no Ollama answers. "
        "Configured by environment variables (MODEL_ID, OLLAMA_HOST, AUTH_TOKEN, LLM_RUNNER_*).",
        "MODEL_ID=Qwen/Qwen2.5-7B-Instruct OLLAMA_HOST=http://127.0.0.1:11434 llm-runner serve --port 8000",
    ),
    "engine": (
        "Run the embedded Ollama-compatible llama.cpp engine on its own (CPU; `serve` starts it by itself "
        "when no Ollama answers). Serves the bundled SmolLM2 model and any *.gguf in --models-dir.",
        "llm-runner engine --port 11434 --models-dir ~/models",
    ),
    "ai-models": (
        "Print the aiModels.json entries go-livepeer (up to v0.9.1) needs to send `llm` jobs to this runner, "
        "or merge them into a file (atomic; other entries are kept).",
        "llm-runner ai-models --model-id meta-llama/Meta-Llama-3.1-8B-Instruct --write aiModels.json",
    ),
    "models": (
        "List the built-in catalog: each HF model id, the Ollama tag that serves it and the GPU memory it needs.",
        "llm-runner models --vram 8",
    ),
    "pull": (
        "Pull the Ollama tag of an HF model id into the Ollama at OLLAMA_HOST, with a progress bar.",
        "OLLAMA_HOST=http://127.0.0.1:11434 llm-runner pull meta-llama/Meta-Llama-3.1-8B-Instruct",
    ),
    "healthcheck": (
        "Exit 0 when the runner's /health answers OK (or LOADING, unless --strict), 1 otherwise: "
        "the Docker image's HEALTHCHECK.",
        "llm-runner healthcheck --url http://127.0.0.1:8000/health",
    ),
    "doctor": (
        "Check what `serve` would run with these settings, one PASS/WARN/FAIL line each: the settings, "
        "the model catalog, Ollama and its models, the GPU, an aiModels.json or runners.json and a running runner. "
        "Exit 1 when a check fails.",
        "MODEL_ID=meta-llama/Meta-Llama-3.1-8B-Instruct llm-runner doctor --runners-json compose/runners.json",
    ),
    "compose": (
        "Write a Compose file for one host with several GPUs: one Ollama per GPU, the runner and "
        "go-livepeer, and the matching aiModels.json.",
        "llm-runner compose --gpus 0,1 --out compose.gpus.yml",
    ),
    "runners-json": (
        "Print the live-runner runners.json (go-livepeer's -liveRunnerConfig), one entry per served model, "
        "checked with go-livepeer's rules; or merge it into a file by label (a broken file is left as is).",
        "llm-runner runners-json --url http://llm_runner:8000 --write compose/runners.json",
    ),
    "price": (
        "Propose price_info for runners.json (per call, or per hour) from a target price per million "
        "output tokens, using the speed measured by a running runner or a calibration run.",
        "llm-runner price --usd-per-mtok-out 0.60 --from-runner http://127.0.0.1:8000",
    ),
}


def describe(commands: argparse._SubParsersAction) -> None:
    """Give every subcommand its description and example (a command without one is a programming error)."""
    for name, parser in commands.choices.items():
        what, example = DESCRIPTIONS[name]
        parser.description = textwrap.fill(what, 100)
        parser.epilog = f"example:\n  {example}"
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
