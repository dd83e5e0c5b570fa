"""Several organizations in one database: the views per organization

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 18:00:00

Migration 0009 gave every table but the prices an `organization` (first in its keys). Here every
view that groups or joins usage, costs or names gains `organization` as its first column and
groups, partitions and joins by it, so the default project (NULL project_id) of two
organizations, or a project id two organizations share, is never summed together, and a name
comes from its own organization's names table (`projects`, `users`, `api_keys`: keyed by
organization and id):

- `v_usage_token_kinds` (the source of the completions estimate) carries the organization;
- `v_api_key_daily_cost`, `v_model_daily_cost`, `v_project_daily_cost`, `v_usage_daily_cost`:
  per organization, names joined on organization and id;
- `v_estimated_vs_billed`, `v_reconciliation_daily`: billed rows of an organization only against
  that organization's estimates;
- `v_vector_store_storage_daily`: GiB-days per organization, day and project (the free allowance
  is per organization and day);
- `v_usage_day_revisions`, `v_usage_late_arrival`: revisions numbered per organization, endpoint
  and day, so the windows and the late-arrival rollup are per organization.

The SQL functions are unchanged (they take rows and quantities, not organizations). Downgrade
restores the 0004/0007/0008 definitions. Frozen like every migration: the SQL is written out here,
nothing is imported from the app.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"

# ----------------------------------------------------------------------------- the new views

TOKEN_KINDS_VIEW = f"""
CREATE VIEW {S}.v_usage_token_kinds AS
SELECT
    u.organization,
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

API_KEY_VIEW = f"""
CREATE VIEW {S}.v_api_key_daily_cost AS
SELECT k.organization, k.usage_date, k.project_id,
       coalesce(p.name, k.project_id, '(default project)') AS project_name, k.api_key_id,
       ak.name AS api_key_name, ak.redacted_value,
       sum(k.input_tokens) AS input_tokens, sum(k.output_tokens) AS output_tokens,
       sum(k.num_model_requests) AS num_model_requests,
       CASE WHEN bool_or(x.cost IS NULL) THEN NULL ELSE sum(x.cost) END AS cost_usd
FROM {S}.v_usage_token_kinds k
LEFT JOIN {S}.project_daily_costs c
       ON c.organization = k.organization AND c.usage_date = k.usage_date
      AND c.project_id IS NOT DISTINCT FROM k.project_id
      AND c.model IS NOT DISTINCT FROM k.model AND c.batch IS NOT DISTINCT FROM k.batch
      AND c.service_tier IS NOT DISTINCT FROM k.service_tier
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
LEFT JOIN {S}.projects p ON p.organization = k.organization AND p.id = k.project_id
LEFT JOIN {S}.api_keys ak ON ak.organization = k.organization AND ak.id = k.api_key_id
CROSS JOIN LATERAL (SELECT {S}.estimate_cost_usd(mp,
    k.input_text_uncached_tokens, k.input_text_cached_tokens, k.input_cache_write_30m_tokens,
    k.input_cache_write_12h_tokens, k.input_audio_uncached_tokens, k.input_audio_cached_tokens,
    k.input_image_uncached_tokens, k.input_image_cached_tokens, k.output_text_tokens,
    k.output_audio_tokens, k.output_image_tokens) AS cost) x
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""

MODEL_VIEW = f"""
CREATE VIEW {S}.v_model_daily_cost AS
SELECT c.organization, c.usage_date, c.project_id,
       coalesce(p.name, c.project_id, '(default project)') AS project_name, c.model, c.model_ref,
       c.batch, c.service_tier, c.input_tokens, c.output_tokens, c.num_model_requests,
       c.cost_usd, c.unpriced_reason, c.price_id, mp.source AS price_source
FROM {S}.project_daily_costs c
LEFT JOIN {S}.projects p ON p.organization = c.organization AND p.id = c.project_id
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
"""

PROJECT_VIEW = f"""
CREATE VIEW {S}.v_project_daily_cost AS
SELECT s.organization, s.usage_date, s.project_id,
       coalesce(p.name, s.project_id, '(default project)') AS project_name,
       p.status AS project_status, s.cost_usd, s.unpriced_tokens, s.input_tokens,
       s.output_tokens, s.num_model_requests, s.models, s.unpriced_usage_rows, s.cost_by_kind
