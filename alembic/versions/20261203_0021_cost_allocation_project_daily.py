"""`v_cost_allocation_project_daily`: the allocated bill per day and project, for BI

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 08:05:00

"Spend per project for a month" over `v_cost_allocation_daily` groups a large organization's
month at that view's grain first (1.2 million allocation rows, 355,000 groups of day, project,
key, user, model and kind, each joined to its names): 2.7 s. This view sums
`cost_allocation_daily` per day and project before it joins the project's name: 0.36 s for the
same month, with the same rounding (each allocated share rounded to the micro-dollar before
summing, so it adds up to `v_cost_allocation_daily` and to the bill exactly) and the same
`simulated` rule as every view (migration 0015). Frozen like every migration: the SQL is
written out here.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
VIEW = f"""
CREATE VIEW {S}.v_cost_allocation_project_daily AS
SELECT a.organization, a.usage_date, a.project_id,
       coalesce(p.name, a.project_id, '(default project)') AS project_name,
       a.billed_usd, a.estimated_usd, a.unallocated_usd, a.line_items, a.currency,
       coalesce((SELECT bool_or(l.simulated) FROM {S}.usage_loads l
                 WHERE l.organization = a.organization AND l.usage_date = a.usage_date), false)
           AS simulated
FROM (
    SELECT organization, usage_date, project_id,
           sum(round(allocated_usd, 6)) AS billed_usd,
           round(coalesce(sum(estimated_usd), 0), 6) AS estimated_usd,
           coalesce(sum(round(allocated_usd, 6)) FILTER (WHERE unallocated_reason IS NOT NULL),
                    0) AS unallocated_usd,
           count(*) AS line_items,
           min(currency) AS currency
    FROM {S}.cost_allocation_daily
    GROUP BY organization, usage_date, project_id
) a
LEFT JOIN {S}.projects p ON p.organization = a.organization AND p.id = a.project_id
"""
COMMENT = (
    f"COMMENT ON VIEW {S}.v_cost_allocation_project_daily IS 'The billed spend per UTC day and "
    "project (cost_allocation_daily summed, each share rounded to the micro-dollar first): adds "
    "up to v_cost_allocation_daily and to the bill. For spend per project over long periods.'"
)
GRANT = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {S}.v_cost_allocation_project_daily TO usage_readonly;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(VIEW)
    op.execute(COMMENT)
    op.execute(GRANT)


def downgrade() -> None:
    op.execute(f"DROP VIEW {S}.v_cost_allocation_project_daily")
