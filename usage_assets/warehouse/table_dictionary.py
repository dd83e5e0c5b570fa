"""The README's table dictionary, generated from the models' column and table comments.

A column's comment is its one description: PostgreSQL has it (COMMENT ON, what psql `\\d+`,
Metabase and Superset show), the Dagster UI shows it (`table_schema`), and the README's column
tables are rendered from it here, so none of them can drift from the others. The README marks
each generated block:

    <!-- generated from the models by scripts/table_dictionary.py: columns of costs_daily -->
    ...
    <!-- end of generated columns of costs_daily -->

`columns of <table>` renders one table's comment, keys and columns; `columns of the other usage
tables` renders the usage endpoints but completions (one hourly table each) together. Run
`python scripts/table_dictionary.py` after changing a comment (`--check` only compares).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Column, PrimaryKeyConstraint, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql

from usage_assets.admin_api.endpoints import COMPLETIONS, USAGE_ENDPOINTS
from usage_assets.warehouse.models import CHECKED_GRAIN, USAGE_TABLES, Base

README = Path(__file__).resolve().parents[2] / "README.md"
REGENERATE = "python scripts/table_dictionary.py"
BLOCK = re.compile(
    r"<!-- generated from the models by scripts/table_dictionary\.py: (?P<what>[^>\n]+?) -->\n"
    r".*?"
    r"<!-- end of generated (?P=what) -->",
    re.S,
)
OTHER_USAGE_TABLES = "columns of the other usage tables"
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def tables_by_name() -> dict[str, Table]:
    return {table.name: table for table in Base.metadata.tables.values()}


def other_usage_tables() -> list[Table]:
    """The hourly tables of every usage endpoint but completions, in endpoint order."""
    return [USAGE_TABLES[e.name] for e in USAGE_ENDPOINTS if e is not COMPLETIONS]


def column_type(column: Column[object]) -> str:
    """The PostgreSQL type as psql names it (timestamptz, text[], ...), ', null' if nullable."""
    name = column.type.compile(dialect=_DIALECT).lower()
    name = name.replace("timestamp with time zone", "timestamptz")
    return f"{name}, null" if column.nullable else name


def _key(columns: Sequence[Column[object]]) -> str:
    return "(" + ", ".join(code(c.name) for c in columns) + ")"


def keys(table: Table) -> str:
    """The table's primary key (unless it is a surrogate `id`) and unique keys, in a line."""
    parts = []

    # The primary key first, then the unique keys by their columns: a constraint's name may be
    # unset until DDL (naming conventions), so it is no stable order.
    def order(constraint: object) -> tuple[int, list[str]]:
        columns = [c.name for c in constraint.columns]  # type: ignore[attr-defined]
        return (0 if isinstance(constraint, PrimaryKeyConstraint) else 1, columns)

    for constraint in sorted(table.constraints, key=order):
        columns = list(constraint.columns)  # type: ignore[attr-defined]
        if isinstance(constraint, PrimaryKeyConstraint) and [c.name for c in columns] not in (
            [],
            ["id"],
        ):
            parts.append(f"Primary key {_key(columns)}.")
        elif isinstance(constraint, UniqueConstraint):
            nulls = constraint.dialect_options["postgresql"]["nulls_not_distinct"]
            parts.append(f"Unique on {_key(columns)}{', NULLs equal' if nulls else ''}.")
    if grain := table.info.get(CHECKED_GRAIN):
        parts.append(
            f"One row per {_key([table.c[name] for name in grain])}, NULLs equal: checked when a "
            "day is written (no unique index in the database)."
        )
    if table.dialect_options["postgresql"]["partition_by"]:
        parts.append(
            "Partitioned by UTC month of `bucket_start` "
            f"({code(table.name + '_2025_10')}, ..., and {code(table.name + '_default')} for "
            "rows written outside the app); no unique key in the database: a group listed twice "
            "in one hour is refused while its day is written."
        )
    return " ".join(parts)


def _comment(column: Column[object]) -> str:
    if not column.comment:
        raise ValueError(f"{column.table.name}.{column.name} has no comment")
    return column.comment


