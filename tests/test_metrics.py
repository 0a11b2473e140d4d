"""Prometheus /metrics: what an operator graphs and alerts on."""

from __future__ import annotations

from tests.conftest import LLAMA, go_body


def sample(metrics: str, name: str) -> float:
    """The value of one exact sample line, e.g. 'llm_runner_in_flight'."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_follow_requests_tokens_errors_and_model_state(runner, ollama, client):
    before = (await client.get(runner.url + "/metrics")).text
    await client.post(runner.url + "/llm", json=go_body(stream=True, max_tokens=5))
    await client.post(runner.url + "/llm", json=go_body(messages=[]))
    ollama.script(error_after=2)
    await client.post(runner.url + "/llm", json=go_body(stream=True))
    after = (await client.get(runner.url + "/metrics")).text
    model = f'model="{LLAMA}"'

    def grew(name: str) -> float:
        old = sample(before, name) if name in before else 0.0
        return sample(after, name) - old

    assert grew('llm_runner_requests_total{endpoint="/llm",status="200"}') == 2
    assert grew('llm_runner_requests_total{endpoint="/llm",status="400"}') == 1
    assert grew(f"llm_runner_completion_tokens_total{{{model}}}") == 5 + 2
    # 14 each: the answer's, and the failed stream's (counted after the failure, as Ollama evaluated it)
    assert grew(f"llm_runner_prompt_tokens_total{{{model}}}") == 14 * 2
    assert grew(f'llm_runner_upstream_errors_total{{kind="upstream_5xx",upstream="{ollama.url}"}}') == 1
    assert grew(f"llm_runner_time_to_first_token_seconds_count{{{model}}}") == 2
    assert grew(f'llm_runner_generation_duration_seconds_count{{finish_reason="error",{model}}}') == 1
    assert sample(after, f'llm_runner_model_state{{{model},state="OK"}}') == 1
    assert sample(after, f'llm_runner_model_state{{{model},state="LOADING"}}') == 0
    assert sample(after, "llm_runner_in_flight") == 0 and sample(after, "llm_runner_queued") == 0


async def test_a_full_context_is_counted_and_logged(ollama, client):
    from tests.support.servers import serving

    with serving({"OLLAMA_HOST": ollama.url, "MODEL_ID": LLAMA, "LLM_RUNNER_NUM_CTX": "256"}) as small:
        long_prompt = go_body(messages=[{"role": "user", "content": "word " * 300}])
        assert (await client.post(small.url + "/llm", json=long_prompt)).status_code == 200
        metrics = (await client.get(small.url + "/metrics")).text
        assert sample(metrics, f'llm_runner_context_full_total{{model="{LLAMA}"}}') == 1
        assert "LLM_RUNNER_NUM_CTX" in small.wait_log("context window is full")
