"""Hourly usage tables: a smaller statistics sample for the dimension columns

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03 14:50:00

After migration 0020 only the dimensions (organization, bucket_start, ids, model, flags, the
`result` rest) were sampled, at PostgreSQL's default target of 100: 30,000 rows, which is every
page of a small endpoint's month and a third of a completions month, read again by every
ANALYZE of a partition and of its parent. The queries on the hourly tables read whole days and
aggregate them; none needs more than a coarse histogram of bucket_start and the most common
values of a few ids. At target 10 (3,000 rows) the ANALYZE of a month partition of completions
took 57 ms instead of 600-790 ms, of embeddings 29 ms instead of 235 ms, and its parent 28 ms
instead of 195-220 ms. `SET STATISTICS` on the parent applies to its partitions, and
`usage_assets.warehouse.partitions` gives a new month's partition its parent's targets.

The one estimate that needs more: migration 0003's count of completions' daily cost groups
(`st_completions_usage_daily_cost_group`) wandered by a few groups either side of its value
from 3,000 rows, and is stable from 6,000 (its own target of 20; ANALYZE samples for the
largest target of a table's columns and statistics objects, so completions partitions sample
6,000 rows, the other endpoints 3,000). Downgrade restores the default targets.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0025"
down_revision: str | Sequence[str] | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The statistics target of the dimension columns (rows sampled: 300 times this).
DIMENSION_TARGET = 10

#: The multi-column statistics of completions' daily cost groups (migration 0003), and their
#: target.
COST_GROUP_STATISTICS = "openai_usage.st_completions_usage_daily_cost_group"
COST_GROUP_TARGET = 20

#: Every dimension column of a (partitioned) hourly usage table: all but the bigint metrics,
#: which migration 0020 took out of the sample.
DIMENSION_COLUMNS = """
SELECT c.relname, a.attname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'openai_usage' AND c.relkind = 'p' AND c.relname LIKE '%\\_usage\\_hourly'
  AND a.atttypid <> 'bigint'::regtype
ORDER BY 1, a.attnum
"""


def _set_targets(target: int) -> None:
    columns: dict[str, list[str]] = {}
    for table, column in op.get_bind().execute(text(DIMENSION_COLUMNS)):
        columns.setdefault(table, []).append(column)
    for table, names in columns.items():
        alter = ", ".join(f'ALTER COLUMN "{name}" SET STATISTICS {target}' for name in names)
        op.execute(f'ALTER TABLE openai_usage."{table}" {alter}')


def upgrade() -> None:
    _set_targets(DIMENSION_TARGET)
    op.execute(f"ALTER STATISTICS {COST_GROUP_STATISTICS} SET STATISTICS {COST_GROUP_TARGET}")


def downgrade() -> None:
    op.execute(f"ALTER STATISTICS {COST_GROUP_STATISTICS} SET STATISTICS -1")
    _set_targets(-1)
