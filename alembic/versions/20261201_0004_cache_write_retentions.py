"""cache writes: the total and its 30-minute and 12-hour parts, each priced once

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00

The API's `input_cache_write_tokens` is ALL input written to the cache (30-minute and 12-hour
retention together); `input_cache_write_30m_tokens` (absent in older responses) and
`input_cache_write_12h_tokens` are its parts. Migration 0002 read the total as the 30-minute
part: it priced the total at the cache-write rate and the 12-hour part again at its own rate,
and its fallback for older rows subtracted the 12-hour part from the uncached text twice.

This revision adds the 30-minute column to the usage and cost tables, and redefines the token
kinds view and the pricing functions (with the BI view that uses them) so that
30-minute writes = the 30m field, else total - 12h, and each part is priced once. The cost
table's `input_cache_write_tokens` stays the total (the usage table's meaning).

Cost rows already stored were priced under the old rule: `usage-db recompute-costs` re-prices
them (README "Pricing rules"). Here the new column of stored cost rows is filled as
total - 12h, which is what the new rule gives for rows that had no 30m column.

Frozen like every migration: the SQL is written out here, nothing is imported from the app.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"

USAGE_TOTAL_COMMENT = "All input written to the cache: 30-minute and 12-hour retention."
USAGE_30M_COMMENT = "30-minute cache writes; NULL in older responses (total - 12h)."
COST_TOTAL_COMMENT = "All cache writes: input_cache_write_30m_tokens + _12h_tokens"

# ----------------------------------------------------------------------------- the new rules

TOKEN_KINDS_VIEW = f"""
CREATE VIEW {S}.v_usage_token_kinds AS
SELECT
    u.bucket_start,
    (u.bucket_start AT TIME ZONE 'UTC')::date AS usage_date,
    u.project_id, u.user_id, u.api_key_id, u.model, u.batch, u.service_tier, u.api_source,
    u.input_tokens, u.output_tokens, u.num_model_requests,
    (u.input_text_tokens IS NULL) AS breakdown_fallback,
    coalesce(u.input_text_tokens,
             u.input_tokens - coalesce(u.input_cached_tokens, 0)
             - w.cache_write_30m - w.cache_write_12h
             - coalesce(u.input_audio_tokens, 0) - coalesce(u.input_image_tokens, 0))
        AS input_text_uncached_tokens,
    coalesce(u.input_cached_text_tokens,
             coalesce(u.input_cached_tokens, 0) - coalesce(u.input_cached_audio_tokens, 0)
             - coalesce(u.input_cached_image_tokens, 0))
        AS input_text_cached_tokens,
    w.cache_write_30m + w.cache_write_12h AS input_cache_write_tokens,
    w.cache_write_30m AS input_cache_write_30m_tokens,
    w.cache_write_12h AS input_cache_write_12h_tokens,
    coalesce(u.input_audio_tokens, 0) AS input_audio_uncached_tokens,
    coalesce(u.input_cached_audio_tokens, 0) AS input_audio_cached_tokens,
    coalesce(u.input_image_tokens, 0) AS input_image_uncached_tokens,
    coalesce(u.input_cached_image_tokens, 0) AS input_image_cached_tokens,
    coalesce(u.output_text_tokens,
             u.output_tokens - coalesce(u.output_audio_tokens, 0) - coalesce(u.output_image_tokens, 0))
        AS output_text_tokens,
    coalesce(u.output_audio_tokens, 0) AS output_audio_tokens,
    coalesce(u.output_image_tokens, 0) AS output_image_tokens
