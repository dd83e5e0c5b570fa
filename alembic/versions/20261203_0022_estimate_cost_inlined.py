"""`estimate_cost_usd()` as one expression the planner inlines; `estimate_by_kind()`

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 11:20:00

`estimate_cost_usd()` (migration 0004) summed the rows of `estimate_cost_by_kind()`: a function
with a FROM clause, which PostgreSQL runs through the SQL-function executor for every row it
prices (28 us a row; 4.9 s of the 8.8 s that pricing a large organization's month took). The
same rules written as one expression (the five token kinds' costs added; NULL when any kind's
rate is missing, as before, since `+` with NULL is NULL) are inlined into the query that calls
them: 3.0 s for the month, the same costs to the last digit (numeric addition is exact).

`estimate_by_kind()` is `estimate_cost_by_kind()` with each billed kind's tokens beside its
cost, for the allocation of the bill (which shares a line item by the tokens or cost of its
kind, and had its own copy of which token kinds make which billed kind).

All three are written from one list of the billed kinds below (their tokens and costs), so the
total, the per-kind costs and the per-kind tokens cannot drift apart. Frozen like every
migration: the SQL is written out here.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
R = f"{S}.tokens_times_rate"

KIND_ARGS = f"""
    p {S}.model_prices, text_uncached numeric, text_cached numeric, cache_write_30m numeric,
    cache_write_12h numeric, audio_uncached numeric, audio_cached numeric,
    image_uncached numeric, image_cached numeric, out_text numeric, out_audio numeric,
    out_image numeric"""

ARG_NAMES = (
    "text_uncached, text_cached, cache_write_30m, cache_write_12h, audio_uncached, "
    "audio_cached, image_uncached, image_cached, out_text, out_audio, out_image"
)

#: Each billed line-item kind's tokens (the token kinds it is made of).
KIND_TOKENS = {
    "input": "text_uncached + audio_uncached + image_uncached",
    "cached input": "text_cached + audio_cached + image_cached",
    "cache writes": "cache_write_30m",
    "cache writes - 12hr": "cache_write_12h",
    "output": "out_text + out_audio + out_image",
}

#: (billed line-item kind, its cost) as in migration 0004: the rules' one place.
KIND_COSTS = [
    (
        "input",
        f"{R}(text_uncached, p.input_mtok)"
        f" + {R}(audio_uncached, p.input_audio_mtok)"
        f" + {R}(image_uncached, coalesce(p.input_image_mtok, p.input_mtok))",
    ),
    (
        "cached input",
        f"{R}(text_cached, coalesce(p.cache_read_mtok, p.input_mtok))"
        f" + {R}(audio_cached, coalesce(p.cache_audio_read_mtok, p.input_audio_mtok))"
        f" + {R}(image_cached, coalesce(p.cache_image_read_mtok, p.cache_read_mtok,"
        " p.input_image_mtok, p.input_mtok))",
    ),
    ("cache writes", f"{R}(cache_write_30m, coalesce(p.cache_write_mtok, p.input_mtok))"),
    (
        "cache writes - 12hr",
        f"{R}(cache_write_12h, coalesce(p.cache_write_12h_mtok, p.cache_write_mtok, p.input_mtok))",
    ),
    (
        "output",
        f"{R}(out_text, p.output_mtok)"
        f" + {R}(out_audio, p.output_audio_mtok)"
        f" + {R}(out_image, coalesce(p.output_image_mtok, p.output_mtok))",
    ),
]

_ROWS = ",\n    ".join(f"('{kind}', {cost})" for kind, cost in KIND_COSTS)
_ROWS_WITH_TOKENS = ",\n    ".join(
    f"('{kind}', {KIND_TOKENS[kind]}, {cost})" for kind, cost in KIND_COSTS
)
_SUM = "\n         + ".join(f"({cost})" for _, cost in KIND_COSTS)

BY_KIND = f"""
CREATE OR REPLACE FUNCTION {S}.estimate_cost_by_kind({KIND_ARGS})
RETURNS TABLE (line_item_kind text, cost_usd numeric) LANGUAGE sql STABLE AS $$
    VALUES
    {_ROWS}
$$
"""

WITH_TOKENS = f"""
CREATE FUNCTION {S}.estimate_by_kind({KIND_ARGS})
RETURNS TABLE (line_item_kind text, tokens numeric, cost_usd numeric) LANGUAGE sql STABLE AS $$
    VALUES
    {_ROWS_WITH_TOKENS}
$$
"""

TOTAL = f"""
CREATE OR REPLACE FUNCTION {S}.estimate_cost_usd({KIND_ARGS})
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT {_SUM}
$$
"""

#: Migration 0004's total, for downgrade.
OLD_TOTAL = f"""
CREATE OR REPLACE FUNCTION {S}.estimate_cost_usd({KIND_ARGS})
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_or(k.cost_usd IS NULL) THEN NULL ELSE sum(k.cost_usd) END
    FROM {S}.estimate_cost_by_kind(p, {ARG_NAMES}) k
$$
"""


def upgrade() -> None:
    op.execute(BY_KIND)
    op.execute(WITH_TOKENS)
    op.execute(TOTAL)


def downgrade() -> None:
    op.execute(OLD_TOTAL)
    op.execute(f"DROP FUNCTION {S}.estimate_by_kind")
