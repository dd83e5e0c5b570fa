"""BI views that add up: one priced/unpriced rule, money rounded in the views, `simulated`

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 22:00:00

The rule, for every view (written here once; README "BI tools" says it too):

    A cost column is the PRICED amount: the sum over the rows that have a price, 0 when none
    has; never NULL because part of the group is unpriced. Beside it, what is not in it:
    `unpriced_tokens` (completions), `unpriced_quantity` (a usage kind's own unit) or a count
    of unpriced rows, with `unpriced_reason` where a row has one.

It is the rule `project_daily_cost_summary` (the project level) already had: `cost_usd` =
coalesce(sum(priced cost), 0), `unpriced_tokens` = tokens of unpriced `project_daily_costs`
rows, `unpriced_usage_rows` = unpriced `usage_daily_costs` rows. The views now agree with it,
so for an organization and day, the completions cost of `v_api_key_daily_cost` summed over its
keys = of `v_model_daily_cost` over its models = `v_project_daily_cost.cost_by_kind ->
'completions'` over its projects, and their `unpriced_tokens` are equal too. A key's usage of
a model is priced exactly when that model's day row (`project_daily_costs`, the same price
row) is; before 0015 a key that touched any unpriced usage had a NULL day.

Money: tables keep exact numerics; the views show USD rounded to 6 decimals (micro-dollars,
the allocation's quantum). `v_cost_allocation_daily` rounds each allocated share before
summing: shares are whole micro-dollars but for the one share per billed amount that holds a
bill's sub-micro-dollar rest, so its sums are exact: per billed amount, the bill rounded to
the micro-dollar (the bill itself when it has at most 6 decimals). Estimates are rounded after
summing: a sum of n rounded rows is within n/2 micro-dollars of the exact total. The
`*_exact_usd` columns of `v_budget_status` stay exact. `v_focus_1_2` keeps its values exact
(an export to be summed and reconciled with the invoice by another tool; FOCUS sets no
precision).

`simulated` (boolean, last column of every view that shows usage or cost rows): true when the
organization's day came from the built-in simulated Admin API, i.e. some `usage_loads` row of
that organization and day has `simulated` (the loads record where each endpoint's day came
from; `costs_daily` records no source, and one code location reads usage and bill from the same
API). One rule for every view, so filtering on it keeps the views adding up. Per month
(`v_budget_status`): some day of the month is simulated. Rows of a day with no recorded load
(billed only, or inserted by hand) are not simulated. `v_usage_late_arrival` groups by it.
`v_focus_1_2` gains it as the custom column `x_Simulated` (FOCUS Column Handling: custom
columns are prefixed `x_`), after the other `x_` columns; the CSV view writes it as
'true'/'false'.

Every view is dropped (dependents first) and recreated, then granted to usage_readonly again.
The downgrade restores the 0010, 0012, 0013 and 0014 definitions (and the FOCUS view's
comment). Frozen like every migration: the SQL is written out here, nothing is imported from
the app.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
VIEW = "v_focus_1_2"
CSV_VIEW = "v_focus_1_2_csv"


def simulated_day(organization: str, usage_date: str) -> str:
    """Whether an organization's day is simulated: some endpoint's load of it is (see above).
    A scalar subquery, not a join: a query that does not read `simulated` does not read
    usage_loads at all (the pricing reads v_usage_token_kinds), where a join to a grouped
    subquery stays in the plan once a WHERE fixes the organization."""
    return (
        f"coalesce((SELECT bool_or(l.simulated) FROM {S}.usage_loads l "
        f"WHERE l.organization = {organization} AND l.usage_date = {usage_date}), false)"
    )


#: The token kinds, in estimate_cost_usd()'s argument order (migration 0004).
TOKEN_KINDS = [
    "input_text_uncached_tokens", "input_text_cached_tokens", "input_cache_write_30m_tokens",
    "input_cache_write_12h_tokens", "input_audio_uncached_tokens", "input_audio_cached_tokens",
    "input_image_uncached_tokens", "input_image_cached_tokens", "output_text_tokens",
    "output_audio_tokens", "output_image_tokens",
]  # fmt: skip
KIND_SUMS = ",\n           ".join(f"sum({kind}) AS {kind}" for kind in TOKEN_KINDS)
KIND_ARGS = ", ".join(f"k.{kind}" for kind in TOKEN_KINDS)

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
    coalesce(u.output_image_tokens, 0) AS output_image_tokens,
    {simulated_day("u.organization", "(u.bucket_start AT TIME ZONE 'UTC')::date")} AS simulated
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

#: Per key: the key's usage of each model, batch flag and tier of the day is priced with its
#: day row's price, and only when that row is priced (cost is linear in the token kinds, so the
#: keys' costs of a priced row sum to the row's cost); the rest is unpriced_tokens. Usage whose
#: day has not been priced yet (no day row) is unpriced too.
API_KEY_VIEW = f"""
CREATE VIEW {S}.v_api_key_daily_cost AS
WITH k AS (
    SELECT organization, usage_date, project_id, api_key_id, model, batch, service_tier,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(num_model_requests) AS num_model_requests,
           {KIND_SUMS}
    FROM {S}.v_usage_token_kinds
    GROUP BY organization, usage_date, project_id, api_key_id, model, batch, service_tier
), priced AS (
    SELECT k.organization, k.usage_date, k.project_id, k.api_key_id, k.input_tokens,
           k.output_tokens, k.num_model_requests, c.cost_usd IS NOT NULL AS priced,
           CASE WHEN c.cost_usd IS NOT NULL THEN {S}.estimate_cost_usd(mp, {KIND_ARGS}) END
               AS cost
    FROM k
    LEFT JOIN {S}.project_daily_costs c
           ON c.organization = k.organization AND c.usage_date = k.usage_date
          AND c.project_id IS NOT DISTINCT FROM k.project_id
          AND c.model IS NOT DISTINCT FROM k.model AND c.batch IS NOT DISTINCT FROM k.batch
          AND c.service_tier IS NOT DISTINCT FROM k.service_tier
    LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
)
SELECT x.organization, x.usage_date, x.project_id,
       coalesce(p.name, x.project_id, '(default project)') AS project_name, x.api_key_id,
       ak.name AS api_key_name, ak.redacted_value,
       sum(x.input_tokens) AS input_tokens, sum(x.output_tokens) AS output_tokens,
       sum(x.num_model_requests) AS num_model_requests,
       round(coalesce(sum(x.cost), 0), 6) AS cost_usd,
       coalesce(sum(x.input_tokens + x.output_tokens) FILTER (WHERE NOT x.priced), 0)::bigint
           AS unpriced_tokens,
       {simulated_day("x.organization", "x.usage_date")} AS simulated