FROM {S}.completions_usage_hourly u
-- The cache-write total includes the 12-hour part: 30-minute writes are the 30m field, or
-- else the total minus the 12-hour part.
CROSS JOIN LATERAL (
    SELECT coalesce(u.input_cache_write_30m_tokens,
                    u.input_cache_write_tokens - coalesce(u.input_cache_write_12h_tokens, 0),
                    0) AS cache_write_30m,
           coalesce(u.input_cache_write_12h_tokens, 0) AS cache_write_12h
) w
"""

KIND_ARGS = """
    text_uncached numeric, text_cached numeric, cache_write_30m numeric, cache_write_12h numeric,
    audio_uncached numeric, audio_cached numeric, image_uncached numeric, image_cached numeric,
    out_text numeric, out_audio numeric, out_image numeric"""

ARG_NAMES = (
    "text_uncached, text_cached, cache_write_30m, cache_write_12h, audio_uncached, "
    "audio_cached, image_uncached, image_cached, out_text, out_audio, out_image"
)

ESTIMATE_COST_BY_KIND = f"""
CREATE FUNCTION {S}.estimate_cost_by_kind(p {S}.model_prices, {KIND_ARGS})
RETURNS TABLE (line_item_kind text, cost_usd numeric) LANGUAGE sql STABLE AS $$
    VALUES
    ('input',
         {S}.tokens_times_rate(text_uncached, p.input_mtok)
       + {S}.tokens_times_rate(audio_uncached, p.input_audio_mtok)
       + {S}.tokens_times_rate(image_uncached, coalesce(p.input_image_mtok, p.input_mtok))),
    ('cached input',
         {S}.tokens_times_rate(text_cached, coalesce(p.cache_read_mtok, p.input_mtok))
       + {S}.tokens_times_rate(audio_cached, coalesce(p.cache_audio_read_mtok, p.input_audio_mtok))
       + {S}.tokens_times_rate(image_cached,
             coalesce(p.cache_image_read_mtok, p.cache_read_mtok, p.input_image_mtok, p.input_mtok))),
    ('cache writes',
         {S}.tokens_times_rate(cache_write_30m, coalesce(p.cache_write_mtok, p.input_mtok))),
    ('cache writes - 12hr',
         {S}.tokens_times_rate(cache_write_12h,
             coalesce(p.cache_write_12h_mtok, p.cache_write_mtok, p.input_mtok))),
    ('output',
         {S}.tokens_times_rate(out_text, p.output_mtok)
       + {S}.tokens_times_rate(out_audio, p.output_audio_mtok)
       + {S}.tokens_times_rate(out_image, coalesce(p.output_image_mtok, p.output_mtok)))
$$
"""

ESTIMATE_COST = f"""
CREATE FUNCTION {S}.estimate_cost_usd(p {S}.model_prices, {KIND_ARGS}) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_or(k.cost_usd IS NULL) THEN NULL ELSE sum(k.cost_usd) END
    FROM {S}.estimate_cost_by_kind(p, {ARG_NAMES}) k
$$
"""

UNPRICED_REASON = f"""
CREATE FUNCTION {S}.unpriced_reason(model_ref text, p {S}.model_prices, {KIND_ARGS})
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN model_ref IS NULL THEN 'unknown model: not in genai-prices or the override file'
        WHEN p.price_id IS NULL THEN 'no price for this service tier and batch flag on this day'
        WHEN text_uncached + cache_write_30m + cache_write_12h + text_cached + image_uncached
             + image_cached > 0 AND p.input_mtok IS NULL THEN 'no input rate'
        WHEN audio_uncached + audio_cached > 0 AND p.input_audio_mtok IS NULL
            THEN 'no audio input rate'
        WHEN out_text + out_image > 0 AND p.output_mtok IS NULL THEN 'no output rate'
        WHEN out_audio > 0 AND p.output_audio_mtok IS NULL THEN 'no audio output rate'
    END
$$
"""

API_KEY_VIEW = f"""
CREATE VIEW {S}.v_api_key_daily_cost AS
SELECT k.usage_date, k.project_id, coalesce(p.name, k.project_id, '(default project)')
       AS project_name, k.api_key_id, ak.name AS api_key_name, ak.redacted_value,
       sum(k.input_tokens) AS input_tokens, sum(k.output_tokens) AS output_tokens,
       sum(k.num_model_requests) AS num_model_requests,
       CASE WHEN bool_or(x.cost IS NULL) THEN NULL ELSE sum(x.cost) END AS cost_usd
