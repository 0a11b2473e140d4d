"""The catalog: every row names the weights its tag must serve, and /api/show is checked against them.

The `details` / `model_info` dicts below are shaped like Ollama's `/api/show` (and `/api/tags`)
answers; the values are Ollama's own, from real `ollama list` / `ollama show` outputs.
"""

from __future__ import annotations

import json

import pytest

from llm_runner.engine.registry import BUNDLED_TAG
from llm_runner.upstream.catalog import BUILTIN, Catalog, CatalogEntry, CatalogError, check_identity, model_slug
from llm_runner.upstream.identity import QUANT_BITS, Identity, normalize_quant, observed, parse_params, quant_from_tag

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"


def show(family: str, size: str, quant: str, ctx: int | None = None, count: int | None = None) -> tuple[dict, dict]:
    """(details, model_info) as Ollama's /api/show gives them."""
    details = {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": size,
        "quantization_level": quant,
    }
    info: dict = {"general.architecture": family}
    if count is not None:
        info["general.parameter_count"] = count
    if ctx is not None:
        info[f"{family}.context_length"] = ctx
    return details, info


CATALOG = Catalog()


def row(hf_id: str) -> CatalogEntry:
    return CATALOG.entry(hf_id)


# -- the table -----------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", BUILTIN, ids=lambda e: e.hf_id)
def test_every_row_states_an_identity_and_a_vram_figure_above_its_weights(entry: CatalogEntry):
    identity = entry.identity
    assert identity.family and identity.params_b and identity.quantization in QUANT_BITS
    assert not entry.overridden and not entry.passthrough and entry.enforced
    weights = identity.weights_gb()
    assert weights is not None and entry.vram_gb is not None
    assert entry.vram_gb >= weights + 0.2, f"{entry.hf_id}: {entry.vram_gb} GB cannot hold {weights:.2f} GB of weights"
    assert entry.vram_gb <= 2 * weights + 3.0, f"{entry.hf_id}: {entry.vram_gb} GB is far above its weights"


@pytest.mark.parametrize("entry", BUILTIN, ids=lambda e: e.hf_id)
def test_a_tag_that_names_a_quantisation_names_the_rows_own(entry: CatalogEntry):
    named = quant_from_tag(entry.tag)
    assert named is None or named == entry.identity.quantization


def test_ids_are_unique_and_tags_are_shared_only_by_aliases():
    ids = [e.hf_id for e in BUILTIN]
    assert len(ids) == len(set(ids))
    by_tag: dict[str, set[str]] = {}
    for entry in BUILTIN:
        by_tag.setdefault(entry.tag, set()).add(entry.hf_id)
    shared = {tag: hf_ids for tag, hf_ids in by_tag.items() if len(hf_ids) > 1}
    assert shared == {"llama3.1:8b": {LLAMA, "meta-llama/Llama-3.1-8B-Instruct"}}


@pytest.mark.parametrize(
    ("hf_id", "tag"),
    [
        # qwen3:4b now serves Qwen3-4B-Thinking-2507
        ("Qwen/Qwen3-4B", "qwen3:4b-q4_K_M"),
        # phi3:3.8b is Phi-3-mini-128k-instruct
        ("microsoft/Phi-3-mini-4k-instruct", "phi3:3.8b-mini-4k-instruct-q4_0"),
        ("microsoft/Phi-3-mini-128k-instruct", "phi3:3.8b"),
        # tinyllama:1.1b may be v0.6
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tinyllama:1.1b-chat-v1-q4_0"),
        # mistral:7b was Q4_0 until 2025-07
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral:7b-instruct-v0.3-q4_K_M"),
        # deepseek-r1:8b was the Llama distill until 2025-05
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek-r1:8b-llama-distill-q4_K_M"),
        ("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", "deepseek-r1:8b-0528-qwen3-q4_K_M"),
        ("Qwen/Qwen3-4B-Instruct-2507", "qwen3:4b-instruct-2507-q4_K_M"),
        ("Qwen/Qwen3-4B-Thinking-2507", "qwen3:4b-thinking-2507-q4_K_M"),
        (LLAMA, "llama3.1:8b"),
        (QWEN, "qwen2.5:7b"),
        (SMOLLM, "smollm2:135m-instruct-q4_1"),
    ],
)
def test_rows_map_to_the_tag_that_serves_that_model(hf_id: str, tag: str):
    assert CATALOG.resolve(hf_id) == tag


