"""llm-runner: a Livepeer `llm` runner that serves tokens from a colocated Ollama."""

__version__ = "0.1.0"
