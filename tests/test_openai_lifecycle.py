"""An OpenAI-compatible engine's model lifecycle and configuration, against tests/support/openai_standin.py:
a model it does not serve (an ERROR naming the fix, cleared once it serves it), HF ids it serves
without a model-map row, its --api-key from the variable its entry names, and doctor over a list of
Ollama and an engine."""

from __future__ import annotations

import time

import httpx

from tests.conftest import LLAMA, go_body
from tests.support.servers import StandIn
from tests.test_cli import cli
from tests.test_openai_upstream import serve

ACME = "acme/Tiny-Chat-1B"  # in no catalog: engines serve HF ids as they are
KEY = "vllm-k3y-value"


def detail(runner) -> str:
    return str(httpx.get(runner.url + "/status", timeout=5).json()["models"][0]["detail"])


def until_down(runner, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not any(u["down_since"] for u in httpx.get(runner.url + "/status", timeout=5).json()["upstreams"]):
        assert time.monotonic() < deadline, runner.log()[-2000:]
        time.sleep(0.05)


def test_a_model_the_engine_does_not_serve_is_an_error_that_clears_once_it_serves_it(own_engine):
    own_engine.script(models=["other-model"])
    with serve(f"{own_engine.entry}?models={LLAMA}", LLM_RUNNER_PULL="false") as runner:
        runner.wait_status("ERROR")
        said = detail(runner)
        assert f"does not serve {LLAMA}" in said and "lists other-model" in said, said
        assert "served_model=" in said and f"vllm serve {LLAMA}" in said and "ollama pull" not in said, said
        refused = httpx.post(runner.url + "/llm", json=go_body(), timeout=10)
        assert refused.status_code == 500 and "does not serve" in refused.json()["detail"]["msg"]

        own_engine.stop()  # restarted with the right model: a fresh stand-in serves the Llama model
        until_down(runner)
        own_engine.start()
        runner.wait_status("OK")
        assert httpx.post(runner.url + "/llm", json=go_body(), timeout=10).json()["usage"]["completion_tokens"] == 12

        own_engine.script(models=["other-model"])  # gone without a restart: the next request finds out
        gone = httpx.post(runner.url + "/llm", json=go_body(), timeout=10)
        assert gone.status_code == 500 and "does not serve" in gone.json()["detail"]["msg"]
        runner.wait_status("ERROR")
        own_engine.script(models=[LLAMA])  # and back without one: asked again, quietly
        runner.wait_status("OK")


def test_an_hf_id_outside_the_catalog_needs_no_row_when_only_engines_serve_it(own_engine):
    own_engine.script(models=[ACME])
    env = {"OLLAMA_HOST": own_engine.entry, "MODEL_ID": ACME}
    doctor = cli("doctor", env=env)
    assert f"{ACME} is served by its HF id" in doctor.stdout, doctor.stdout
    assert f"{ACME} listed in /v1/models at {own_engine.url}" in doctor.stdout, doctor.stdout
    written = cli("runners-json", "--url", "http://runner:8000", "--no-gpu", env=env)
    assert written.returncode == 0 and f'"app": "llm/{ACME}"' in written.stdout, written.stderr
    assert cli("ai-models", "--url", "http://runner:8000", env=env).returncode == 0
    mixed = {"OLLAMA_HOST": f"{own_engine.entry},http://127.0.0.1:9", "MODEL_ID": ACME}  # Ollama needs a tag
    refused = cli("runners-json", "--url", "http://runner:8000", "--no-gpu", env=mixed)
    assert refused.returncode == 2 and "Only Ollama entries need it" in refused.stderr, refused.stderr


def test_serve_answers_for_an_hf_id_only_engines_serve(own_engine):
    own_engine.script(models=[ACME])
    with serve(own_engine.entry, MODEL_ID=ACME) as runner:
        runner.wait_status("OK")
        answer = httpx.post(runner.url + "/llm", json=go_body(model=ACME), timeout=10).json()
        assert answer["model"] == ACME and own_engine.stats()["chat_bodies"][-1]["model"] == ACME


def test_an_engine_key_comes_from_the_variable_its_entry_names_and_is_never_shown(own_engine):
    own_engine.script(api_key=KEY)
    entry = f"{own_engine.entry}?models={LLAMA}&api_key_env=VLLM_KEY"
    unset = cli("serve", "--port", "1", env={"OLLAMA_HOST": entry, "MODEL_ID": LLAMA})
    assert unset.returncode == 2 and "api_key_env=VLLM_KEY" in unset.stderr and "not set" in unset.stderr
    assert "Traceback" not in unset.stderr
    inline = cli("doctor", env={"OLLAMA_HOST": f"{own_engine.entry}?api_key={KEY}", "MODEL_ID": LLAMA})
    assert inline.returncode == 2 and "api_key_env=" in inline.stderr and KEY not in inline.stderr, inline.stderr
    with serve(entry, VLLM_KEY=KEY) as runner:
        runner.wait_status("OK")  # the stand-in answers /v1/* only with the key
        assert httpx.post(runner.url + "/llm", json=go_body(), timeout=10).json()["usage"]["completion_tokens"] == 12
        shown = [httpx.get(runner.url + path, timeout=5).text for path in ("/status", "/metrics")]
        assert all(KEY not in text for text in shown)
        doctor = cli("doctor", env={"OLLAMA_HOST": entry, "MODEL_ID": LLAMA, "VLLM_KEY": KEY})
        assert f"{LLAMA} listed in /v1/models at {own_engine.url}" in doctor.stdout, doctor.stdout
        assert KEY not in doctor.stdout + doctor.stderr
    assert KEY not in runner.log()


def test_doctor_checks_each_upstream_of_a_mixed_list_its_own_way(own_engine, own_ollama: StandIn):
    env = {"OLLAMA_HOST": f"{own_engine.entry}?models={LLAMA},{own_ollama.url}", "MODEL_ID": LLAMA}
    result = cli("doctor", env=env)
    assert f"PASS  OpenAI-compatible engine reachable at {own_engine.url}" in result.stdout, result.stdout
    assert f"PASS  {LLAMA} listed in /v1/models at {own_engine.url}" in result.stdout, result.stdout
    assert f"reachable at {own_ollama.url}" in result.stdout, result.stdout
    assert f"llama3.1:8b present in Ollama at {own_ollama.url}" in result.stdout, result.stdout
    own_engine.stop()  # one down: that one fails, the other is still checked
    result = cli("doctor", env=env)
    assert result.returncode == 1 and f"FAIL  engine at {own_engine.url} is unreachable" in result.stdout, result.stdout
    assert f"llama3.1:8b present in Ollama at {own_ollama.url}" in result.stdout, result.stdout