FROM {S}.project_daily_cost_summary s
LEFT JOIN {S}.projects p ON p.organization = s.organization AND p.id = s.project_id
"""

ESTIMATED_VS_BILLED_VIEW = f"""
CREATE VIEW {S}.v_estimated_vs_billed AS
WITH billed AS (
    SELECT organization, usage_date, project_id, sum(amount_usd) AS billed_usd
    FROM {S}.costs_daily GROUP BY 1, 2, 3
)
SELECT coalesce(s.organization, b.organization) AS organization,
       coalesce(s.usage_date, b.usage_date) AS usage_date,
       coalesce(s.project_id, b.project_id) AS project_id,
       coalesce(p.name, s.project_id, b.project_id, '(default project)') AS project_name,
       s.cost_usd AS estimated_usd, s.unpriced_tokens, b.billed_usd,
       coalesce(s.cost_usd, 0) - coalesce(b.billed_usd, 0) AS difference_usd,
       s.unpriced_usage_rows
FROM {S}.project_daily_cost_summary s
FULL JOIN billed b
       ON b.organization = s.organization AND b.usage_date = s.usage_date
      AND b.project_id IS NOT DISTINCT FROM s.project_id
LEFT JOIN {S}.projects p
       ON p.organization = coalesce(s.organization, b.organization)
      AND p.id = coalesce(s.project_id, b.project_id)
"""

USAGE_COST_VIEW = f"""
CREATE VIEW {S}.v_usage_daily_cost AS
SELECT c.organization, c.usage_date, c.project_id,
       coalesce(p.name, c.project_id, '(default project)') AS project_name,
       c.usage_kind, c.model, jsonb_build_object('batch', c.batch, 'service_tier', c.service_tier)
       AS detail, (c.input_tokens + c.output_tokens)::numeric AS quantity, 'tokens'::text AS unit,
       c.cost_usd, c.unpriced_reason, mp.source AS price_source
FROM {S}.project_daily_costs c
LEFT JOIN {S}.projects p ON p.organization = c.organization AND p.id = c.project_id
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
UNION ALL
SELECT u.organization, u.usage_date, u.project_id,
       coalesce(p.name, u.project_id, '(default project)') AS project_name,
       u.usage_kind, u.model, u.detail, u.quantity, u.unit, u.cost_usd, u.unpriced_reason,
       up.source AS price_source
FROM {S}.usage_daily_costs u
LEFT JOIN {S}.projects p ON p.organization = u.organization AND p.id = u.project_id
LEFT JOIN {S}.unit_prices up ON up.unit_price_id = u.unit_price_id
"""

RECONCILIATION_VIEW = f"""
CREATE VIEW {S}.v_reconciliation_daily AS
WITH estimated AS (
    SELECT organization, usage_date, project_id, usage_kind AS family,
           sum(cost_usd) AS estimated_usd,
           count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_rows
    FROM (
        SELECT organization, usage_date, project_id, usage_kind, cost_usd
        FROM {S}.project_daily_costs
        UNION ALL
        SELECT organization, usage_date, project_id, usage_kind, cost_usd
        FROM {S}.usage_daily_costs
    ) e
    GROUP BY 1, 2, 3, 4
), billed AS (
    SELECT organization, usage_date, project_id,
           {S}.line_item_family(line_item, quantity_unit) AS family,
           sum(amount_usd) AS billed_usd, count(*) AS line_items
    FROM {S}.costs_daily
    GROUP BY 1, 2, 3, 4
)
SELECT coalesce(e.organization, b.organization) AS organization,
       coalesce(e.usage_date, b.usage_date) AS usage_date,
       coalesce(e.project_id, b.project_id) AS project_id,
       coalesce(p.name, e.project_id, b.project_id, '(default project)') AS project_name,
       coalesce(e.family, b.family) AS family,
       coalesce(e.estimated_usd, 0) AS estimated_usd,
       coalesce(e.unpriced_rows, 0) AS unpriced_rows,
       coalesce(b.billed_usd, 0) AS billed_usd,
       coalesce(b.line_items, 0) AS billed_line_items,
       coalesce(e.estimated_usd, 0) - coalesce(b.billed_usd, 0) AS difference_usd
FROM estimated e
FULL JOIN billed b
       ON b.organization = e.organization AND b.usage_date = e.usage_date
      AND b.project_id IS NOT DISTINCT FROM e.project_id AND b.family = e.family
LEFT JOIN {S}.projects p
       ON p.organization = coalesce(e.organization, b.organization)
      AND p.id = coalesce(e.project_id, b.project_id)