def test_rows_for_8_to_12_gb_cards_are_present():
    for hf_id in (
        "mistralai/Mistral-Nemo-Instruct-2407",
        "ibm-granite/granite-3.3-2b-instruct",
        "ibm-granite/granite-3.3-8b-instruct",
        "google/gemma-3n-E2B-it",
        "google/gemma-3n-E4B-it",
        "NousResearch/Hermes-3-Llama-3.1-8B",
        "Qwen/Qwen3.5-4B",
        "Qwen/Qwen3.5-9B",
        "google/gemma-4-12B-it",
        "mistralai/Ministral-3-8B-Instruct-2512",
    ):
        vram = CATALOG.vram_gb(hf_id)
        assert vram is not None and vram <= 12.0, hf_id


def test_vram_corrections_for_models_without_grouped_query_attention():
    assert CATALOG.vram_gb("microsoft/Phi-3-mini-4k-instruct") == 4.6
    assert CATALOG.vram_gb("microsoft/Phi-3.5-mini-instruct") == 4.6
    assert CATALOG.vram_gb("HuggingFaceTB/SmolLM2-1.7B-Instruct") == 3.2
    assert CATALOG.vram_gb("nobody/Unknown") is None


# -- check_identity against Ollama's own answers -------------------------------------------------


@pytest.mark.parametrize(
    ("hf_id", "reported"),
    [
        (LLAMA, show("llama", "8.0B", "Q4_K_M", 131072, 8030261248)),
        (QWEN, show("qwen2", "7.6B", "Q4_K_M", 32768, 7615616512)),
        ("Qwen/Qwen3-4B", show("qwen3", "4.0B", "Q4_K_M", 40960)),
        ("Qwen/Qwen3-0.6B", show("qwen3", "751.63M", "Q4_K_M")),
        ("Qwen/Qwen3-8B", show("qwen3", "8.2B", "Q4_K_M", 40960)),
        ("mistralai/Mistral-7B-Instruct-v0.3", show("llama", "7.2B", "Q4_K_M", 32768)),
        ("microsoft/Phi-3.5-mini-instruct", show("phi3", "3.8B", "Q4_0", 131072)),
        ("microsoft/phi-4", show("phi3", "14.7B", "Q4_K_M")),
        ("google/gemma-3-1b-it", show("gemma3", "999.89M", "Q4_K_M")),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", show("qwen2", "1.8B", "Q4_K_M")),
        ("deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", show("qwen3", "8.2B", "Q4_K_M")),
        ("HuggingFaceTB/SmolLM2-360M-Instruct", show("llama", "361.82M", "F16")),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", show("llama", "1B", "Q4_0", 2048)),  # an old push: "1B"
        ("google/gemma-4-12B-it", show("gemma4", "11.9B", "Q4_K_M", 262144)),
        ("mistralai/Ministral-3-8B-Instruct-2512", show("mistral3", "8.9B", "Q4_K_M")),
    ],
)
def test_what_ollama_reports_for_the_rows_tag_matches(hf_id: str, reported: tuple[dict, dict]):
    assert check_identity(row(hf_id), *reported) is None


def test_a_tag_re_pointed_to_another_release_is_caught_by_its_context_length():
    thinking_2507 = show("qwen3", "4.0B", "Q4_K_M", 262144)  # what qwen3:4b serves since 2025-08
    message = check_identity(row("Qwen/Qwen3-4B"), *thinking_2507)
    assert message is not None
    assert "context length 262144 (expected 40960)" in message
    assert message.startswith("Qwen/Qwen3-4B: Ollama's qwen3:4b-q4_K_M is not the model this id names")


