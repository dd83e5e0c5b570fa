"""Usage of every other endpoint per day and key: one pass over its hourly rows

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03 11:40:00

`unit_usage_daily` does for the eight endpoints priced per unit what `completions_usage_daily`
(migration 0019) does for completions: their usage per UTC day, kind, project, API key, user,
model and priced dimensions. The estimate (`usage_daily_costs`) rebuilds it for the days it
prices, in the same transaction, and prices from it; the allocation reads it instead of
aggregating the hourly rows again. The upgrade fills it for every day already priced. Frozen
like every migration: the SQL is written out here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
ORGANIZATION_COMMENT = (
    "The OpenAI organization the row belongs to: OPENAI_ORGANIZATION of the code location that "
    "wrote it, else its USAGE_ORGANIZATION_LABEL (default 'default', also for rows stored "
    "before migration 0009)."
)


def upgrade() -> None:
    op.create_table(
        "unit_usage_daily",
        sa.Column("organization", sa.Text(), server_default="default", nullable=False,
                  comment=ORGANIZATION_COMMENT),
        sa.Column("usage_date", sa.Date(), nullable=False, comment="The UTC day of the usage."),
        sa.Column("usage_kind", sa.Text(), nullable=False,
                  comment="The endpoint (a usage kind of usage_daily_costs)."),
        sa.Column("project_id", sa.Text(), nullable=True,
                  comment="Project; NULL: the default project (or not grouped)."),
        sa.Column("api_key_id", sa.Text(), nullable=True,
                  comment="API key; NULL where the endpoint has none (vector stores, code "
                  "interpreter) or for usage without a key."),
        sa.Column("user_id", sa.Text(), nullable=True,
                  comment="User; NULL where the endpoint has none, or no user."),
        sa.Column("model", sa.Text(), nullable=True,
                  comment="As reported; NULL for kinds without a model."),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), nullable=False,
                  comment="The priced dimensions, as in usage_daily_costs."),
        sa.Column("quantity", sa.Numeric(), nullable=False,
                  comment="The day's usage in the endpoint's own unit (seconds, not minutes; "
                  "vector stores: GiB-days)."),
        sa.Column("num_model_requests", sa.BigInteger(), nullable=True,
                  comment="Summed where the endpoint reports it, else NULL."),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False, comment="When the row was computed."),
        schema=S,
        comment="Usage of every endpoint but completions per UTC day, kind, project, API key, "
        "user, model and priced dimensions: the one pass over the hourly rows that the estimate "
        "(usage_daily_costs) and the allocation share; rebuilt with usage_daily_costs.",
    )  # fmt: skip
    op.create_index(
        "ix_unit_usage_daily_organization_usage_date",
        "unit_usage_daily",
        ["organization", "usage_date"],
        unique=False,
        schema=S,
    )
    for statement in FILL:
        op.execute(statement)
    op.execute(GRANT)


#: (kind, hourly table, metric, priced dimensions, has a model, has keys, has requests), as
#: of this revision.
KINDS = [
    ("embeddings", "embeddings_usage_hourly", "input_tokens", (), True, True, True),
    ("moderations", "moderations_usage_hourly", "input_tokens", (), True, True, True),
    ("images", "images_usage_hourly", "images", ("size", "source"), True, True, True),
    ("audio_speeches", "audio_speeches_usage_hourly", "characters", (), True, True, True),
    ("audio_transcriptions", "audio_transcriptions_usage_hourly", "seconds", (), True, True,
     True),
    ("code_interpreter_sessions", "code_interpreter_sessions_usage_hourly", "num_sessions", (),
     False, False, False),
    ("file_search_calls", "file_search_calls_usage_hourly", "num_requests", (), False, True,
     False),
    ("web_search_calls", "web_search_calls_usage_hourly", "num_requests", ("context_level",),
     True, True, True),
]  # fmt: skip

COLUMNS = (
    "organization, usage_date, usage_kind, project_id, api_key_id, user_id, model, detail, "
    "quantity, num_model_requests"
)
PRICED_DAYS = f"(SELECT DISTINCT organization, usage_date FROM {S}.usage_daily_costs)"


def _fill(kind: str, table: str, metric: str, detail: tuple[str, ...], has_model: bool,
          has_keys: bool, has_requests: bool) -> str:  # fmt: skip
    pairs = ", ".join(f"'{name}', {name}" for name in detail)
    return f"""
INSERT INTO {S}.unit_usage_daily ({COLUMNS})
SELECT organization, (bucket_start AT TIME ZONE 'UTC')::date, '{kind}', project_id,
       {"api_key_id, user_id" if has_keys else "NULL, NULL"},
       {"model" if has_model else "NULL"},
       {f"jsonb_strip_nulls(jsonb_build_object({pairs}))" if detail else "'{}'::jsonb"},
       sum({metric})::numeric,
       {"sum(num_model_requests)::bigint" if has_requests else "NULL"}
FROM {S}.{table}
WHERE (organization, (bucket_start AT TIME ZONE 'UTC')::date) IN {PRICED_DAYS}
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""


FILL = [
    *(_fill(*kind) for kind in KINDS),
    f"""
INSERT INTO {S}.unit_usage_daily ({COLUMNS})
SELECT organization, usage_date, 'vector_stores', project_id, NULL, NULL, NULL, '{{}}'::jsonb,
       gib_days, NULL
FROM {S}.v_vector_store_storage_daily
WHERE (organization, usage_date) IN {PRICED_DAYS}
""",
]
GRANT = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {S}.unit_usage_daily TO usage_readonly;
    END IF;
END
$$
"""


def downgrade() -> None:
    op.drop_index(
        "ix_unit_usage_daily_organization_usage_date",
        table_name="unit_usage_daily",
        schema=S,
    )
    op.drop_table("unit_usage_daily", schema=S)
