"""go-livepeer Live Runners (v0.9.0+): static runners.json entries (`runners_json`) and the dynamic
heartbeat registration client (`registration`). Facts are from ai/runner/live_runner.go and
server/ai_http.go at go-livepeer v0.9.1 (e2fe336c)."""