FROM {S}.v_usage_token_kinds k
LEFT JOIN {S}.project_daily_costs c
       ON c.usage_date = k.usage_date AND c.project_id IS NOT DISTINCT FROM k.project_id
      AND c.model IS NOT DISTINCT FROM k.model AND c.batch IS NOT DISTINCT FROM k.batch
      AND c.service_tier IS NOT DISTINCT FROM k.service_tier
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
LEFT JOIN {S}.projects p ON p.id = k.project_id
LEFT JOIN {S}.api_keys ak ON ak.id = k.api_key_id
CROSS JOIN LATERAL (SELECT {S}.estimate_cost_usd(mp,
    k.input_text_uncached_tokens, k.input_text_cached_tokens, k.input_cache_write_30m_tokens,
    k.input_cache_write_12h_tokens, k.input_audio_uncached_tokens, k.input_audio_cached_tokens,
    k.input_image_uncached_tokens, k.input_image_cached_tokens, k.output_text_tokens,
    k.output_audio_tokens, k.output_image_tokens) AS cost) x
GROUP BY 1, 2, 3, 4, 5, 6
"""

NEW_OBJECTS = [
    TOKEN_KINDS_VIEW,
    ESTIMATE_COST_BY_KIND,
    ESTIMATE_COST,
    UNPRICED_REASON,
    API_KEY_VIEW,
]

# ------------------------------------------------------------- 0002's rules, for the downgrade

OLD_TOKEN_KINDS_VIEW = f"""
CREATE VIEW {S}.v_usage_token_kinds AS
SELECT
    u.bucket_start,
    (u.bucket_start AT TIME ZONE 'UTC')::date AS usage_date,
    u.project_id, u.user_id, u.api_key_id, u.model, u.batch, u.service_tier, u.api_source,
    u.input_tokens, u.output_tokens, u.num_model_requests,
    (u.input_text_tokens IS NULL) AS breakdown_fallback,
    coalesce(u.input_text_tokens,
             u.input_tokens - coalesce(u.input_cached_tokens, 0)
             - coalesce(u.input_cache_write_tokens, 0) - coalesce(u.input_cache_write_12h_tokens, 0)
             - coalesce(u.input_audio_tokens, 0) - coalesce(u.input_image_tokens, 0))
        AS input_text_uncached_tokens,
    coalesce(u.input_cached_text_tokens,
             coalesce(u.input_cached_tokens, 0) - coalesce(u.input_cached_audio_tokens, 0)
             - coalesce(u.input_cached_image_tokens, 0))
        AS input_text_cached_tokens,
    coalesce(u.input_cache_write_tokens, 0) AS input_cache_write_tokens,
    coalesce(u.input_cache_write_12h_tokens, 0) AS input_cache_write_12h_tokens,
    coalesce(u.input_audio_tokens, 0) AS input_audio_uncached_tokens,
    coalesce(u.input_cached_audio_tokens, 0) AS input_audio_cached_tokens,
    coalesce(u.input_image_tokens, 0) AS input_image_uncached_tokens,
    coalesce(u.input_cached_image_tokens, 0) AS input_image_cached_tokens,
    coalesce(u.output_text_tokens,
             u.output_tokens - coalesce(u.output_audio_tokens, 0) - coalesce(u.output_image_tokens, 0))
        AS output_text_tokens,
    coalesce(u.output_audio_tokens, 0) AS output_audio_tokens,
    coalesce(u.output_image_tokens, 0) AS output_image_tokens
