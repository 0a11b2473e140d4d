"""The embedded engine: an Ollama-compatible server over llama.cpp, for machines with no Ollama."""
