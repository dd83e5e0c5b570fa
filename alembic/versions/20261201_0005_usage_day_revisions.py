"""revision history of each usage day

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00

Every load of a UTC day appends a row to `usage_day_revisions` (in the day's own transaction)
with the figures it replaced and the ones it wrote; `usage_loads` keeps the day's current totals
so that a reload does not have to scan the rows it is about to delete. Days landed before this
migration have NULL totals there: their next reload sums their rows once, inside its
transaction, before the delete. Two views read the history for BI: per load, and summarised by
how many days after the day closed the late usage arrived (the evidence for
USAGE_LOOKBACK_DAYS).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"

#: One row per load; negative `days_after_close` means the day was still open (today).
REVISIONS_VIEW = f"""
CREATE VIEW {S}.v_usage_day_revisions AS
WITH r AS (
    SELECT
        r.*,
        extract(epoch FROM r.loaded_at - ((r.usage_date + 1)::timestamp AT TIME ZONE 'UTC'))
            AS seconds_after_close,
        r.previous_input_tokens + r.previous_output_tokens AS previous_tokens,
        r.new_input_tokens + r.new_output_tokens AS new_tokens
    FROM {S}.usage_day_revisions r
)
SELECT
    r.usage_date,
    r.revision,
    r.dagster_run_id,
    r.loaded_at,
    r.day_closed,
    round(r.seconds_after_close / 3600, 1) AS hours_after_close,
    floor(r.seconds_after_close / 86400)::integer AS days_after_close,
    r.bucket_count,
    r.previous_row_count,
    r.new_row_count,
    r.new_row_count - r.previous_row_count AS row_change,
    r.new_row_count - first_value(coalesce(r.previous_row_count, r.new_row_count)) OVER w
        AS row_change_vs_first,
    r.previous_tokens,
    r.new_tokens,
    r.new_tokens - r.previous_tokens AS token_change,
    r.new_tokens - first_value(coalesce(r.previous_tokens, r.new_tokens)) OVER w
        AS token_change_vs_first,
    r.new_num_model_requests - r.previous_num_model_requests AS request_change,
    r.previous_input_tokens, r.new_input_tokens,
    r.previous_output_tokens, r.new_output_tokens,
    r.previous_num_model_requests, r.new_num_model_requests
FROM r
WINDOW w AS (PARTITION BY r.usage_date ORDER BY r.revision)
"""

#: Reloads grouped by how long after the day closed they ran: the tokens each brought in
#: (usage that arrived since the load before), and their share of the days' latest totals.
LATE_ARRIVAL_VIEW = f"""
CREATE VIEW {S}.v_usage_late_arrival AS
WITH reloads AS (
    SELECT
        v.*,
        last_value(v.new_tokens) OVER (
            PARTITION BY v.usage_date ORDER BY v.revision
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS latest_tokens
    FROM {S}.v_usage_day_revisions v
    WHERE v.previous_tokens IS NOT NULL
)
SELECT
    days_after_close,
    count(*) AS reloads,
    count(DISTINCT usage_date) AS days,
    sum(row_change) AS rows_added,
    sum(token_change) AS tokens_added,
    sum(greatest(-token_change, 0)) AS tokens_lost,
    round(100.0 * sum(token_change) / nullif(sum(latest_tokens), 0), 4)
        AS pct_of_latest_tokens
FROM reloads
GROUP BY days_after_close
"""


def upgrade() -> None:
    for name in ("input_tokens", "output_tokens", "num_model_requests"):
        op.add_column("usage_loads", sa.Column(name, sa.BigInteger(), nullable=True), schema=S)
    op.create_table(
        "usage_day_revisions",
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column(
            "revision",
            sa.Integer(),
            nullable=False,
            comment="1 for the day's first recorded load, then 2, 3, ...",
        ),
        sa.Column("dagster_run_id", sa.String(length=64), nullable=True),
        sa.Column(
            "loaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "day_closed",
            sa.Boolean(),
            nullable=False,
            comment="The UTC day had ended when it was fetched (false: today, partial).",
        ),
        sa.Column("bucket_count", sa.Integer(), nullable=False),
        sa.Column(
            "previous_row_count",
            sa.Integer(),
            nullable=True,
            comment="NULL: nothing was loaded for the day before.",
        ),
        sa.Column("new_row_count", sa.Integer(), nullable=False),
        sa.Column("previous_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("new_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("previous_output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("new_output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("previous_num_model_requests", sa.BigInteger(), nullable=True),
        sa.Column("new_num_model_requests", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("usage_date", "revision", name=op.f("pk_usage_day_revisions")),
        schema=S,
        comment="One row per load of a UTC day of usage: previous and new figures.",
    )
    op.execute(REVISIONS_VIEW)
    op.execute(LATE_ARRIVAL_VIEW)
    # usage_readonly reads new tables and views through 0002's default privileges.


def downgrade() -> None:
    op.execute(f"DROP VIEW {S}.v_usage_late_arrival")
    op.execute(f"DROP VIEW {S}.v_usage_day_revisions")
    op.drop_table("usage_day_revisions", schema=S)
    for name in ("num_model_requests", "output_tokens", "input_tokens"):
        op.drop_column("usage_loads", name, schema=S)