FROM {S}.completions_usage_hourly u
"""

OLD_KIND_ARGS = """
    text_uncached numeric, text_cached numeric, cache_write numeric, cache_write_12h numeric,
    audio_uncached numeric, audio_cached numeric, image_uncached numeric, image_cached numeric,
    out_text numeric, out_audio numeric, out_image numeric"""

OLD_ARG_NAMES = (
    "text_uncached, text_cached, cache_write, cache_write_12h, audio_uncached, audio_cached, "
    "image_uncached, image_cached, out_text, out_audio, out_image"
)

OLD_ESTIMATE_COST_BY_KIND = f"""
CREATE FUNCTION {S}.estimate_cost_by_kind(p {S}.model_prices, {OLD_KIND_ARGS})
RETURNS TABLE (line_item_kind text, cost_usd numeric) LANGUAGE sql STABLE AS $$
    VALUES
    ('input',
         {S}.tokens_times_rate(text_uncached, p.input_mtok)
       + {S}.tokens_times_rate(audio_uncached, p.input_audio_mtok)
       + {S}.tokens_times_rate(image_uncached, coalesce(p.input_image_mtok, p.input_mtok))),
    ('cached input',
         {S}.tokens_times_rate(text_cached, coalesce(p.cache_read_mtok, p.input_mtok))
       + {S}.tokens_times_rate(audio_cached, coalesce(p.cache_audio_read_mtok, p.input_audio_mtok))
       + {S}.tokens_times_rate(image_cached,
             coalesce(p.cache_image_read_mtok, p.cache_read_mtok, p.input_image_mtok, p.input_mtok))),
    ('cache writes',
         {S}.tokens_times_rate(cache_write, coalesce(p.cache_write_mtok, p.input_mtok))),
    ('cache writes - 12hr',
         {S}.tokens_times_rate(cache_write_12h,
             coalesce(p.cache_write_12h_mtok, p.cache_write_mtok, p.input_mtok))),
    ('output',
         {S}.tokens_times_rate(out_text, p.output_mtok)
       + {S}.tokens_times_rate(out_audio, p.output_audio_mtok)
       + {S}.tokens_times_rate(out_image, coalesce(p.output_image_mtok, p.output_mtok)))
$$
"""

OLD_ESTIMATE_COST = f"""
CREATE FUNCTION {S}.estimate_cost_usd(p {S}.model_prices, {OLD_KIND_ARGS}) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_or(k.cost_usd IS NULL) THEN NULL ELSE sum(k.cost_usd) END
    FROM {S}.estimate_cost_by_kind(p, {OLD_ARG_NAMES}) k
$$
"""

OLD_UNPRICED_REASON = f"""
CREATE FUNCTION {S}.unpriced_reason(model_ref text, p {S}.model_prices, {OLD_KIND_ARGS})
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN model_ref IS NULL THEN 'unknown model: not in genai-prices or the override file'
        WHEN p.price_id IS NULL THEN 'no price for this service tier and batch flag on this day'
        WHEN text_uncached + cache_write + cache_write_12h + text_cached + image_uncached
             + image_cached > 0 AND p.input_mtok IS NULL THEN 'no input rate'
        WHEN audio_uncached + audio_cached > 0 AND p.input_audio_mtok IS NULL
            THEN 'no audio input rate'
        WHEN out_text + out_image > 0 AND p.output_mtok IS NULL THEN 'no output rate'
        WHEN out_audio > 0 AND p.output_audio_mtok IS NULL THEN 'no audio output rate'
    END
$$
"""

OLD_API_KEY_VIEW = f"""
CREATE VIEW {S}.v_api_key_daily_cost AS
SELECT k.usage_date, k.project_id, coalesce(p.name, k.project_id, '(default project)')
       AS project_name, k.api_key_id, ak.name AS api_key_name, ak.redacted_value,
       sum(k.input_tokens) AS input_tokens, sum(k.output_tokens) AS output_tokens,
       sum(k.num_model_requests) AS num_model_requests,
       CASE WHEN bool_or(x.cost IS NULL) THEN NULL ELSE sum(x.cost) END AS cost_usd
FROM {S}.v_usage_token_kinds k
LEFT JOIN {S}.project_daily_costs c
       ON c.usage_date = k.usage_date AND c.project_id IS NOT DISTINCT FROM k.project_id
      AND c.model IS NOT DISTINCT FROM k.model AND c.batch IS NOT DISTINCT FROM k.batch
      AND c.service_tier IS NOT DISTINCT FROM k.service_tier
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
LEFT JOIN {S}.projects p ON p.id = k.project_id
LEFT JOIN {S}.api_keys ak ON ak.id = k.api_key_id
CROSS JOIN LATERAL (SELECT {S}.estimate_cost_usd(mp,
    k.input_text_uncached_tokens, k.input_text_cached_tokens, k.input_cache_write_tokens,
    k.input_cache_write_12h_tokens, k.input_audio_uncached_tokens, k.input_audio_cached_tokens,
    k.input_image_uncached_tokens, k.input_image_cached_tokens, k.output_text_tokens,
    k.output_audio_tokens, k.output_image_tokens) AS cost) x