FROM priced x
LEFT JOIN {S}.projects p ON p.organization = x.organization AND p.id = x.project_id
LEFT JOIN {S}.api_keys ak ON ak.organization = x.organization AND ak.id = x.api_key_id
GROUP BY x.organization, x.usage_date, x.project_id, p.name, x.api_key_id, ak.name,
         ak.redacted_value
"""

MODEL_VIEW = f"""
CREATE VIEW {S}.v_model_daily_cost AS
SELECT c.organization, c.usage_date, c.project_id,
       coalesce(p.name, c.project_id, '(default project)') AS project_name, c.model, c.model_ref,
       c.batch, c.service_tier, c.input_tokens, c.output_tokens, c.num_model_requests,
       round(coalesce(c.cost_usd, 0), 6) AS cost_usd,
       CASE WHEN c.cost_usd IS NULL THEN c.input_tokens + c.output_tokens ELSE 0 END
           AS unpriced_tokens,
       c.unpriced_reason, c.price_id, mp.source AS price_source,
       {simulated_day("c.organization", "c.usage_date")} AS simulated
FROM {S}.project_daily_costs c
LEFT JOIN {S}.projects p ON p.organization = c.organization AND p.id = c.project_id
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
"""

#: The summary is already priced amount + unpriced tokens/rows; `cost_by_kind`'s amounts are
#: rounded as the columns are.
PROJECT_VIEW = f"""
CREATE VIEW {S}.v_project_daily_cost AS
SELECT s.organization, s.usage_date, s.project_id,
       coalesce(p.name, s.project_id, '(default project)') AS project_name,
       p.status AS project_status, round(coalesce(s.cost_usd, 0), 6) AS cost_usd,
       s.unpriced_tokens, s.input_tokens, s.output_tokens, s.num_model_requests, s.models,
       s.unpriced_usage_rows,
       (SELECT jsonb_object_agg(k.key, round(k.value::numeric, 6))
        FROM jsonb_each_text(s.cost_by_kind) k) AS cost_by_kind,
       {simulated_day("s.organization", "s.usage_date")} AS simulated
FROM {S}.project_daily_cost_summary s
LEFT JOIN {S}.projects p ON p.organization = s.organization AND p.id = s.project_id
"""

#: A day and project billed but without usage has estimated 0 (nothing priced); billed_usd
#: stays NULL where nothing is billed yet (the bill lags), the difference counting it as 0.
ESTIMATED_VS_BILLED_VIEW = f"""
CREATE VIEW {S}.v_estimated_vs_billed AS
WITH billed AS (
    SELECT organization, usage_date, project_id, sum(amount_usd) AS billed_usd
    FROM {S}.costs_daily GROUP BY 1, 2, 3
)
SELECT x.organization, x.usage_date, x.project_id,
       coalesce(p.name, x.project_id, '(default project)') AS project_name,
       x.estimated_usd, x.unpriced_tokens, x.billed_usd,
       x.estimated_usd - coalesce(x.billed_usd, 0) AS difference_usd,
       x.unpriced_usage_rows,
       {simulated_day("x.organization", "x.usage_date")} AS simulated
FROM (
    SELECT coalesce(s.organization, b.organization) AS organization,
           coalesce(s.usage_date, b.usage_date) AS usage_date,
           coalesce(s.project_id, b.project_id) AS project_id,
           round(coalesce(s.cost_usd, 0), 6) AS estimated_usd,
           coalesce(s.unpriced_tokens, 0) AS unpriced_tokens,
           round(b.billed_usd, 6) AS billed_usd,
           coalesce(s.unpriced_usage_rows, 0) AS unpriced_usage_rows
    FROM {S}.project_daily_cost_summary s
    FULL JOIN billed b
           ON b.organization = s.organization AND b.usage_date = s.usage_date
          AND b.project_id IS NOT DISTINCT FROM s.project_id
) x
LEFT JOIN {S}.projects p ON p.organization = x.organization AND p.id = x.project_id
"""

USAGE_COST_VIEW = f"""
CREATE VIEW {S}.v_usage_daily_cost AS
SELECT x.organization, x.usage_date, x.project_id,
       coalesce(p.name, x.project_id, '(default project)') AS project_name,
       x.usage_kind, x.model, x.detail, x.quantity, x.unit,
       round(coalesce(x.cost_usd, 0), 6) AS cost_usd,
       CASE WHEN x.cost_usd IS NULL THEN x.quantity ELSE 0 END AS unpriced_quantity,
       x.unpriced_reason, x.price_source,
       {simulated_day("x.organization", "x.usage_date")} AS simulated