"""

#: Vector store storage is a gauge (bytes stored in each hour): a day's storage, the unit it
#: is billed in, is the mean over the day's 24 hours (an hour with no row stored nothing), in
#: GiB (2^30 bytes), per organization, day and project.
VECTOR_STORE_DAILY_VIEW = f"""
CREATE VIEW {S}.v_vector_store_storage_daily AS
SELECT
    v.organization,
    (v.bucket_start AT TIME ZONE 'UTC')::date AS usage_date,
    v.project_id,
    count(DISTINCT v.bucket_start) AS hours_reported,
    max(v.usage_bytes) AS max_usage_bytes,
    round(sum(v.usage_bytes)::numeric / 24, 0) AS mean_usage_bytes,
    sum(v.usage_bytes)::numeric / 24 / 1073741824 AS gib_days
FROM {S}.vector_stores_usage_hourly v
GROUP BY 1, 2, 3
"""

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
    r.organization,
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
    r.previous_num_model_requests, r.new_num_model_requests,
    r.endpoint,
    r.previous_volume,
    r.new_volume,
    r.new_volume - r.previous_volume AS volume_change,
    r.new_volume - first_value(coalesce(r.previous_volume, r.new_volume)) OVER w
        AS volume_change_vs_first,
    r.previous_totals,
    r.new_totals
FROM r
WINDOW w AS (PARTITION BY r.organization, r.endpoint, r.usage_date ORDER BY r.revision)
"""

LATE_ARRIVAL_VIEW = f"""
CREATE VIEW {S}.v_usage_late_arrival AS
WITH reloads AS (
    SELECT
        v.*,
        last_value(v.new_volume) OVER (
            PARTITION BY v.organization, v.endpoint, v.usage_date ORDER BY v.revision
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS latest_volume
    FROM {S}.v_usage_day_revisions v
    WHERE v.previous_volume IS NOT NULL
)
SELECT
    organization,
    days_after_close,
    count(*) AS reloads,
    count(DISTINCT usage_date) AS days,
    sum(row_change) AS rows_added,
    sum(token_change) AS tokens_added,
    sum(greatest(-token_change, 0)) AS tokens_lost,
    round(100.0 * sum(token_change) / nullif(sum(latest_volume), 0), 4)
        AS pct_of_latest_tokens,
    endpoint,
    sum(volume_change) AS volume_added,
    sum(greatest(-volume_change, 0)) AS volume_lost,
    round(100.0 * sum(volume_change) / nullif(sum(latest_volume), 0), 4)
        AS pct_of_latest_volume
FROM reloads
GROUP BY organization, endpoint, days_after_close
"""

# ------------------------------------------------- 0004's, 0007's and 0008's, for the downgrade

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
    k.input_text_uncached_tokens, k.input_text_cached_tokens, k.input_cache_write_30m_tokens,
    k.input_cache_write_12h_tokens, k.input_audio_uncached_tokens, k.input_audio_cached_tokens,
    k.input_image_uncached_tokens, k.input_image_cached_tokens, k.output_text_tokens,
    k.output_audio_tokens, k.output_image_tokens) AS cost) x
GROUP BY 1, 2, 3, 4, 5, 6
"""

OLD_MODEL_VIEW = f"""
CREATE VIEW {S}.v_model_daily_cost AS
SELECT c.usage_date, c.project_id, coalesce(p.name, c.project_id, '(default project)')
       AS project_name, c.model, c.model_ref, c.batch, c.service_tier, c.input_tokens,
       c.output_tokens, c.num_model_requests, c.cost_usd, c.unpriced_reason, c.price_id,
       mp.source AS price_source
FROM {S}.project_daily_costs c
LEFT JOIN {S}.projects p ON p.id = c.project_id
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
"""

OLD_PROJECT_VIEW = f"""
CREATE VIEW {S}.v_project_daily_cost AS
SELECT s.usage_date, s.project_id, coalesce(p.name, s.project_id, '(default project)')
       AS project_name, p.status AS project_status, s.cost_usd, s.unpriced_tokens,
       s.input_tokens, s.output_tokens, s.num_model_requests, s.models,
       s.unpriced_usage_rows, s.cost_by_kind
