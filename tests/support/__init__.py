"""What the tests and benchmarks stand on: stand-ins built from the real servers' sources (Ollama,
its scheduler on a small GPU, OpenAI-compatible engines, a go-livepeer orchestrator), the runner
and engine as subprocesses on loopback, and the operator tools the suite checks files with."""