FROM (
    SELECT c.organization, c.usage_date, c.project_id, c.usage_kind, c.model,
           jsonb_build_object('batch', c.batch, 'service_tier', c.service_tier) AS detail,
           (c.input_tokens + c.output_tokens)::numeric AS quantity, 'tokens'::text AS unit,
           c.cost_usd, c.unpriced_reason, mp.source AS price_source
    FROM {S}.project_daily_costs c
    LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
    UNION ALL
    SELECT u.organization, u.usage_date, u.project_id, u.usage_kind, u.model, u.detail,
           u.quantity, u.unit, u.cost_usd, u.unpriced_reason, up.source AS price_source
    FROM {S}.usage_daily_costs u
    LEFT JOIN {S}.unit_prices up ON up.unit_price_id = u.unit_price_id
) x
LEFT JOIN {S}.projects p ON p.organization = x.organization AND p.id = x.project_id
"""

RECONCILIATION_VIEW = f"""
CREATE VIEW {S}.v_reconciliation_daily AS
WITH estimated AS (
    SELECT organization, usage_date, project_id, usage_kind AS family,
           coalesce(sum(cost_usd), 0) AS estimated_usd,
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
SELECT x.organization, x.usage_date, x.project_id,
       coalesce(p.name, x.project_id, '(default project)') AS project_name, x.family,
       x.estimated_usd, x.unpriced_rows, x.billed_usd, x.billed_line_items,
       x.estimated_usd - x.billed_usd AS difference_usd,
       {simulated_day("x.organization", "x.usage_date")} AS simulated
FROM (
    SELECT coalesce(e.organization, b.organization) AS organization,
           coalesce(e.usage_date, b.usage_date) AS usage_date,
           coalesce(e.project_id, b.project_id) AS project_id,
           coalesce(e.family, b.family) AS family,
           round(coalesce(e.estimated_usd, 0), 6) AS estimated_usd,
           coalesce(e.unpriced_rows, 0) AS unpriced_rows,
           round(coalesce(b.billed_usd, 0), 6) AS billed_usd,
           coalesce(b.line_items, 0) AS billed_line_items
    FROM estimated e
    FULL JOIN billed b
           ON b.organization = e.organization AND b.usage_date = e.usage_date
          AND b.project_id IS NOT DISTINCT FROM e.project_id AND b.family = e.family
) x
LEFT JOIN {S}.projects p ON p.organization = x.organization AND p.id = x.project_id
"""

#: Vector store storage is a gauge (bytes stored in each hour): a day's storage, the unit it
#: is billed in, is the mean over the day's 24 hours (an hour with no row stored nothing), in
#: GiB (2^30 bytes), per organization, day and project.
VECTOR_STORE_DAILY_VIEW = f"""
CREATE VIEW {S}.v_vector_store_storage_daily AS
SELECT v.*, {simulated_day("v.organization", "v.usage_date")} AS simulated
FROM (
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
) v
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
    r.new_totals,
    {simulated_day("r.organization", "r.usage_date")} AS simulated
FROM r
WINDOW w AS (PARTITION BY r.organization, r.endpoint, r.usage_date ORDER BY r.revision)
"""

#: Simulated days apart from real ones: how late the simulator's usage arrives says nothing
#: about USAGE_LOOKBACK_DAYS.
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
        AS pct_of_latest_volume,
    simulated
FROM reloads
GROUP BY organization, endpoint, days_after_close, simulated
"""

#: Each share rounded before summing (see above: the sums stay exact); `unpriced_line_items`:
#: allocated shares whose usage has no list-price estimate (not in estimated_usd).
ALLOCATION_VIEW = f"""
CREATE VIEW {S}.v_cost_allocation_daily AS
SELECT a.organization, a.usage_date, a.project_id,
       coalesce(p.name, a.project_id, '(default project)') AS project_name,
       a.api_key_id, k.name AS api_key_name, k.redacted_value AS api_key_redacted,
       a.user_id, coalesce(u.email, u.name) AS user_name, a.model, a.usage_kind,
       sum(round(a.allocated_usd, 6)) AS billed_usd,
       round(coalesce(sum(a.estimated_usd), 0), 6) AS estimated_usd,
       coalesce(sum(round(a.allocated_usd, 6)) FILTER (WHERE a.unallocated_reason IS NOT NULL),
                0) AS unallocated_usd,
       count(*) AS line_items,
       min(a.currency) AS currency,
       count(*) FILTER (WHERE a.estimated_usd IS NULL AND a.unallocated_reason IS NULL)
           AS unpriced_line_items,
       {simulated_day("a.organization", "a.usage_date")} AS simulated
FROM {S}.cost_allocation_daily a
LEFT JOIN {S}.projects p ON p.organization = a.organization AND p.id = a.project_id
LEFT JOIN {S}.api_keys k ON k.organization = a.organization AND k.id = a.api_key_id
LEFT JOIN {S}.users u ON u.organization = a.organization AND u.id = a.user_id
GROUP BY a.organization, a.usage_date, a.project_id, p.name, a.api_key_id, k.name,
         k.redacted_value, a.user_id, u.email, u.name, a.model, a.usage_kind
"""

#: usage_kind -> ServiceName, ServiceSubcategory (parent: AI and Machine Learning), SkuMeter.
#: A kind not listed (and 'other') is the generic OpenAI API service.
SERVICES = """
    ('completions', 'OpenAI Responses and Chat Completions', 'Generative AI', 'Tokens'),
    ('embeddings', 'OpenAI Embeddings', 'Natural Language Processing', 'Embedding Tokens'),
    ('moderations', 'OpenAI Moderations', 'Natural Language Processing', 'Moderation Requests'),
    ('images', 'OpenAI Images', 'Generative AI', 'Image Generation'),
    ('audio_speeches', 'OpenAI Text to Speech', 'Generative AI', 'Speech Characters'),
    ('audio_transcriptions', 'OpenAI Transcriptions', 'Natural Language Processing',
     'Transcription Duration'),
    ('vector_stores', 'OpenAI Vector Stores', 'AI Platforms', 'Vector Store Storage'),
    ('code_interpreter_sessions', 'OpenAI Code Interpreter', 'AI Platforms',
     'Code Interpreter Sessions'),
    ('file_search_calls', 'OpenAI File Search', 'AI Platforms', 'File Search Tool Calls'),
    ('web_search_calls', 'OpenAI Web Search', 'AI Platforms', 'Web Search Tool Calls')
"""

FOCUS_VIEW = f"""
CREATE VIEW {S}.{VIEW} AS
SELECT
    a.allocated_usd AS "BilledCost",
    a.organization AS "BillingAccountId",
    a.organization AS "BillingAccountName",
    upper(a.currency) AS "BillingCurrency",
    (x.month_start + interval '1 month') AT TIME ZONE 'UTC' AS "BillingPeriodEnd",
    x.month_start AT TIME ZONE 'UTC' AS "BillingPeriodStart",
    x.charge_category AS "ChargeCategory",
    NULL::text AS "ChargeClass",
    coalesce(a.line_item, x.service_name) AS "ChargeDescription",
    'Usage-Based'::text AS "ChargeFrequency",
    (a.usage_date + 1)::timestamp AT TIME ZONE 'UTC' AS "ChargePeriodEnd",
    a.usage_date::timestamp AT TIME ZONE 'UTC' AS "ChargePeriodStart",
    CASE WHEN x.metered THEN a.quantity END AS "ConsumedQuantity",
    CASE WHEN x.metered THEN x.unit END AS "ConsumedUnit",
    a.allocated_usd AS "ContractedCost",
    a.allocated_usd AS "EffectiveCost",
    'OpenAI'::text AS "InvoiceIssuerName",
    coalesce(a.estimated_usd, a.allocated_usd) AS "ListCost",
    CASE WHEN x.metered THEN 'Standard' END AS "PricingCategory",
    CASE WHEN x.metered THEN a.quantity END AS "PricingQuantity",
    CASE WHEN x.metered THEN x.unit END AS "PricingUnit",
    'OpenAI'::text AS "ProviderName",
    'OpenAI'::text AS "PublisherName",
    a.api_key_id AS "ResourceId",
    nullif(nullif(k.name, ''), a.api_key_id) AS "ResourceName",
    CASE WHEN a.api_key_id IS NOT NULL THEN 'API Key' END AS "ResourceType",
    'AI and Machine Learning'::text AS "ServiceCategory",
    x.service_name AS "ServiceName",
    coalesce(s.service_subcategory, 'Other (AI and Machine Learning)') AS "ServiceSubcategory",
    x.sku_id AS "SkuId",
    CASE
        WHEN a.usage_kind = 'completions' AND a.line_item LIKE '%, %'
            THEN 'Tokens (' || lower(regexp_replace(a.line_item, '^.*, ', '')) || ')'
        ELSE coalesce(s.sku_meter, a.line_item, 'OpenAI API')
    END AS "SkuMeter",
    NULL::jsonb AS "SkuPriceDetails",
    x.sku_id AS "SkuPriceId",
    coalesce(a.project_id, a.organization || '/default-project') AS "SubAccountId",
    coalesce(nullif(p.name, ''), a.project_id, 'Default project') AS "SubAccountName",
    'Project'::text AS "SubAccountType",
    a.usage_kind AS "x_UsageKind",
    a.model AS "x_Model",
    a.project_id AS "x_ProjectId",
    a.user_id AS "x_UserId",
    CASE WHEN a.user_id IS NOT NULL THEN nullif(u.name, '') END AS "x_UserName",
    CASE WHEN a.api_key_id IS NOT NULL THEN k.redacted_value END AS "x_ApiKeyRedactedValue",
    a.allocation_basis AS "x_AllocationBasis",
    a.unallocated_reason AS "x_UnallocatedReason",
    CASE WHEN a.estimated_usd IS NULL THEN 'Billed cost' ELSE 'List price estimate' END
        AS "x_ListCostSource",
    {simulated_day("a.organization", "a.usage_date")} AS "x_Simulated"
FROM {S}.cost_allocation_daily a
LEFT JOIN {S}.projects p ON p.organization = a.organization AND p.id = a.project_id
LEFT JOIN {S}.api_keys k ON k.organization = a.organization AND k.id = a.api_key_id
LEFT JOIN {S}.users u ON u.organization = a.organization AND u.id = a.user_id
LEFT JOIN (VALUES {SERVICES}) AS s(usage_kind, service_name, service_subcategory, sku_meter)
       ON s.usage_kind = a.usage_kind
CROSS JOIN LATERAL (
    -- FOCUS: a Usage charge has a PricingQuantity and a ConsumedQuantity; a billed amount
    -- reported without a quantity (or its unit) is an Adjustment.
    SELECT a.quantity IS NOT NULL AND {S}.focus_unit(a.quantity_unit) IS NOT NULL AS metered,
           CASE WHEN a.quantity IS NOT NULL AND {S}.focus_unit(a.quantity_unit) IS NOT NULL
                THEN 'Usage' ELSE 'Adjustment' END AS charge_category,
           {S}.focus_unit(a.quantity_unit) AS unit,
           -- a timestamp without time zone: the session's TimeZone plays no part
           date_trunc('month', a.usage_date::timestamp) AS month_start,
           coalesce(s.service_name, 'OpenAI API') AS service_name,
           a.usage_kind || coalesce(': ' || a.line_item, '') AS sku_id
) x
"""

#: The view's columns, in order: FOCUS's (alphabetical), then the custom `x_` ones.
COLUMNS = [
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "EffectiveCost", "InvoiceIssuerName",
    "ListCost", "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName",
    "PublisherName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory",
    "ServiceName", "ServiceSubcategory", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId",
    "SubAccountId", "SubAccountName", "SubAccountType",
    "x_UsageKind", "x_Model", "x_ProjectId", "x_UserId", "x_UserName", "x_ApiKeyRedactedValue",
    "x_AllocationBasis", "x_UnallocatedReason", "x_ListCostSource", "x_Simulated",
]  # fmt: skip
DATETIME_COLUMNS = {
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargePeriodEnd",
    "ChargePeriodStart",
}


#: to_char() pattern of FOCUS's Date/Time Format, applied to the UTC wall time.
ISO_8601_UTC = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
BOOLEAN_COLUMNS = {"x_Simulated"}


def _csv_column(column: str) -> str:
    if column in DATETIME_COLUMNS:
        return f"to_char(\"{column}\" AT TIME ZONE 'UTC', '{ISO_8601_UTC}') AS \"{column}\""
    if column in BOOLEAN_COLUMNS:  # 'true' / 'false' in a file, not PostgreSQL's t / f
        return f'"{column}"::text AS "{column}"'
    return f'"{column}"'


#: The same rows for a file: a CSV has no types, so the Date/Time columns are text in FOCUS's
#: Date/Time Format ('YYYY-MM-DDTHH:mm:ssZ', UTC), whatever the session's TimeZone.
CSV_VIEW_SQL = f"""
CREATE VIEW {S}.{CSV_VIEW} AS
SELECT {", ".join(_csv_column(column) for column in COLUMNS)}
FROM {S}.{VIEW}
"""

COMMENT = f"""
COMMENT ON VIEW {S}.{VIEW} IS 'FOCUS 1.2 (FOCUS_Spec tag v1.2, 7296e31) export of cost_allocation_daily, one row per allocation row; mapping in docs/focus.md.'
"""

BUDGET_STATUS_VIEW = f"""
CREATE VIEW {S}.v_budget_status AS
WITH spend_months AS (
    -- Months with allocated spend, and the last allocated day of each (per organization).
    SELECT organization, date_trunc('month', usage_date)::date AS month,
           max(usage_date) AS as_of
    FROM {S}.cost_allocation_daily
    GROUP BY organization, date_trunc('month', usage_date)::date
),
months AS (
    SELECT organization, month, as_of FROM spend_months
    UNION ALL
    -- The current month (UTC) of an organization with budgets, before any of it is allocated.
    SELECT DISTINCT b.organization, date_trunc('month', now() AT TIME ZONE 'UTC')::date,
           NULL::date
    FROM {S}.budgets b
    WHERE NOT EXISTS (
        SELECT 1 FROM spend_months s
        WHERE s.organization = b.organization
          AND s.month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
    )
),
measured AS (
    SELECT
        b.organization, b.id AS budget_id, m.month, b.project_id, b.api_key_id, b.user_id,
        b.monthly_usd, b.thresholds, m.as_of,
        coalesce(m.as_of - m.month + 1, 0) AS days_elapsed,
        (m.month + interval '1 month')::date - m.month AS days_in_month,
        least(7, coalesce(m.as_of - m.month + 1, 0)) AS trailing_days,
        s.spend, s.trailing_spend,
        (SELECT max(t) FROM unnest(b.thresholds) t) AS last_threshold
    FROM {S}.budgets b
    JOIN months m ON m.organization = b.organization
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(a.allocated_usd), 0) AS spend,
               coalesce(sum(a.allocated_usd) FILTER (WHERE a.usage_date > m.as_of - 7), 0)
                   AS trailing_spend
        FROM {S}.cost_allocation_daily a
        WHERE a.organization = b.organization
          AND a.usage_date >= m.month
          AND a.usage_date < (m.month + interval '1 month')::date
          AND (b.project_id IS NULL OR a.project_id = b.project_id)
          AND (b.api_key_id IS NULL OR a.api_key_id = b.api_key_id)
          AND (b.user_id IS NULL OR a.user_id = b.user_id)
    ) s
),
forecast AS (
    SELECT
        measured.*,
        spend + CASE WHEN trailing_days > 0
                     THEN trailing_spend * (days_in_month - days_elapsed) / trailing_days
                     ELSE 0 END AS forecast
    FROM measured
),
percent AS (
    SELECT
        forecast.*,
        100 * spend / monthly_usd AS percent_exact,
        100 * forecast / monthly_usd AS forecast_percent_exact
    FROM forecast
),
reached AS (
    SELECT
        percent.*,
        (SELECT max(t) FROM unnest(thresholds) t WHERE t <= percent_exact) AS threshold_reached,
        (SELECT max(t) FROM unnest(thresholds) t WHERE t <= forecast_percent_exact)
            AS forecast_threshold_reached
    FROM percent
)
SELECT
    r.organization,
    r.month,
    r.budget_id,
    r.project_id,
    p.name AS project_name,
    r.api_key_id,
    k.name AS api_key_name,
    r.user_id,
    u.name AS user_name,
    u.email AS user_email,
    r.monthly_usd,
    r.thresholds,
    r.as_of,
    r.days_elapsed,
    r.days_in_month,
    round(r.spend, 6) AS spend_to_date_usd,
    r.spend AS spend_to_date_exact_usd,
    round(r.monthly_usd - r.spend, 6) AS remaining_usd,
    round(r.forecast, 6) AS forecast_usd,
    r.forecast AS forecast_exact_usd,
    round(r.percent_exact, 2) AS percent_used,
    round(r.forecast_percent_exact, 2) AS forecast_percent,
    r.threshold_reached,
    r.forecast_threshold_reached,
    r.last_threshold,
    -- The forecast crosses a threshold the month-to-date spend has not reached yet.
    coalesce(r.forecast_threshold_reached > coalesce(r.threshold_reached, 0), false)
        AS forecast_at_risk,
    CASE
        WHEN r.threshold_reached >= r.last_threshold THEN 'over'
        WHEN r.threshold_reached IS NOT NULL THEN 'warn'
        WHEN r.forecast_threshold_reached >= r.last_threshold THEN 'forecast_over'
        WHEN r.forecast_threshold_reached IS NOT NULL THEN 'forecast_warn'
        ELSE 'ok'
    END AS status,
    -- Some day of the organization's month is simulated (the day rule, per month).
    EXISTS (
        SELECT 1 FROM {S}.usage_loads l
        WHERE l.organization = r.organization AND l.simulated
          AND l.usage_date >= r.month AND l.usage_date < (r.month + interval '1 month')::date
    ) AS simulated
FROM reached r
LEFT JOIN {S}.projects p ON p.organization = r.organization AND p.id = r.project_id
LEFT JOIN {S}.api_keys k ON k.organization = r.organization AND k.id = r.api_key_id
LEFT JOIN {S}.users u ON u.organization = r.organization AND u.id = r.user_id
"""

# ------------------------------------------------- 0010's, 0012's, 0013's and 0014's, for the downgrade

OLD_TOKEN_KINDS_VIEW = f"""
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

OLD_API_KEY_VIEW = f"""
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

OLD_MODEL_VIEW = f"""
CREATE VIEW {S}.v_model_daily_cost AS
SELECT c.organization, c.usage_date, c.project_id,
       coalesce(p.name, c.project_id, '(default project)') AS project_name, c.model, c.model_ref,
       c.batch, c.service_tier, c.input_tokens, c.output_tokens, c.num_model_requests,
       c.cost_usd, c.unpriced_reason, c.price_id, mp.source AS price_source
FROM {S}.project_daily_costs c
LEFT JOIN {S}.projects p ON p.organization = c.organization AND p.id = c.project_id
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
"""

OLD_PROJECT_VIEW = f"""
CREATE VIEW {S}.v_project_daily_cost AS
SELECT s.organization, s.usage_date, s.project_id,
       coalesce(p.name, s.project_id, '(default project)') AS project_name,
       p.status AS project_status, s.cost_usd, s.unpriced_tokens, s.input_tokens,
       s.output_tokens, s.num_model_requests, s.models, s.unpriced_usage_rows, s.cost_by_kind
FROM {S}.project_daily_cost_summary s
LEFT JOIN {S}.projects p ON p.organization = s.organization AND p.id = s.project_id
"""

OLD_ESTIMATED_VS_BILLED_VIEW = f"""
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

OLD_USAGE_COST_VIEW = f"""
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

OLD_RECONCILIATION_VIEW = f"""
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
OLD_VECTOR_STORE_DAILY_VIEW = f"""
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

OLD_REVISIONS_VIEW = f"""
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

OLD_LATE_ARRIVAL_VIEW = f"""
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

OLD_ALLOCATION_VIEW = f"""
CREATE VIEW {S}.v_cost_allocation_daily AS
SELECT a.organization, a.usage_date, a.project_id,
       coalesce(p.name, a.project_id, '(default project)') AS project_name,
       a.api_key_id, k.name AS api_key_name, k.redacted_value AS api_key_redacted,
       a.user_id, coalesce(u.email, u.name) AS user_name, a.model, a.usage_kind,
       sum(a.allocated_usd) AS billed_usd,
       sum(a.estimated_usd) AS estimated_usd,
       coalesce(sum(a.allocated_usd) FILTER (WHERE a.unallocated_reason IS NOT NULL), 0)
           AS unallocated_usd,
       count(*) AS line_items,
       min(a.currency) AS currency
FROM {S}.cost_allocation_daily a
LEFT JOIN {S}.projects p ON p.organization = a.organization AND p.id = a.project_id
LEFT JOIN {S}.api_keys k ON k.organization = a.organization AND k.id = a.api_key_id
LEFT JOIN {S}.users u ON u.organization = a.organization AND u.id = a.user_id
GROUP BY a.organization, a.usage_date, a.project_id, p.name, a.api_key_id, k.name,
         k.redacted_value, a.user_id, u.email, u.name, a.model, a.usage_kind
"""

OLD_FOCUS_VIEW = f"""
CREATE VIEW {S}.{VIEW} AS
SELECT
    a.allocated_usd AS "BilledCost",
    a.organization AS "BillingAccountId",
    a.organization AS "BillingAccountName",
    upper(a.currency) AS "BillingCurrency",
    (x.month_start + interval '1 month') AT TIME ZONE 'UTC' AS "BillingPeriodEnd",
    x.month_start AT TIME ZONE 'UTC' AS "BillingPeriodStart",
    x.charge_category AS "ChargeCategory",
    NULL::text AS "ChargeClass",
    coalesce(a.line_item, x.service_name) AS "ChargeDescription",
    'Usage-Based'::text AS "ChargeFrequency",
    (a.usage_date + 1)::timestamp AT TIME ZONE 'UTC' AS "ChargePeriodEnd",
    a.usage_date::timestamp AT TIME ZONE 'UTC' AS "ChargePeriodStart",
    CASE WHEN x.metered THEN a.quantity END AS "ConsumedQuantity",
    CASE WHEN x.metered THEN x.unit END AS "ConsumedUnit",
    a.allocated_usd AS "ContractedCost",
    a.allocated_usd AS "EffectiveCost",
    'OpenAI'::text AS "InvoiceIssuerName",
    coalesce(a.estimated_usd, a.allocated_usd) AS "ListCost",
    CASE WHEN x.metered THEN 'Standard' END AS "PricingCategory",
    CASE WHEN x.metered THEN a.quantity END AS "PricingQuantity",
    CASE WHEN x.metered THEN x.unit END AS "PricingUnit",
    'OpenAI'::text AS "ProviderName",
    'OpenAI'::text AS "PublisherName",
    a.api_key_id AS "ResourceId",
    nullif(nullif(k.name, ''), a.api_key_id) AS "ResourceName",
    CASE WHEN a.api_key_id IS NOT NULL THEN 'API Key' END AS "ResourceType",
    'AI and Machine Learning'::text AS "ServiceCategory",
    x.service_name AS "ServiceName",
    coalesce(s.service_subcategory, 'Other (AI and Machine Learning)') AS "ServiceSubcategory",
    x.sku_id AS "SkuId",
    CASE
        WHEN a.usage_kind = 'completions' AND a.line_item LIKE '%, %'
            THEN 'Tokens (' || lower(regexp_replace(a.line_item, '^.*, ', '')) || ')'
        ELSE coalesce(s.sku_meter, a.line_item, 'OpenAI API')
    END AS "SkuMeter",
    NULL::jsonb AS "SkuPriceDetails",
    x.sku_id AS "SkuPriceId",
    coalesce(a.project_id, a.organization || '/default-project') AS "SubAccountId",
    coalesce(nullif(p.name, ''), a.project_id, 'Default project') AS "SubAccountName",
    'Project'::text AS "SubAccountType",
    a.usage_kind AS "x_UsageKind",
    a.model AS "x_Model",
    a.project_id AS "x_ProjectId",
    a.user_id AS "x_UserId",
    CASE WHEN a.user_id IS NOT NULL THEN nullif(u.name, '') END AS "x_UserName",
    CASE WHEN a.api_key_id IS NOT NULL THEN k.redacted_value END AS "x_ApiKeyRedactedValue",
    a.allocation_basis AS "x_AllocationBasis",
    a.unallocated_reason AS "x_UnallocatedReason",
    CASE WHEN a.estimated_usd IS NULL THEN 'Billed cost' ELSE 'List price estimate' END
        AS "x_ListCostSource"
FROM {S}.cost_allocation_daily a
LEFT JOIN {S}.projects p ON p.organization = a.organization AND p.id = a.project_id
LEFT JOIN {S}.api_keys k ON k.organization = a.organization AND k.id = a.api_key_id
LEFT JOIN {S}.users u ON u.organization = a.organization AND u.id = a.user_id
LEFT JOIN (VALUES {SERVICES}) AS s(usage_kind, service_name, service_subcategory, sku_meter)
       ON s.usage_kind = a.usage_kind
CROSS JOIN LATERAL (
    -- FOCUS: a Usage charge has a PricingQuantity and a ConsumedQuantity; a billed amount
    -- reported without a quantity (or its unit) is an Adjustment.
    SELECT a.quantity IS NOT NULL AND {S}.focus_unit(a.quantity_unit) IS NOT NULL AS metered,
           CASE WHEN a.quantity IS NOT NULL AND {S}.focus_unit(a.quantity_unit) IS NOT NULL
                THEN 'Usage' ELSE 'Adjustment' END AS charge_category,
           {S}.focus_unit(a.quantity_unit) AS unit,
           -- a timestamp without time zone: the session's TimeZone plays no part
           date_trunc('month', a.usage_date::timestamp) AS month_start,
           coalesce(s.service_name, 'OpenAI API') AS service_name,
           a.usage_kind || coalesce(': ' || a.line_item, '') AS sku_id
) x
"""

#: 0013's columns (no x_Simulated).
OLD_COLUMNS = [
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "EffectiveCost", "InvoiceIssuerName",
    "ListCost", "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName",
    "PublisherName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory",
    "ServiceName", "ServiceSubcategory", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId",
    "SubAccountId", "SubAccountName", "SubAccountType",
    "x_UsageKind", "x_Model", "x_ProjectId", "x_UserId", "x_UserName", "x_ApiKeyRedactedValue",
    "x_AllocationBasis", "x_UnallocatedReason", "x_ListCostSource",
]  # fmt: skip


def _old_csv_column(column: str) -> str:
    if column in DATETIME_COLUMNS:
        return f"to_char(\"{column}\" AT TIME ZONE 'UTC', '{ISO_8601_UTC}') AS \"{column}\""
    return f'"{column}"'


OLD_CSV_VIEW_SQL = f"""
CREATE VIEW {S}.{CSV_VIEW} AS
SELECT {", ".join(_old_csv_column(column) for column in OLD_COLUMNS)}
FROM {S}.{VIEW}
"""

OLD_BUDGET_STATUS_VIEW = f"""
CREATE VIEW {S}.v_budget_status AS
WITH spend_months AS (
    -- Months with allocated spend, and the last allocated day of each (per organization).
    SELECT organization, date_trunc('month', usage_date)::date AS month,
           max(usage_date) AS as_of
    FROM {S}.cost_allocation_daily
    GROUP BY organization, date_trunc('month', usage_date)::date
),
months AS (
    SELECT organization, month, as_of FROM spend_months
    UNION ALL
    -- The current month (UTC) of an organization with budgets, before any of it is allocated.
    SELECT DISTINCT b.organization, date_trunc('month', now() AT TIME ZONE 'UTC')::date,
           NULL::date
    FROM {S}.budgets b
    WHERE NOT EXISTS (
        SELECT 1 FROM spend_months s
        WHERE s.organization = b.organization
          AND s.month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
    )
),
measured AS (
    SELECT
        b.organization, b.id AS budget_id, m.month, b.project_id, b.api_key_id, b.user_id,
        b.monthly_usd, b.thresholds, m.as_of,
        coalesce(m.as_of - m.month + 1, 0) AS days_elapsed,
        (m.month + interval '1 month')::date - m.month AS days_in_month,
        least(7, coalesce(m.as_of - m.month + 1, 0)) AS trailing_days,
        s.spend, s.trailing_spend,
        (SELECT max(t) FROM unnest(b.thresholds) t) AS last_threshold
    FROM {S}.budgets b
    JOIN months m ON m.organization = b.organization
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(a.allocated_usd), 0) AS spend,
               coalesce(sum(a.allocated_usd) FILTER (WHERE a.usage_date > m.as_of - 7), 0)
                   AS trailing_spend
        FROM {S}.cost_allocation_daily a
        WHERE a.organization = b.organization
          AND a.usage_date >= m.month
          AND a.usage_date < (m.month + interval '1 month')::date
          AND (b.project_id IS NULL OR a.project_id = b.project_id)
          AND (b.api_key_id IS NULL OR a.api_key_id = b.api_key_id)
          AND (b.user_id IS NULL OR a.user_id = b.user_id)
    ) s
),
forecast AS (
    SELECT
        measured.*,
        spend + CASE WHEN trailing_days > 0
                     THEN trailing_spend * (days_in_month - days_elapsed) / trailing_days
                     ELSE 0 END AS forecast
    FROM measured
),
percent AS (
    SELECT
        forecast.*,
        100 * spend / monthly_usd AS percent_exact,
        100 * forecast / monthly_usd AS forecast_percent_exact
    FROM forecast
),
reached AS (
    SELECT
        percent.*,
        (SELECT max(t) FROM unnest(thresholds) t WHERE t <= percent_exact) AS threshold_reached,
        (SELECT max(t) FROM unnest(thresholds) t WHERE t <= forecast_percent_exact)
            AS forecast_threshold_reached
    FROM percent
)
SELECT
    r.organization,
    r.month,
    r.budget_id,
    r.project_id,
    p.name AS project_name,
    r.api_key_id,
    k.name AS api_key_name,
    r.user_id,
    u.name AS user_name,
    u.email AS user_email,
    r.monthly_usd,
    r.thresholds,
    r.as_of,
    r.days_elapsed,
    r.days_in_month,
    round(r.spend, 2) AS spend_to_date_usd,
    r.spend AS spend_to_date_exact_usd,
    round(r.monthly_usd - r.spend, 2) AS remaining_usd,
    round(r.forecast, 2) AS forecast_usd,
    r.forecast AS forecast_exact_usd,
    round(r.percent_exact, 2) AS percent_used,
    round(r.forecast_percent_exact, 2) AS forecast_percent,
    r.threshold_reached,
    r.forecast_threshold_reached,
    r.last_threshold,
    -- The forecast crosses a threshold the month-to-date spend has not reached yet.
    coalesce(r.forecast_threshold_reached > coalesce(r.threshold_reached, 0), false)
        AS forecast_at_risk,
    CASE
        WHEN r.threshold_reached >= r.last_threshold THEN 'over'
        WHEN r.threshold_reached IS NOT NULL THEN 'warn'
        WHEN r.forecast_threshold_reached >= r.last_threshold THEN 'forecast_over'
        WHEN r.forecast_threshold_reached IS NOT NULL THEN 'forecast_warn'
        ELSE 'ok'
    END AS status
FROM reached r
LEFT JOIN {S}.projects p ON p.organization = r.organization AND p.id = r.project_id
LEFT JOIN {S}.api_keys k ON k.organization = r.organization AND k.id = r.api_key_id
LEFT JOIN {S}.users u ON u.organization = r.organization AND u.id = r.user_id
"""

#: Dependents before what they read: the key view reads the kinds view, late arrival the
#: revisions view, the FOCUS file view the FOCUS view.
VIEWS = [
    "v_focus_1_2_csv",
    "v_focus_1_2",
    "v_budget_status",
    "v_cost_allocation_daily",
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
#: Creation order: what a view reads first (the reverse of VIEWS).
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
    ALLOCATION_VIEW,
    BUDGET_STATUS_VIEW,
    FOCUS_VIEW,
    CSV_VIEW_SQL,
    COMMENT,
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
    OLD_ALLOCATION_VIEW,
    OLD_BUDGET_STATUS_VIEW,
    OLD_FOCUS_VIEW,
    OLD_CSV_VIEW_SQL,
    COMMENT,
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


def _replace_views(statements: list[str]) -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW {S}.{view}")
    for statement in statements:
        op.execute(statement)
    op.execute(GRANT_VIEWS)


def upgrade() -> None:
    _replace_views(NEW_VIEWS)


def downgrade() -> None:
    _replace_views(OLD_VIEWS)
