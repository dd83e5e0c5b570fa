"""Per API key, every usage kind: the keys of a project's day add up to the project's cost

Revision ID: 0017
Revises: 0016 (0016 only writes comments; the view is 0015's)
Create Date: 2026-12-02 23:00:00

Before 0017 `v_api_key_daily_cost` was completions only: summed over its keys, a project's day
gave `v_project_daily_cost.cost_by_kind ->> 'completions'`, not the project's `cost_usd`
(every kind). Now the view has every usage kind, one row per organization, day, project and
API key, and for every organization, day and project:

    sum over keys of cost_usd                        = v_project_daily_cost.cost_usd
    sum over keys of cost_by_kind ->> kind           = v_project_daily_cost.cost_by_kind ->> kind
    sum over keys of unpriced_tokens                 = v_project_daily_cost.unpriced_tokens
    sum over keys of unpriced_quantity_by_kind ->> kind
                                  = sum of v_usage_daily_cost.unpriced_quantity of that kind

to the rounding of the rows summed (each view rounds its USD to 6 decimals: within half a
micro-dollar per row; the shares below are exact up to numeric division, 16 significant
digits or more), whenever the cost rows are those of the usage as loaded (the cost assets
follow the usage; usage of a day not priced yet is unpriced, as before).

How a key's day is costed (0015's rule, priced amount beside what is unpriced):

- completions as before: the key's token kinds of each model, batch flag and service tier
  at the price of that day row (`project_daily_costs`), and only when that row is priced; the
  rest is `unpriced_tokens`. Cost is linear in the token kinds, so the keys' costs of a priced
  row sum to the row's cost.
- every other kind: the key's quantity's share of its `usage_daily_costs` row (per day,
  project, kind, model and priced detail), `cost_usd * key quantity / row quantity`. Cost is
  linear in quantity within a row and a free allowance is shared pro rata, so the quantity's
  share is the cost's share (the allocation's `_unit_basis`, written out here). A row without a
  price, or usage without a row yet, is the key's `unpriced_quantity_by_kind` in the kind's unit
  (`v_usage_daily_cost.unit`: tokens, images, characters, minutes, gib_days, sessions, calls).
- NULL `api_key_id`: usage with no key (the endpoints without an API key dimension, vector
  store storage and code interpreter sessions, all of theirs; the unkeyed rows of the others,
  e.g. playground usage).

Columns: 0015's, in their order and types; `input_tokens`, `output_tokens` and
`num_model_requests` stay completions' (0 for a key with other usage only, as in the project
view), `cost_usd` and the new `cost_by_kind` (jsonb, kind -> USD rounded to 6 decimals; the
kinds the key used that day, 0 when unpriced, as `v_project_daily_cost.cost_by_kind`) are
every kind's; `unpriced_quantity_by_kind` (jsonb, the same kinds -> unpriced quantity in the
kind's unit, 0 when all priced; completions in tokens, = `unpriced_tokens`) sits beside them;
`simulated` stays last. Per key there is no count of unpriced rows: a cost row shared by two
keys would count twice, so the per-kind quantity says what is unpriced instead.

Only `v_api_key_daily_cost` changes; the per-model view `v_model_daily_cost` stays the
completions price rows by design (every kind per model: `v_usage_daily_cost`). The view now
reads each usage table and `v_vector_store_storage_daily` (GiB-days, the unit storage is
priced in). The downgrade restores 0015's definition exactly. Frozen like every migration: the
SQL is written out here (the kinds as usage_assets/pricing/prices.py UNIT_KINDS had them),
nothing is imported from the app.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "openai_usage"
VIEW = "v_api_key_daily_cost"


def simulated_day(organization: str, usage_date: str) -> str:
    """Whether an organization's day is simulated: some endpoint's load of it is (0015)."""
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

# ----------------------------------------------------------------------------- the new view

#: Every usage kind but completions, as `usage_daily_costs` groups it: (kind, hourly table,
#: metric summed per day, how many of the metric's units make one priced unit, whether the
#: rows have a model, whether they have an API key, the detail columns a price matches on).
UNIT_KINDS: list[tuple[str, str, str, int, bool, bool, tuple[str, ...]]] = [
    ("embeddings", "embeddings_usage_hourly", "input_tokens", 1, True, True, ()),
    ("moderations", "moderations_usage_hourly", "input_tokens", 1, True, True, ()),
    ("images", "images_usage_hourly", "images", 1, True, True, ("size", "source")),
    ("audio_speeches", "audio_speeches_usage_hourly", "characters", 1, True, True, ()),
    ("audio_transcriptions", "audio_transcriptions_usage_hourly", "seconds", 60, True, True, ()),
    ("vector_stores", "v_vector_store_storage_daily", "gib_days", 1, False, False, ()),
    ("code_interpreter_sessions", "code_interpreter_sessions_usage_hourly", "num_sessions", 1,
     False, False, ()),
    ("file_search_calls", "file_search_calls_usage_hourly", "num_requests", 1, False, True, ()),
    ("web_search_calls", "web_search_calls_usage_hourly", "num_requests", 1, True, True,
     ("context_level",)),
]  # fmt: skip


def unit_usage(
    kind: str, table: str, metric: str, per: int, has_model: bool, has_key: bool,
    detail: tuple[str, ...],
) -> str:  # fmt: skip
    """One kind's usage per organization, day, project, API key, model and detail, in the
    priced unit (the grain of its `usage_daily_costs` rows, split by key)."""
    key = "api_key_id" if has_key else "NULL::text"
    model = "model" if has_model else "NULL::text"
    pairs = ", ".join(f"'{name}', {name}" for name in detail)
    detail_sql = f"jsonb_strip_nulls(jsonb_build_object({pairs}))" if detail else "'{}'::jsonb"
    quantity = "sum(gib_days)" if metric == "gib_days" else f"sum({metric})::numeric"
    if per != 1:
        quantity = f"{quantity} / {per}"
    # The storage view is daily already; the tables are hourly.
    day = "usage_date" if table.startswith("v_") else "(bucket_start AT TIME ZONE 'UTC')::date"
    group = ", ".join(
        ["organization", day, "project_id"]
        + (["api_key_id"] if has_key else [])
        + (["model"] if has_model else [])
        + list(detail)
    )
    return (
        f"SELECT organization, {day} AS usage_date, project_id, {key} AS api_key_id, "
        f"'{kind}'::text AS usage_kind, {model} AS model, {detail_sql} AS detail, "
        f"{quantity} AS quantity\n    FROM {S}.{table}\n    GROUP BY {group}"
    )


UNIT_USAGE = "\n    UNION ALL\n    ".join(unit_usage(*kind) for kind in UNIT_KINDS)

#: Completions as 0015 prices them (`k`, `priced`); every other kind's key share of its cost
#: row (`units`); per key and kind (`kinds`); per key.
API_KEY_VIEW = f"""
CREATE VIEW {S}.{VIEW} AS
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
), unit_usage AS (
    {UNIT_USAGE}
), units AS (
    -- The key's share of its cost row: cost is linear in quantity within a row (a free
    -- allowance is shared pro rata), so the quantity's share is the cost's.
    SELECT s.organization, s.usage_date, s.project_id, s.api_key_id, s.usage_kind, s.quantity,
           u.cost_usd IS NOT NULL AS priced,
           CASE WHEN u.cost_usd IS NULL THEN NULL
                WHEN u.quantity = 0 THEN 0
                ELSE u.cost_usd * s.quantity / u.quantity END AS cost
    FROM unit_usage s
    LEFT JOIN {S}.usage_daily_costs u
           ON u.organization = s.organization AND u.usage_date = s.usage_date
          AND u.project_id IS NOT DISTINCT FROM s.project_id AND u.usage_kind = s.usage_kind
          AND u.model IS NOT DISTINCT FROM s.model AND u.detail = s.detail
), kinds AS (
    SELECT organization, usage_date, project_id, api_key_id, 'completions'::text AS usage_kind,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(num_model_requests) AS num_model_requests, coalesce(sum(cost), 0) AS cost,
           coalesce(sum(input_tokens + output_tokens) FILTER (WHERE NOT priced), 0)
               AS unpriced_quantity
    FROM priced
    GROUP BY organization, usage_date, project_id, api_key_id
    UNION ALL
    SELECT organization, usage_date, project_id, api_key_id, usage_kind, 0, 0, 0,
           coalesce(sum(cost), 0), coalesce(sum(quantity) FILTER (WHERE NOT priced), 0)
    FROM units
    GROUP BY organization, usage_date, project_id, api_key_id, usage_kind
)
SELECT x.organization, x.usage_date, x.project_id,
       coalesce(p.name, x.project_id, '(default project)') AS project_name, x.api_key_id,
       ak.name AS api_key_name, ak.redacted_value,
       sum(x.input_tokens) AS input_tokens, sum(x.output_tokens) AS output_tokens,
       sum(x.num_model_requests) AS num_model_requests,
       round(sum(x.cost), 6) AS cost_usd,
       coalesce(sum(x.unpriced_quantity) FILTER (WHERE x.usage_kind = 'completions'), 0)::bigint
           AS unpriced_tokens,
       jsonb_object_agg(x.usage_kind, round(x.cost, 6)) AS cost_by_kind,
       jsonb_object_agg(x.usage_kind, x.unpriced_quantity) AS unpriced_quantity_by_kind,
       {simulated_day("x.organization", "x.usage_date")} AS simulated
FROM kinds x
LEFT JOIN {S}.projects p ON p.organization = x.organization AND p.id = x.project_id
LEFT JOIN {S}.api_keys ak ON ak.organization = x.organization AND ak.id = x.api_key_id
GROUP BY x.organization, x.usage_date, x.project_id, p.name, x.api_key_id, ak.name,
         ak.redacted_value
"""

# ------------------------------------------------------------------- 0015's, for the downgrade

OLD_API_KEY_VIEW = f"""
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

# A recreated view is a new object: give it back to the BI role (0002's grants). Default
# privileges cover objects created by the role that set them, which may not be this one.
GRANT_VIEW = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'usage_readonly') THEN
        GRANT SELECT ON {S}.{VIEW} TO usage_readonly;
    END IF;
END
$$
"""


def _replace_view(statement: str) -> None:
    # Nothing reads the view (no other view depends on it): drop and create, not CREATE OR
    # REPLACE, which cannot insert columns before `simulated`.
    op.execute(f"DROP VIEW {S}.{VIEW}")
    op.execute(statement)
    op.execute(GRANT_VIEW)


def upgrade() -> None:
    _replace_view(API_KEY_VIEW)


def downgrade() -> None:
    _replace_view(OLD_API_KEY_VIEW)
