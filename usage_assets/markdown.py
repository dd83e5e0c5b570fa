"""Markdown tables for Dagster metadata, built from strings the Admin API sent.

Project, key and model names are whatever someone typed: a `|` would split a table cell, a
newline would end the row, and `<script>` is HTML. Every such string goes through `md_cell`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

_CELL = str.maketrans(
    {
        "\\": "\\\\",  # else a trailing backslash would escape the cell's closing pipe
        "|": "\\|",
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "\r": " ",
        "\n": " ",
    }
)


def md_cell(value: object) -> str:
    """`value` as the text of one Markdown table cell: pipes and backslashes escaped, HTML
    shown as text, line breaks as spaces."""
    return str(value).replace("\r\n", "\n").translate(_CELL)


def md_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Sequence[int] = ()
) -> str:
    """A Markdown table; every cell, headers included, goes through `md_cell`. Columns whose
    index is in `right` are right-aligned (numbers)."""
    lines = [
        "| " + " | ".join(md_cell(h) for h in headers) + " |",
        "|" + "|".join("---:" if at in right else "---" for at in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


DEFAULT_PROJECT = "(default project)"


def named(identifier: str | None, name: str | None, *, none: str = DEFAULT_PROJECT) -> str:
    """An id as a FinOps reader knows it: "Support Copilot (proj_abc)", the name first and the
    id beside it (names change and repeat; ids do not). An id whose name is not known yet
    (the names assets have not run) is shown alone; NULL (the default project, no key) is
    `none`."""
    if identifier is None:
        return none
    return f"{name} ({identifier})" if name else identifier