FROM {S}.project_daily_cost_summary s
LEFT JOIN {S}.projects p ON p.id = s.project_id
"""

OLD_ESTIMATED_VS_BILLED_VIEW = f"""
CREATE VIEW {S}.v_estimated_vs_billed AS
WITH billed AS (
    SELECT usage_date, project_id, sum(amount_usd) AS billed_usd
    FROM {S}.costs_daily GROUP BY 1, 2
)
SELECT coalesce(s.usage_date, b.usage_date) AS usage_date,
       coalesce(s.project_id, b.project_id) AS project_id,
       coalesce(p.name, s.project_id, b.project_id, '(default project)') AS project_name,
       s.cost_usd AS estimated_usd, s.unpriced_tokens, b.billed_usd,
       coalesce(s.cost_usd, 0) - coalesce(b.billed_usd, 0) AS difference_usd,
       s.unpriced_usage_rows
FROM {S}.project_daily_cost_summary s
FULL JOIN billed b ON b.usage_date = s.usage_date AND b.project_id IS NOT DISTINCT FROM s.project_id
LEFT JOIN {S}.projects p ON p.id = coalesce(s.project_id, b.project_id)
"""

OLD_USAGE_COST_VIEW = f"""
CREATE VIEW {S}.v_usage_daily_cost AS
SELECT c.usage_date, c.project_id,
       coalesce(p.name, c.project_id, '(default project)') AS project_name,
       c.usage_kind, c.model, jsonb_build_object('batch', c.batch, 'service_tier', c.service_tier)
       AS detail, (c.input_tokens + c.output_tokens)::numeric AS quantity, 'tokens'::text AS unit,
       c.cost_usd, c.unpriced_reason, mp.source AS price_source
FROM {S}.project_daily_costs c
LEFT JOIN {S}.projects p ON p.id = c.project_id
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
UNION ALL
SELECT u.usage_date, u.project_id,
       coalesce(p.name, u.project_id, '(default project)') AS project_name,
       u.usage_kind, u.model, u.detail, u.quantity, u.unit, u.cost_usd, u.unpriced_reason,
       up.source AS price_source
FROM {S}.usage_daily_costs u
LEFT JOIN {S}.projects p ON p.id = u.project_id
LEFT JOIN {S}.unit_prices up ON up.unit_price_id = u.unit_price_id
"""

OLD_RECONCILIATION_VIEW = f"""
CREATE VIEW {S}.v_reconciliation_daily AS
WITH estimated AS (
    SELECT usage_date, project_id, usage_kind AS family, sum(cost_usd) AS estimated_usd,
           count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_rows
    FROM (
        SELECT usage_date, project_id, usage_kind, cost_usd FROM {S}.project_daily_costs
        UNION ALL
        SELECT usage_date, project_id, usage_kind, cost_usd FROM {S}.usage_daily_costs
    ) e
    GROUP BY 1, 2, 3
), billed AS (
    SELECT usage_date, project_id, {S}.line_item_family(line_item, quantity_unit) AS family,
           sum(amount_usd) AS billed_usd, count(*) AS line_items
    FROM {S}.costs_daily
    GROUP BY 1, 2, 3
)
SELECT coalesce(e.usage_date, b.usage_date) AS usage_date,
       coalesce(e.project_id, b.project_id) AS project_id,
       coalesce(p.name, e.project_id, b.project_id, '(default project)') AS project_name,
       coalesce(e.family, b.family) AS family,
       coalesce(e.estimated_usd, 0) AS estimated_usd,
       coalesce(e.unpriced_rows, 0) AS unpriced_rows,
       coalesce(b.billed_usd, 0) AS billed_usd,
       coalesce(b.line_items, 0) AS billed_line_items,
       coalesce(e.estimated_usd, 0) - coalesce(b.billed_usd, 0) AS difference_usd
FROM estimated e
FULL JOIN billed b
       ON b.usage_date = e.usage_date AND b.project_id IS NOT DISTINCT FROM e.project_id
      AND b.family = e.family
LEFT JOIN {S}.projects p ON p.id = coalesce(e.project_id, b.project_id)
"""

OLD_VECTOR_STORE_DAILY_VIEW = f"""
CREATE VIEW {S}.v_vector_store_storage_daily AS
SELECT
    (v.bucket_start AT TIME ZONE 'UTC')::date AS usage_date,
    v.project_id,
    count(DISTINCT v.bucket_start) AS hours_reported,
    max(v.usage_bytes) AS max_usage_bytes,
    round(sum(v.usage_bytes)::numeric / 24, 0) AS mean_usage_bytes,
    sum(v.usage_bytes)::numeric / 24 / 1073741824 AS gib_days