def test_phi3_128k_is_not_phi3_4k():
    message = check_identity(row("microsoft/Phi-3-mini-4k-instruct"), *show("phi3", "3.8B", "Q4_0", 131072))
    assert message is not None and "context length 131072 (expected 4096)" in message


def test_another_model_names_every_field_that_differs_and_the_fix():
    message = check_identity(row(LLAMA), *show("qwen2", "14.8B", "Q4_0", 32768))
    assert message is not None
    assert "family qwen2 (expected llama)" in message
    assert "14.8B parameters (expected 8.0B ±10%)" in message
    assert "quantisation Q4_0 (expected Q4_K_M)" in message
    assert "context length 32768 (expected 131072)" in message
    assert "`ollama pull llama3.1:8b`" in message
    assert f'LLM_RUNNER_MODEL_MAP=\'{{"{LLAMA}": "<tag>"}}\'' in message


def test_an_older_push_of_the_same_tag_is_caught_by_its_quantisation():
    push_2024 = show("llama", "8.0B", "Q4_0", 131072)  # llama3.1:8b as pulled in July 2024
    message = check_identity(row(LLAMA), *push_2024)
    assert message is not None and "quantisation Q4_0 (expected Q4_K_M)" in message
    assert "family" not in message and "parameters" not in message


def test_the_llama_answer_the_standin_gives_for_every_tag_fails_the_qwen_row():
    message = check_identity(row(QWEN), *show("llama", "8.0B", "Q4_K_M", 131072))
    assert message is not None and "family llama (expected qwen2)" in message
    assert check_identity(row(LLAMA), *show("llama", "8.0B", "Q4_K_M", 131072)) is None


def test_parameter_count_from_model_info_and_tolerance():
    qwen3_8b = row("Qwen/Qwen3-8B")
    assert check_identity(qwen3_8b, *show("qwen3", "8B", "Q4_K_M", 40960, 8190735360)) is None
    assert check_identity(qwen3_8b, *show("qwen3", "9.0B", "Q4_K_M", 40960)) is None  # within 10 %
    message = check_identity(qwen3_8b, *show("qwen3", "14.8B", "Q4_K_M", 40960, 14768307200))
    assert message is not None and "14.8B parameters (expected 8.2B ±10%)" in message
    # Qwen2.5-1.5B (tied embeddings, 1.5B) and R1-Distill-Qwen-1.5B (1.8B) are told apart
    assert check_identity(row("Qwen/Qwen2.5-1.5B-Instruct"), *show("qwen2", "1.8B", "Q4_K_M")) is not None


def test_fields_ollama_does_not_report_are_not_held_against_the_tag():
    assert check_identity(row(LLAMA), {}, {}) is None
    assert check_identity(row(LLAMA), {"quantization_level": "unknown"}, {}) is None
    details, _ = show("llama", "8.0B", "Q4_K_M")
    assert check_identity(row(LLAMA), details, {}) is None  # no context length given
    assert check_identity(row(LLAMA), {**details, "family": None, "families": None}, {}) is None


def test_instruct_and_thinking_releases_are_told_apart_by_the_thinking_capability():
    reported = show("qwen3", "4.0B", "Q4_K_M", 262144)
    instruct, thinking = row("Qwen/Qwen3-4B-Instruct-2507"), row("Qwen/Qwen3-4B-Thinking-2507")
    assert check_identity(instruct, *reported) is None  # without capabilities there is nothing to tell
    assert check_identity(instruct, *reported, capabilities=["completion", "tools"]) is None
    assert check_identity(thinking, *reported, capabilities=["completion", "tools", "thinking"]) is None
    message = check_identity(instruct, *reported, capabilities=["completion", "tools", "thinking"])
    assert message is not None and "thinking capability (expected no thinking model)" in message
    assert check_identity(thinking, *reported, capabilities=["completion", "tools"]) is not None
    assert check_identity(row(LLAMA), *show("llama", "8.0B", "Q4_K_M"), capabilities=["thinking"]) is None


# -- the embedded engine -------------------------------------------------------------------------


