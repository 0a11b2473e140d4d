"""`doctor --runners-json FILE`: a hand-edited runners.json judged as go-livepeer v0.9.1 would load it
(-liveRunnerConfig: any error stops the node), and whether it names every model this runner serves."""

from __future__ import annotations

from pathlib import Path

from llm_runner.live.runners_json import APP_PREFIX, RunnersJSONError, validate_document
from llm_runner.ops.files import read_json

Finding = tuple[bool | None, str]  # (True PASS / False FAIL / None WARN, the line)


def runners_json_findings(path: Path, model_ids: list[str]) -> list[Finding]:
    rewrite = f"`llm-runner runners-json --write {path}`"
    try:
        document = read_json(path, RunnersJSONError)
        entries = validate_document(document)
    except RunnersJSONError as exc:
        message = str(exc).removesuffix("; fix or remove it, it was left as is")
        return [
            (False, f"{path}: go-livepeer would refuse it ({message}): fix it by hand, or rewrite it with {rewrite}")
        ]
    if document is None:
        return [(False, f"{path} is missing or empty: write it with {rewrite}")]
    by_app = {entry.get("app"): entry for entry in entries}
    findings: list[Finding] = []
    for model_id in model_ids:
        entry = by_app.get(APP_PREFIX + model_id)
        if entry is None:
            findings.append(
                (False, f"{path}: no runner for {model_id} (app {APP_PREFIX}{model_id}): add it with {rewrite}")
            )
        else:
            findings.append(
                (
                    True,
                    f"{path}: {model_id} → {entry['runner_url']} (capacity {entry['capacity']}), go-livepeer loads it",
                )
            )
    return findings
