"""Property-based fuzzing of the runner's own OpenAPI with schemathesis (over 1,000 cases).

Invariants: every status is one of 200/400/401/500 and documented; errors have the contract's
shape; JSON bodies match their schemas; no bad input yields a 500 while Ollama is healthy.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.conftest import LLAMA
from tests.support.servers import serving

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_runner(standin_server):
    standin_server.reset()
    env = {"OLLAMA_HOST": standin_server.url, "MODEL_ID": LLAMA, "LLM_RUNNER_MAX_PROMPT_CHARS": "20000"}
    with serving(env) as runner:
        yield runner


def test_runner_api_conforms(fuzzed_runner):
    schema = schemathesis.openapi.from_url(fuzzed_runner.url + "/openapi.json")
    # /v1/* is the OpenAI-compatible surface, with OpenAI's error conventions: not the contract
    operations = [op for op in (r.ok() for r in schema.get_all_operations()) if "/v1/" not in op.path]
    assert any(op.path == "/llm" for op in operations)
    cases = 0
    plans = [(op, GenerationMode.POSITIVE) for op in operations]
    plans += [(op, GenerationMode.NEGATIVE) for op in operations if op.method.upper() == "POST"]
    for operation, mode in plans:
        examples = 300 if operation.method.upper() == "POST" else 10

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            nonlocal cases
            cases += 1
            response = case.call(base_url=fuzzed_runner.url, timeout=30)
            assert response.status_code in (200, 400, 401, 500), response.text
            if response.status_code != 200:
                detail = json.loads(response.text)["detail"]
                assert isinstance(detail["msg"], str) and detail["msg"], response.text
            case.validate_response(response, checks=CHECKS)

        fuzz()
    print(f"schemathesis: {cases} cases over {len(operations)} operations")
    assert cases >= 1000, cases