def test_the_embedded_engine_serves_the_smollm2_row_under_an_honest_tag():
    assert CATALOG.resolve(SMOLLM) == BUNDLED_TAG == "smollm2:135m-instruct-q4_1"
    # llm_runner/engine/app.py's /api/show for the bundled GGUF (general.size_label "135M",
    # general.file_type 3, llama.context_length 8192, 134,515,008 parameters)
    details, info = show("llama", "135M", "Q4_1", 8192, 134515008)
    assert check_identity(row(SMOLLM), details, info) is None
    # Ollama's own smollm2:135m is the F16 file: not what the row (and the engine) serve
    message = check_identity(row(SMOLLM), *show("llama", "134.52M", "F16", 8192))
    assert message is not None and "quantisation F16 (expected Q4_1)" in message


# -- overrides -----------------------------------------------------------------------------------


def test_an_override_of_a_known_id_keeps_the_model_and_takes_the_tags_quantisation():
    catalog = Catalog({LLAMA: "llama3.1:8b-instruct-q8_0"})
    entry = catalog.entry(LLAMA)
    assert entry.overridden and not entry.enforced and entry.source == "override"
    assert entry.tag == catalog.resolve(LLAMA) == "llama3.1:8b-instruct-q8_0"
    assert entry.identity == Identity("llama", 8.0, "Q8_0", 131072)
    assert entry.vram_gb == row(LLAMA).vram_gb
    assert check_identity(entry, *show("llama", "8.0B", "Q8_0", 131072)) is None
    message = check_identity(entry, *show("qwen2", "7.6B", "Q4_K_M", 32768))
    assert message is not None and "operator mapping to llama3.1:8b-instruct-q8_0" in message
    assert "Served anyway" in message and "family qwen2 (expected llama)" in message


def test_an_override_without_a_quantisation_in_its_tag_checks_only_the_model():
    entry = Catalog({"Qwen/Qwen3-4B": "qwen3:4b"}).entry("Qwen/Qwen3-4B")
    assert entry.overridden and entry.identity.quantization is None
    assert check_identity(entry, *show("qwen3", "4.0B", "Q8_0", 40960)) is None
    assert check_identity(entry, *show("qwen3", "4.0B", "Q4_K_M", 262144)) is not None  # a warning, not an error


def test_an_override_that_restates_the_built_in_row_stays_enforced():
    entry = Catalog({LLAMA: "llama3.1:8b"}).entry(LLAMA)
    assert entry == row(LLAMA) and entry.enforced


def test_an_override_of_an_unknown_id_knows_only_what_its_tag_says():
    catalog = Catalog({"acme/Fine-Tune-8B": "my-llama:latest", "acme/Other": "mine:8b-q5_K_M"})
    plain, quantised = catalog.entry("acme/Fine-Tune-8B"), catalog.entry("acme/Other")
    assert plain.overridden and not plain.identity.known and plain.vram_gb is None
    assert check_identity(plain, *show("qwen2", "7.6B", "Q4_K_M")) is None
    assert quantised.identity == Identity(quantization="Q5_K_M")
    assert check_identity(quantised, *show("llama", "8.0B", "Q4_K_M")) is not None


def test_overrides_from_the_file_and_the_environment_are_flagged(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"acme/From-File": "file:latest", LLAMA: "llama3.1:8b-instruct-q4_K_M"}))
    catalog = Catalog.load({"acme/From-Env": "env:latest", LLAMA: "llama3.1:8b-instruct-fp16"}, path)
    assert catalog.entry("acme/From-File").overridden and catalog.entry("acme/From-Env").overridden
    assert catalog.entry(LLAMA).tag == "llama3.1:8b-instruct-fp16"  # the environment wins
    assert catalog.entry(LLAMA).identity.quantization == "F16"
    assert not catalog.entry(QWEN).overridden


def test_a_bad_map_file_is_a_catalog_error(tmp_path):
    path = tmp_path / "map.json"
    path.write_text('["not", "an", "object"]')
    with pytest.raises(CatalogError, match="must be a JSON object"):
        Catalog.load({}, path)
    with pytest.raises(CatalogError, match="cannot read"):
        Catalog.load({}, tmp_path / "missing.json")