GROUP BY 1, 2, 3, 4, 5, 6
"""

OLD_OBJECTS = [
    OLD_TOKEN_KINDS_VIEW,
    OLD_ESTIMATE_COST_BY_KIND,
    OLD_ESTIMATE_COST,
    OLD_UNPRICED_REASON,
    OLD_API_KEY_VIEW,
]

# Dependents first: the key view uses the kinds view and estimate_cost_usd. (SQL-language
# function bodies are not tracked as dependencies, so the functions drop in any order.)
DROP_OBJECTS = [
    f"DROP VIEW {S}.v_api_key_daily_cost",
    f"DROP FUNCTION {S}.unpriced_reason",
    f"DROP FUNCTION {S}.estimate_cost_usd",
    f"DROP FUNCTION {S}.estimate_cost_by_kind",
    f"DROP VIEW {S}.v_usage_token_kinds",
]

# Recreated views are new objects: give them back to the BI role (0002's grants). Default
# privileges cover objects created by the role that set them, which may not be this one.
GRANT_VIEWS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {S}.v_usage_token_kinds, {S}.v_api_key_daily_cost TO usage_readonly;
    END IF;
END
$$
"""


def _replace_rules(objects: list[str]) -> None:
    for statement in DROP_OBJECTS:
        op.execute(statement)
    for statement in objects:
        op.execute(statement)
    op.execute(GRANT_VIEWS)


def upgrade() -> None:
    op.add_column(
        "completions_usage_hourly",
        sa.Column("input_cache_write_30m_tokens", sa.BigInteger(), nullable=True,
                  comment=USAGE_30M_COMMENT),
        schema=S,
    )  # fmt: skip
    op.alter_column(
        "completions_usage_hourly",
        "input_cache_write_tokens",
        existing_type=sa.BigInteger(),
        existing_nullable=True,
        comment=USAGE_TOTAL_COMMENT,
        schema=S,
    )
    op.add_column(
        "project_daily_costs",
        sa.Column("input_cache_write_30m_tokens", sa.BigInteger(), nullable=True),
        schema=S,
    )
    # Stored rows: their input_cache_write_tokens is the API's total, and their usage had no
    # 30m column, so the new rule's 30-minute part is total - 12h. Their cost_usd keeps the old
    # rule until `usage-db recompute-costs` re-prices them.
    op.execute(
        f"UPDATE {S}.project_daily_costs "
        "SET input_cache_write_30m_tokens = input_cache_write_tokens - input_cache_write_12h_tokens"
    )
    op.alter_column(
        "project_daily_costs",
        "input_cache_write_30m_tokens",
        existing_type=sa.BigInteger(),
        nullable=False,
        schema=S,
    )
    op.alter_column(
        "project_daily_costs",
        "input_cache_write_tokens",
        existing_type=sa.BigInteger(),
        existing_nullable=False,
        comment=COST_TOTAL_COMMENT,
        schema=S,
    )
    _replace_rules(NEW_OBJECTS)


def downgrade() -> None:
    _replace_rules(OLD_OBJECTS)
    op.alter_column(
        "project_daily_costs",
        "input_cache_write_tokens",
        existing_type=sa.BigInteger(),
        existing_nullable=False,
        comment=None,
        existing_comment=COST_TOTAL_COMMENT,
        schema=S,
    )
    op.drop_column("project_daily_costs", "input_cache_write_30m_tokens", schema=S)
    op.alter_column(
        "completions_usage_hourly",
        "input_cache_write_tokens",
        existing_type=sa.BigInteger(),
        existing_nullable=True,
        comment=None,
        existing_comment=USAGE_TOTAL_COMMENT,
        schema=S,
    )
    op.drop_column("completions_usage_hourly", "input_cache_write_30m_tokens", schema=S)