FROM {S}.vector_stores_usage_hourly v
GROUP BY 1, 2
"""

#: 0007's, but its columns listed where 0007 read `r.*` (the same view): `r.*` would now
#: include `organization`, which 0009's downgrade drops.
OLD_REVISIONS_VIEW = f"""
CREATE VIEW {S}.v_usage_day_revisions AS
WITH r AS (
    SELECT
        r.endpoint, r.usage_date, r.revision, r.dagster_run_id, r.loaded_at, r.day_closed,
        r.bucket_count, r.previous_row_count, r.new_row_count, r.previous_input_tokens,
        r.new_input_tokens, r.previous_output_tokens, r.new_output_tokens,
        r.previous_num_model_requests, r.new_num_model_requests, r.previous_volume,
        r.new_volume, r.previous_totals, r.new_totals,
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
    r.previous_num_model_requests, r.new_num_model_requests,
    r.endpoint,
    r.previous_volume,
    r.new_volume,
    r.new_volume - r.previous_volume AS volume_change,
    r.new_volume - first_value(coalesce(r.previous_volume, r.new_volume)) OVER w
        AS volume_change_vs_first,
    r.previous_totals,
    r.new_totals
FROM r
WINDOW w AS (PARTITION BY r.endpoint, r.usage_date ORDER BY r.revision)
"""

OLD_LATE_ARRIVAL_VIEW = f"""
CREATE VIEW {S}.v_usage_late_arrival AS
WITH reloads AS (
    SELECT
        v.*,
        last_value(v.new_volume) OVER (
            PARTITION BY v.endpoint, v.usage_date ORDER BY v.revision
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        ) AS latest_volume
    FROM {S}.v_usage_day_revisions v
    WHERE v.previous_volume IS NOT NULL
)
SELECT
    days_after_close,
    count(*) AS reloads,
    count(DISTINCT usage_date) AS days,
    sum(row_change) AS rows_added,
    sum(token_change) AS tokens_added,
    sum(greatest(-token_change, 0)) AS tokens_lost,
    round(100.0 * sum(token_change) / nullif(sum(latest_volume), 0), 4)
        AS pct_of_latest_tokens,
    endpoint,
    sum(volume_change) AS volume_added,
    sum(greatest(-volume_change, 0)) AS volume_lost,
    round(100.0 * sum(volume_change) / nullif(sum(latest_volume), 0), 4)
        AS pct_of_latest_volume
FROM reloads
GROUP BY endpoint, days_after_close
"""

#: Dependents before what they read: the key view reads the kinds view, late arrival reads
#: the revisions view.
VIEWS = [
    "v_usage_late_arrival",
    "v_usage_day_revisions",
    "v_vector_store_storage_daily",
    "v_reconciliation_daily",
    "v_usage_daily_cost",
    "v_estimated_vs_billed",
    "v_project_daily_cost",
    "v_model_daily_cost",
    "v_api_key_daily_cost",
    "v_usage_token_kinds",
]
#: Creation order: what a view reads first.
NEW_VIEWS = [
    TOKEN_KINDS_VIEW,
    API_KEY_VIEW,
    MODEL_VIEW,
    PROJECT_VIEW,
    ESTIMATED_VS_BILLED_VIEW,
    USAGE_COST_VIEW,
    RECONCILIATION_VIEW,
    VECTOR_STORE_DAILY_VIEW,
    REVISIONS_VIEW,
    LATE_ARRIVAL_VIEW,
]
OLD_VIEWS = [
    OLD_TOKEN_KINDS_VIEW,
    OLD_API_KEY_VIEW,
    OLD_MODEL_VIEW,
    OLD_PROJECT_VIEW,
    OLD_ESTIMATED_VS_BILLED_VIEW,
    OLD_USAGE_COST_VIEW,
    OLD_RECONCILIATION_VIEW,
    OLD_VECTOR_STORE_DAILY_VIEW,
    OLD_REVISIONS_VIEW,
    OLD_LATE_ARRIVAL_VIEW,
]

# Recreated views are new objects: give them back to the BI role (0002's grants). Default
# privileges cover objects created by the role that set them, which may not be this one.
GRANT_VIEWS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {", ".join(f"{S}.{view}" for view in VIEWS)} TO usage_readonly;
    END IF;
END
$$
"""


def _replace_views(views: list[str]) -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW {S}.{view}")
    for statement in views:
        op.execute(statement)
    op.execute(GRANT_VIEWS)


def upgrade() -> None:
    _replace_views(NEW_VIEWS)


def downgrade() -> None:
    _replace_views(OLD_VIEWS)