# -- passthrough ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "tag", "quant"),
    [
        (
            "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M",
            "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M",
            "Q4_K_M",
        ),
        (
            "bartowski/Llama-3.2-3B-Instruct-GGUF:q8_0",
            "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:q8_0",
            "Q8_0",
        ),
        ("bartowski/Llama-3.2-3B-Instruct-GGUF", "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF", None),
        ("hf.co/unsloth/Qwen3-8B-GGUF:UD-Q4_K_XL", "hf.co/unsloth/Qwen3-8B-GGUF:UD-Q4_K_XL", None),
        ("huggingface.co/org/Model-GGUF:F16", "huggingface.co/org/Model-GGUF:F16", "F16"),
    ],
)
def test_gguf_passthrough_is_checked_for_the_quantisation_its_tag_names(model_id: str, tag: str, quant: str | None):
    entry = CATALOG.entry(model_id)
    assert entry.passthrough and entry.enforced and entry.source == "passthrough"
    assert entry.tag == CATALOG.resolve(model_id) == tag and entry.vram_gb is None
    assert entry.identity == Identity(quantization=quant)
    # family and size are whatever the repo holds
    assert check_identity(entry, *show("qwen2", "70.6B", quant or "Q4_K_M", 4096)) is None
    if quant is not None:
        message = check_identity(entry, *show("llama", "3.2B", "IQ4_XS"))
        assert message is not None and f"quantisation IQ4_XS (expected {quant})" in message
        assert "Name the quantisation you want" in message


# -- errors, helpers -----------------------------------------------------------------------------


def test_unknown_ids_still_say_how_to_fix_them():
    with pytest.raises(CatalogError, match="LLM_RUNNER_MODEL_MAP"):
        CATALOG.entry("acme/Unknown-7B")
    with pytest.raises(CatalogError, match="case-sensitive, did you mean 'microsoft/phi-4'"):
        CATALOG.resolve("microsoft/Phi-4")
    with pytest.raises(CatalogError, match="is an Ollama tag; use its HF id 'Qwen/Qwen3-4B'"):
        CATALOG.resolve("qwen3:4b-q4_K_M")
    assert model_slug(LLAMA) == "meta-llama--Meta-Llama-3.1-8B-Instruct"


@pytest.mark.parametrize(
    ("text", "billions"),
    [("8.0B", 8.0), ("134.52M", 0.13452), ("7B", 7.0), ("8x7B", 56.0), ("1.2T", 1200.0), ("", None), ("big", None)],
)
def test_parse_params(text: str, billions: float | None):
    parsed = parse_params(text)
    assert parsed == pytest.approx(billions) if billions is not None else parsed is None


@pytest.mark.parametrize(
    ("tag", "quant"),
    [
        ("qwen3:4b-q4_K_M", "Q4_K_M"),
        ("tinyllama:1.1b-chat-v1-q4_0", "Q4_0"),
        ("llama3.1:8b-instruct-fp16", "F16"),
        ("hf.co/org/Repo-GGUF:IQ4_XS", "IQ4_XS"),
        ("llama3.1:8b", None),
        ("mine:q8", None),
        ("smollm2", None),
        ("hf.co/org/Repo-GGUF", None),
    ],
)
def test_quant_from_tag(tag: str, quant: str | None):
    assert quant_from_tag(tag) == quant


def test_observed_reads_what_ollama_reports():
    details, info = show("llama", "8.0B", "q4_k_m", 131072, 8030261248)
    seen = observed(details, info)
    assert seen == Identity("llama", pytest.approx(8.030261248), "Q4_K_M", 131072)
    assert str(seen) == "llama 8.0B Q4_K_M ctx 131072"
    assert str(Identity(quantization="Q8_0")) == "Q8_0"
    assert str(Identity()) == "?" and Identity().model() == "?"
    assert normalize_quant("unknown") is None and normalize_quant("fp32") == "F32"