def text_cell(text: str) -> str:
    """Our own wording as a README table cell: a `|` would end the cell, and `<version>` would
    be taken for an HTML tag and vanish."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def code(name: str) -> str:
    return f"`{name}`"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of cells already escaped (`text_cell`) or code spans (`code`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_table(table: Table) -> str:
    """One table: its comment and keys, then every column with its type and comment."""
    if not table.comment:
        raise ValueError(f"{table.name} has no table comment")
    heading = " ".join(part for part in (text_cell(table.comment), keys(table)) if part)
    rows = [(code(c.name), column_type(c), text_cell(_comment(c))) for c in table.columns]
    return heading + "\n\n" + markdown_table(["Column", "Type", "Meaning"], rows)


def render_other_usage_tables() -> str:
    """The usage endpoints but completions: which table has which dimensions and metrics, then
    one row per distinct column (a column that means something else in some tables gets a row
    per meaning, naming the tables)."""
    endpoints = [e for e in USAGE_ENDPOINTS if e is not COMPLETIONS]
    summary = [
        (
            code(e.table_name),
            code(f"usage/{e.name}"),
            ", ".join(code(d.name) for d in e.dimensions),
            ", ".join(code(m.name) + (" (a gauge)" if m.gauge else "") for m in e.metrics),
        )
        for e in endpoints
    ]
    variants: dict[tuple[str, str, str], list[str]] = {}
    for table in other_usage_tables():
        for column in table.columns:
            key = (column.name, column_type(column), _comment(column))
            variants.setdefault(key, []).append(table.name)
    meanings: dict[str, int] = {}
    for name, _, _ in variants:
        meanings[name] = meanings.get(name, 0) + 1
    everywhere = {
        name for (name, _, _), tables in variants.items() if len(tables) == len(endpoints)
    }
    rows = []
    # The columns every table has first (the shape of completions_usage_hourly), then the rest.
    ordered = sorted(variants.items(), key=lambda item: item[0][0] not in everywhere)
    for (name, type_, comment), tables in ordered:
        where = ""
        if meanings[name] > 1:
            where = " in " + ", ".join(code(t) for t in tables)
        rows.append((code(name) + where, type_, text_cell(comment)))
    return (
        markdown_table(["Table (= asset)", "Endpoint", "Dimensions", "Metrics"], summary)
        + "\n\n"
        + markdown_table(["Column", "Type", "Meaning"], rows)
    )


def render_block(what: str) -> str:
    """The generated text of the block `what` (without its markers)."""
    if what == OTHER_USAGE_TABLES:
        return render_other_usage_tables()
    name = what.removeprefix("columns of ")
    table = tables_by_name().get(name)
    if not what.startswith("columns of ") or table is None:
        raise ValueError(f"README block {what!r}: no such table")
    return render_table(table)


def regenerate(readme: str) -> str:
    """`readme` with every generated block rendered afresh from the models."""

    def block(match: re.Match[str]) -> str:
        what = match["what"]
        return (
            f"<!-- generated from the models by scripts/table_dictionary.py: {what} -->\n\n"
            f"{render_block(what)}\n\n"
            f"<!-- end of generated {what} -->"
        )

    return BLOCK.sub(block, readme)


def documented_tables(readme: str) -> list[str]:
    """The tables whose columns `readme` has a generated block of, in README order."""
    names: list[str] = []
    for match in BLOCK.finditer(readme):
        if match["what"] == OTHER_USAGE_TABLES:
            names += [table.name for table in other_usage_tables()]
        else:
            names.append(match["what"].removeprefix("columns of "))
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only report whether README.md is up to date"
    )
    parser.add_argument("--readme", type=Path, default=README, help=f"default: {README}")
    args = parser.parse_args(argv)
    readme: Path = args.readme
    current = readme.read_text()
    fresh = regenerate(current)
    missing = sorted(set(tables_by_name()) - set(documented_tables(current)))
    if missing:
        print(f"{readme.name} has no generated block for: {', '.join(missing)}", file=sys.stderr)
        return 1
    if fresh == current:
        print(f"{readme.name}'s table dictionary is up to date")
        return 0
    if args.check:
        print(f"{readme.name}'s table dictionary is out of date: run {REGENERATE}", file=sys.stderr)
        return 1
    readme.write_text(fresh)
    print(f"{readme.name}'s table dictionary regenerated from the models")
    return 0
