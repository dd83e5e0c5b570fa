"""One description per column: the models' comments, rendered into the README's table dictionary
(and, by migration, into PostgreSQL's COMMENT ON; see test_migrations)."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, UniqueConstraint

from usage_assets import settings
from usage_assets.warehouse import table_dictionary
from usage_assets.warehouse.models import Base
from usage_assets.warehouse.table_dictionary import (
    REGENERATE,
    documented_tables,
    regenerate,
    render_table,
)

README = settings.PROJECT_ROOT / "README.md"
SCRIPT = settings.PROJECT_ROOT / "scripts" / "table_dictionary.py"


def test_every_table_and_column_has_a_comment() -> None:
    missing = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if not (column.comment or "").strip()
    ]
    untitled = [t.name for t in Base.metadata.tables.values() if not (t.comment or "").strip()]
    assert not missing, f"columns without a comment= in the models: {missing}"
    assert not untitled, f"tables without a comment in __table_args__: {untitled}"


def test_the_readme_table_dictionary_is_generated_from_the_models() -> None:
    readme = README.read_text()
    fresh = regenerate(readme)
    diff = "\n".join(
        list(difflib.unified_diff(readme.splitlines(), fresh.splitlines(), lineterm=""))[:40]
    )
    assert fresh == readme, f"README.md's table dictionary is out of date: run {REGENERATE}\n{diff}"


def test_the_readme_documents_every_table_exactly_once() -> None:
    documented = documented_tables(README.read_text())
    assert sorted(documented) == sorted(t.name for t in Base.metadata.tables.values())


def test_every_column_comment_is_in_the_readme_beside_its_column() -> None:
    """Read back from the README's Markdown, independently of the renderer: each table's block
    has a row per column whose meaning is the model's comment."""
    readme = README.read_text()
    blocks = {
        m["what"].removeprefix("columns of "): m["body"]
        for m in re.finditer(
            r"<!-- generated from the models by scripts/table_dictionary\.py: (?P<what>.+?) -->"
            r"(?P<body>.*?)<!-- end of generated (?P=what) -->",
            readme,
            flags=re.S,
        )
    }
    for table in Base.metadata.tables.values():
        body = blocks.get(table.name) or blocks["the other usage tables"]
        rows = {}
        for line in body.splitlines():
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if len(cells) == 3 and cells[0].startswith("`"):
                rows.setdefault(cells[0].split("`")[1], []).append(cells[2])
        for column in table.columns:
            expected = column.comment.replace("|", "\\|").replace("<", "&lt;")  # type: ignore[union-attr]
            assert expected in rows.get(column.name, []), (table.name, column.name)


def test_a_changed_comment_makes_the_readme_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = README.read_text()
    column = Base.metadata.tables["openai_usage.costs_daily"].c.amount_usd
    monkeypatch.setattr(column, "comment", "What OpenAI billed | in <USD>.")
    fresh = regenerate(readme)
    assert fresh != readme
    assert "| `amount_usd` | numeric | What OpenAI billed \\| in &lt;USD>. |" in fresh


def test_a_table_renders_its_keys_types_and_escaped_comments() -> None:
    table = Table(
        "example",
        MetaData(),
        Column("organization", Text, primary_key=True, comment="The org."),
        Column("day", Integer, primary_key=True, comment="A day."),
        Column("label", Text, nullable=True, comment="'genai-prices <version>' | else"),
        UniqueConstraint("organization", "label", postgresql_nulls_not_distinct=True),
        comment="Examples.",
    )
    rendered = render_table(table)
    assert rendered.startswith(
        "Examples. Primary key (`organization`, `day`). "
        "Unique on (`organization`, `label`), NULLs equal."
    )
    assert "| `label` | text, null | 'genai-prices &lt;version>' \\| else |" in rendered
    assert "| `day` | integer | A day. |" in rendered
    table.c.day.comment = None
    with pytest.raises(ValueError, match=r"example\.day has no comment"):
        render_table(table)


def test_the_script_checks_and_regenerates_a_readme(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert run("--check").returncode == 0
    stale = tmp_path / "README.md"
    current = README.read_text()
    stale.write_text(
        current.replace("| Surrogate key (changes when the day is reloaded). |", "| ? |")
    )
    assert stale.read_text() != current
    checked = run("--check", "--readme", str(stale))
    assert checked.returncode == 1
    assert f"run {REGENERATE}" in checked.stderr
    assert run("--readme", str(stale)).returncode == 0
    assert stale.read_text() == current
    assert table_dictionary.main(["--check", "--readme", str(stale)]) == 0
