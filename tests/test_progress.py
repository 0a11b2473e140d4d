"""Long work shows progress where the operator waits: a pull logs its bytes and rate (at most every
few seconds, and at each layer's end), then one line when it is done."""

from __future__ import annotations

import re

from tests.conftest import LLAMA
from tests.support.servers import Runner


async def test_a_pull_logs_bytes_and_rate_then_one_done_line(own_ollama):
    own_ollama.script(models=[], pull_delay=0.2)
    with Runner({"OLLAMA_HOST": own_ollama.url, "MODEL_ID": LLAMA}) as runner:
        runner.wait_status("OK")
        log = runner.log()
    progress = [line for line in log.splitlines() if "pulling llama3.1:8b: pulling" in line]
    assert progress and all(re.search(r"\(\S+ \w?B of \S+ \w?B, \S+ \w?B/s\)", line) for line in progress), progress
    assert len(progress) <= 3  # not one per chunk
    assert log.count("pulled llama3.1:8b in ") == 1
