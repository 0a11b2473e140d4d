"""The documentation stays true: the settings table is the one Settings generates, and every link
from the README into docs/ and between the pages lands on a file and heading that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from llm_runner.ops.settings_doc import BEGIN, END, table_cell, with_table
from llm_runner.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def settings_doc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_runner.ops.settings_doc", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def without_code_fences(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)


def without_code(markdown: str) -> str:
    """The text links can be in: fenced blocks and code spans removed."""
    return re.sub(r"`[^`\n]*`", "", without_code_fences(markdown))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, spaces as '-'."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", without_code_fences(page.read_text()), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def local_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(without_code(page.read_text())) if not re.match(r"[a-z]+:", t)]


def test_the_settings_table_in_the_docs_is_the_one_settings_generates():
    document = CONFIGURATION.read_text()
    assert with_table(document) == document, (
        "docs/configuration.md's settings table is out of date: "
        "run python -m llm_runner.ops.settings_doc --write docs/configuration.md"
    )


def test_the_table_names_every_setting_with_its_variables_and_description():
    table = CONFIGURATION.read_text().split(BEGIN)[1].split(END)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        (row,) = [r for r in rows if f"| `{name}` |" in r]
        assert f"`LLM_RUNNER_{name.upper()}`" in row
        assert field.description and table_cell(field.description) in row
    assert "`MODEL_ID`<br>`LLM_RUNNER_MODEL_ID`" in table  # aliases are listed too


def test_the_command_rewrites_a_stale_table_and_refuses_a_file_without_markers(tmp_path):
    stale = tmp_path / "configuration.md"
    stale.write_text(f"# Settings\n\n{BEGIN}\n| an old table |\n{END}\n\nafter\n")
    result = settings_doc("--write", str(stale))
    assert result.returncode == 0, result.stderr
    assert stale.read_text() == with_table(stale.read_text())
    assert "| an old table |" not in stale.read_text() and stale.read_text().endswith(f"{END}\n\nafter\n")
    printed = settings_doc()
    assert printed.returncode == 0 and printed.stdout in stale.read_text()

    bare = tmp_path / "bare.md"
    bare.write_text("# no markers here\n")
    refused = settings_doc("--write", str(bare))
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "markers" in refused.stderr and "Traceback" not in refused.stderr


def test_every_link_between_the_readme_and_the_docs_resolves():
    broken = []
    for page in PAGES:
        for target in local_links(page):
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in local_links(ROOT / "README.md")}
    assert DOCS.exists() and not [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
