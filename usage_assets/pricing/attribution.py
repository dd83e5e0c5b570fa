"""Cost attribution in PostgreSQL: priced usage per day, project, model, batch flag and tier.

Everything is set-based SQL over `v_usage_token_kinds` (token kinds, with the fallback for older
rows) and `estimate_cost_usd()` (the pricing rules), both defined once by migration 0004 (the
cache-write retentions; 0002 before it). Python only resolves model names and keeps the price
snapshot current.

Several organizations share one database (each its own code location and admin key, migration
0009): every computation here is of one `organization`. It reads that organization's usage only,
replaces that organization's cost rows of a day only (under the day's advisory lock of that
organization, `lock_partition(conn, table, "<organization>/<day>")`), and writes the
organization on every cost row. The prices (`model_prices`, `model_aliases`, `unit_prices`) are
shared by every organization.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text

from usage_assets.markdown import md_table, named
from usage_assets.pricing.prices import (
    UNIT_KINDS,
    PriceRow,
    SyncReport,
    UnitKind,
    UnitPriceRow,
    bundled_unit_price_rows,
    genai_price_rows,
    genai_unit_price_rows,
    load_price_file,
    sync_model_aliases,
    sync_price_snapshot,
    sync_unit_price_snapshot,
)
from usage_assets.warehouse.day_chunks import in_day_chunks
from usage_assets.warehouse.models import DEFAULT_ORGANIZATION, SCHEMA, TOKEN_KINDS, USAGE_KINDS
from usage_assets.warehouse.replace import lock_partition

S = SCHEMA
KIND_SUMS = ",\n".join(f"sum({kind})::bigint AS {kind}" for kind in TOKEN_KINDS)
KIND_ARGS = ", ".join(f"a.{kind}" for kind in TOKEN_KINDS)
KIND_COLUMNS = ", ".join(TOKEN_KINDS)
#: The cache-write total (30m + 12h): stored beside its parts, priced through them.
CACHE_WRITE_TOTAL = "input_cache_write_tokens"

#: Completions usage per day and key (`completions_usage_daily`): the one pass over the hourly
#: rows of the days priced; the estimate below and the allocation read it.
DAILY_USAGE_SQL = f"""
INSERT INTO {S}.completions_usage_daily (
    organization, usage_date, project_id, api_key_id, user_id, model, batch, service_tier,
    input_tokens, output_tokens, num_model_requests, {KIND_COLUMNS}, {CACHE_WRITE_TOTAL},
    breakdown_fallback)
SELECT organization, usage_date, project_id, api_key_id, user_id, model, batch, service_tier,
       sum(input_tokens)::bigint, sum(output_tokens)::bigint, sum(num_model_requests)::bigint,
       {KIND_SUMS}, sum({CACHE_WRITE_TOTAL})::bigint, bool_or(breakdown_fallback)
FROM {S}.v_usage_token_kinds
WHERE organization = :organization AND bucket_start >= :start AND bucket_start < :end
GROUP BY organization, usage_date, project_id, api_key_id, user_id, model, batch, service_tier
"""

PRICE_USAGE_SQL = f"""
INSERT INTO {S}.project_daily_costs (
    organization, usage_date, project_id, model, batch, service_tier, model_ref, price_id,
    input_tokens, output_tokens, num_model_requests, {KIND_COLUMNS}, {CACHE_WRITE_TOTAL},
    breakdown_fallback, cost_usd, unpriced_reason)
WITH a AS (
    SELECT organization, usage_date, project_id, model, batch, service_tier,
           sum(input_tokens)::bigint AS input_tokens,
           sum(output_tokens)::bigint AS output_tokens,
           sum(num_model_requests)::bigint AS num_model_requests,
           {KIND_SUMS},
           sum({CACHE_WRITE_TOTAL})::bigint AS {CACHE_WRITE_TOTAL},
           bool_or(breakdown_fallback) AS breakdown_fallback
    FROM {S}.completions_usage_daily
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
    GROUP BY organization, usage_date, project_id, model, batch, service_tier
)
-- Which price row, once per model, batch flag, tier and day (not per project: a large
-- organization's month has 175,000 rows here and about a thousand of these); the rule is the SQL
-- function model_price_for() (migration 0011). MATERIALIZED: inlined, the planner called the
-- function once per row of `a` after the join (4.5 s of a month's 175,000 rows).
, prices AS MATERIALIZED (
    SELECT k.*, al.model_ref, mp.price
    FROM (SELECT DISTINCT model, batch, service_tier, usage_date FROM a) k
    LEFT JOIN {S}.model_aliases al ON al.model = k.model
    LEFT JOIN LATERAL (
        SELECT p AS price
        FROM {S}.model_price_for(al.model_ref, k.batch, k.service_tier, k.usage_date) p
    ) mp ON true
)
SELECT a.organization, a.usage_date, a.project_id, a.model, a.batch, a.service_tier,
       pr.model_ref, (pr.price).price_id, a.input_tokens, a.output_tokens, a.num_model_requests,
       {KIND_ARGS}, a.{CACHE_WRITE_TOTAL},
       a.breakdown_fallback,
       priced.cost_usd,
       CASE WHEN priced.cost_usd IS NULL
            THEN coalesce({S}.unpriced_reason(pr.model_ref, pr.price, {KIND_ARGS}), 'missing rate')
       END
FROM a
JOIN prices pr
  ON pr.usage_date = a.usage_date AND coalesce(pr.model, '') = coalesce(a.model, '')
 AND coalesce(pr.batch::int, -1) = coalesce(a.batch::int, -1)
 AND coalesce(pr.service_tier, '') = coalesce(a.service_tier, '')
CROSS JOIN LATERAL (SELECT {S}.estimate_cost_usd(pr.price, {KIND_ARGS}) AS cost_usd) priced
"""

#: Per day and project, every usage kind: completions (tokens, from project_daily_costs) and
#: the others (usage_daily_costs). Tokens, requests and models are completions'.
SUMMARY_SQL = f"""
INSERT INTO {S}.project_daily_cost_summary (
    organization, usage_date, project_id, cost_usd, unpriced_tokens, input_tokens, output_tokens,
    num_model_requests, models, unpriced_usage_rows, cost_by_kind)
WITH k AS (
    SELECT organization, usage_date, project_id, usage_kind,
           coalesce(sum(cost_usd), 0) AS cost_usd,
           coalesce(sum(input_tokens + output_tokens) FILTER (WHERE cost_usd IS NULL), 0)
               AS unpriced_tokens,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(num_model_requests) AS num_model_requests, count(DISTINCT model) AS models,
           0 AS unpriced_usage_rows
    FROM {S}.project_daily_costs
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT organization, usage_date, project_id, usage_kind, coalesce(sum(cost_usd), 0),
           0, 0, 0, 0, 0, count(*) FILTER (WHERE cost_usd IS NULL)
    FROM {S}.usage_daily_costs
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2, 3, 4
)
SELECT organization, usage_date, project_id, sum(cost_usd), sum(unpriced_tokens)::bigint,
       sum(input_tokens)::bigint, sum(output_tokens)::bigint, sum(num_model_requests)::bigint,
       sum(models)::integer, sum(unpriced_usage_rows)::integer,
       jsonb_object_agg(usage_kind, cost_usd)
FROM k
GROUP BY organization, usage_date, project_id
"""

PRICING_WORK_MEM = "256MB"


@dataclass
class PricingInputs:
    override_file: Path | None
    reprice: bool = False


def days_between(first: dt.date, end: dt.date) -> list[dt.date]:
    """The UTC days of [first, end)."""
    return [first + dt.timedelta(days=i) for i in range((end - first).days)]


def period_bounds(first: dt.date, end: dt.date, organization: str | None) -> dict[str, Any]:
    """The bind parameters of [first, end) for the cost SQL: days and UTC timestamps."""
    return {
        "organization": organization,
        "first": first,
        "end": end,
        "start": dt.datetime.combine(first, dt.time(), dt.UTC),
        "end_ts": dt.datetime.combine(end, dt.time(), dt.UTC),
    }


def lock_days(
    conn: Connection, table: str, first: dt.date, end: dt.date, organization: str
) -> None:
    """The advisory lock of each day of `organization`'s rows of a cost table: two runs of the
    same organization and day queue; two organizations never wait for each other."""
    for day in days_between(first, end):
        lock_partition(conn, f"{S}.{table}", f"{organization}/{day.isoformat()}")


def delete_days(conn: Connection, tables: Sequence[str], bounds: dict[str, Any]) -> None:
    """Delete the organization's rows of [first, end) from each cost table in `tables` (before
    the days are written again in the same transaction)."""
    for table in tables:
        conn.execute(
            text(
                f"DELETE FROM {S}.{table} WHERE organization = :organization "
                "AND usage_date >= :first AND usage_date < :end"
            ),
            bounds,
        )


def models_of(conn: Connection, rollup: str, bounds: dict[str, Any]) -> list[str]:
    """The models a daily rollup holds for the organization's [first, end), read from the
    rollup just built (not another pass over the hourly rows)."""
    return list(
        conn.execute(
            text(
                f"SELECT DISTINCT model FROM {S}.{rollup} WHERE organization = :organization "
                "AND usage_date >= :first AND usage_date < :end AND model IS NOT NULL"
            ),
            bounds,
        ).scalars()
    )


def price_usage(
    engine: Engine,
    first: dt.date,
    end: dt.date,
    inputs: PricingInputs,
    *,
    organization: str = DEFAULT_ORGANIZATION,
) -> SyncReport:
    """Recompute `organization`'s `project_daily_costs` for [first, end): the price snapshot
    brought up to date first, then the days in chunks on USAGE_COST_WORKERS connections at once,
    each chunk in one transaction (`in_day_chunks`)."""
    overrides, _ = load_price_file(inputs.override_file)  # a bad file fails before any write
    with engine.begin() as conn:
        report = sync_price_snapshot(
            conn, [*genai_price_rows(), *overrides], reprice=inputs.reprice
        )
    in_day_chunks(
        engine, first, end, lambda conn, a, b: _price_chunk(conn, a, b, overrides, organization)
    )
    return report


def _price_days(
    conn: Connection,
    first: dt.date,
    end: dt.date,
    prices: list[PriceRow],
    overrides: list[PriceRow],
    *,
    reprice: bool,
    organization: str,
) -> SyncReport:
    """The snapshot and the days in the caller's transaction (`recompute_costs`)."""
    report = sync_price_snapshot(conn, prices, reprice=reprice)
    _price_chunk(conn, first, end, overrides, organization)
    return report


def _price_chunk(
    conn: Connection, first: dt.date, end: dt.date, overrides: list[PriceRow], organization: str
) -> None:
    bounds = period_bounds(first, end, organization)
    lock_days(conn, "project_daily_costs", first, end, organization)
    # Aggregating a month of hourly rows wants a hash table, not an on-disk sort.
    conn.execute(text(f"SET LOCAL work_mem = '{PRICING_WORK_MEM}'"))
    delete_days(conn, ("completions_usage_daily", "project_daily_costs"), bounds)
    # One statement per day: a day's groups hash in a few MiB; a month's in one statement
    # wanted 400 MiB, and without it the planner sorted 7 million rows (17-34 s for 30 large
    # days against 6 s).
    for day in days_between(first, end):
        day_bounds = period_bounds(day, day + dt.timedelta(days=1), organization)
        conn.execute(
            text(DAILY_USAGE_SQL),
            {"organization": organization, "start": day_bounds["start"],
             "end": day_bounds["end_ts"]},
        )  # fmt: skip
    models = models_of(conn, "completions_usage_daily", bounds)
    sync_model_aliases(conn, models, [row.model_ref for row in overrides])
    conn.execute(
        text(PRICE_USAGE_SQL),
        {"organization": organization, "first": first, "end": end},
    )


# --------------------------------------------------------------------------- unit pricing


def unit_usage_sql(kind: UnitKind) -> str:
    """One organization's usage of a kind per day, project, API key, user (NULL where the
    endpoint has none), model and priced dimensions, in the usage's own unit: the grain of
    `unit_usage_daily`, which the estimate sums per project and the bill is allocated over."""
    keys = (
        "api_key_id, user_id, "
        if "api_key_id" in kind.endpoint.dimension_names
        else "NULL::text AS api_key_id, NULL::text AS user_id, "
    )
    if kind.name == "vector_stores":  # a gauge: GiB-days come from the view
        return (
            f"SELECT organization, usage_date, project_id, {keys}NULL::text AS model, "
            "'{}'::jsonb AS detail, gib_days AS quantity, NULL::bigint AS num_model_requests "
            f"FROM {S}.v_vector_store_storage_daily "
            "WHERE organization = :organization AND usage_date >= :first AND usage_date < :end"
        )
    endpoint = kind.endpoint
    model = "model" if kind.has_model else "NULL::text"
    pairs = ", ".join(f"'{name}', {name}" for name in kind.detail)
    detail = f"jsonb_strip_nulls(jsonb_build_object({pairs}))" if kind.detail else "'{}'::jsonb"
    requests = (
        "sum(num_model_requests)::bigint"
        if "num_model_requests" in endpoint.metric_names
        else "NULL::bigint"
    )
    return (
        "SELECT organization, (bucket_start AT TIME ZONE 'UTC')::date AS usage_date, "
        f"project_id, {keys}{model} AS model, {detail} AS detail, "
        f"sum({kind.metric})::numeric AS quantity, {requests} AS num_model_requests "
        f"FROM {S}.{endpoint.table_name} "
        "WHERE organization = :organization AND bucket_start >= :start "
        "AND bucket_start < :end_ts GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )


UNIT_ROLLUP_COLUMNS = (
    "organization, usage_date, usage_kind, project_id, api_key_id, user_id, model, detail, "
    "quantity, num_model_requests"
)


def unit_rollup_sql(kind: UnitKind) -> str:
    """Fill `unit_usage_daily` with one kind's usage per day and key for a range of days: the
    one pass over its hourly rows (the estimate below and the allocation read it)."""
    return (
        f"INSERT INTO {S}.unit_usage_daily ({UNIT_ROLLUP_COLUMNS}) "
        f"SELECT organization, usage_date, '{kind.name}', project_id, api_key_id, user_id, "
        f"model, detail, quantity, num_model_requests FROM ({unit_usage_sql(kind)}) u"
    )


def priced_quantity_sql(kind: UnitKind, column: str) -> str:
    """`column` (a quantity in the usage's own unit) in the kind's priced unit: 60 seconds make
    a minute. A kind priced in its own unit keeps the stored value itself, not a division by 1
    (which would change the numeric's scale)."""
    return column if kind.per == 1 else f"{column} / {kind.per}"


def unit_cost_sql(kind: UnitKind) -> str:
    """Price one kind's usage for a range of days in one statement: the price row from
    `unit_price_for()`, the cost from `unit_cost_usd()` (migration 0008, the rules' one place);
    the free allowance's organization total is the organization's day's sum over rows of the
    same price (each organization has its own allowance)."""
    quantity = priced_quantity_sql(kind, "quantity")
    return f"""
INSERT INTO {S}.usage_daily_costs (
    organization, usage_date, project_id, usage_kind, model, detail, quantity, unit,
    num_model_requests, free_quantity, unit_price_id, cost_usd, unpriced_reason)
WITH a AS (
    SELECT organization, usage_date, project_id, model, detail, sum(quantity) AS quantity,
           sum(num_model_requests)::bigint AS num_model_requests
    FROM {S}.unit_usage_daily
    WHERE organization = :organization AND usage_kind = '{kind.name}'
      AND usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2, 3, 4, 5
),
-- The price row once per model, priced dimensions and day, not per project (the function
-- ranks every candidate row: a month of images had 30,000 project rows, a few hundred of these).
prices AS MATERIALIZED (
    SELECT k.*, {S}.unit_price_for('{kind.name}', k.model, al.model_ref, k.detail, k.usage_date)
           AS price
    FROM (SELECT DISTINCT model, detail, usage_date FROM a) k
    LEFT JOIN {S}.model_aliases al ON al.model = k.model
), priced AS (
    SELECT a.*, pr.price
    FROM a JOIN prices pr
      ON pr.usage_date = a.usage_date AND coalesce(pr.model, '') = coalesce(a.model, '')
     AND pr.detail = a.detail
), o AS (
    SELECT priced.*,
           sum(quantity) OVER (PARTITION BY organization, usage_date, (price).unit_price_id)
               AS org_quantity
    FROM priced
)
SELECT organization, usage_date, project_id, '{kind.name}', model, detail, {quantity},
       '{kind.unit}', num_model_requests,
       {S}.unit_free_quantity(price, quantity, org_quantity, {kind.per}),
       (price).unit_price_id, {S}.unit_cost_usd(price, quantity, org_quantity, {kind.per}),
       CASE WHEN (price).unit_price_id IS NULL
            THEN {S}.unit_unpriced_reason('{kind.name}', model, detail) END
FROM o
"""


UNIT_ROLLUP_SQL: dict[str, str] = {name: unit_rollup_sql(kind) for name, kind in UNIT_KINDS.items()}
UNIT_COST_SQL: dict[str, str] = {name: unit_cost_sql(kind) for name, kind in UNIT_KINDS.items()}


def unit_price_rows(overrides: list[UnitPriceRow]) -> list[UnitPriceRow]:
    """Every unit price source: genai-prices, the bundled list, the override file."""
    return [*genai_unit_price_rows(), *bundled_unit_price_rows(), *overrides]


def price_unit_usage(
    engine: Engine,
    first: dt.date,
    end: dt.date,
    inputs: PricingInputs,
    *,
    organization: str = DEFAULT_ORGANIZATION,
) -> SyncReport:
    """Recompute `organization`'s `usage_daily_costs` for [first, end): the unit price
    snapshot first, then the days in chunks, each in one transaction (as `price_usage`)."""
    overrides, unit_overrides = load_price_file(inputs.override_file)  # fails before writes
    override_models = [row.model_ref for row in overrides]
    with engine.begin() as conn:
        report = sync_unit_price_snapshot(
            conn, unit_price_rows(unit_overrides), reprice=inputs.reprice
        )
    in_day_chunks(
        engine,
        first,
        end,
        lambda conn, a, b: _price_unit_chunk(conn, a, b, override_models, organization),
    )
    return report


def _price_unit_days(
    conn: Connection,
    first: dt.date,
    end: dt.date,
    prices: list[UnitPriceRow],
    override_models: list[str],
    *,
    reprice: bool,
    organization: str,
) -> SyncReport:
    """The snapshot and the days in the caller's transaction (`recompute_costs`)."""
    report = sync_unit_price_snapshot(conn, prices, reprice=reprice)
    _price_unit_chunk(conn, first, end, override_models, organization)
    return report


def _price_unit_chunk(
    conn: Connection, first: dt.date, end: dt.date, override_models: list[str], organization: str
) -> None:
    bounds = period_bounds(first, end, organization)
    lock_days(conn, "usage_daily_costs", first, end, organization)
    conn.execute(text(f"SET LOCAL work_mem = '{PRICING_WORK_MEM}'"))
    delete_days(conn, ("unit_usage_daily", "usage_daily_costs"), bounds)
    for statement in UNIT_ROLLUP_SQL.values():
        conn.execute(text(statement), bounds)
    sync_model_aliases(conn, models_of(conn, "unit_usage_daily", bounds), override_models)
    for statement in UNIT_COST_SQL.values():
        conn.execute(text(statement), bounds)


def summarize_costs(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> int:
    """Recompute `organization`'s `project_daily_cost_summary` for [first, end) in one
    transaction; rows written."""
    with engine.begin() as conn:
        return _summarize_days(conn, first, end, organization)


def _summarize_days(conn: Connection, first: dt.date, end: dt.date, organization: str) -> int:
    bounds = period_bounds(first, end, organization)
    lock_days(conn, "project_daily_cost_summary", first, end, organization)
    delete_days(conn, ("project_daily_cost_summary",), bounds)
    return int(conn.execute(text(SUMMARY_SQL), bounds).rowcount)


# --------------------------------------------------------------------------- recompute

#: Rows of the organization asked for, or of every organization (NULL).
_ORGANIZATION_MATCHES = "(CAST(:organization AS text) IS NULL OR organization = :organization)"
_USAGE_DAYS = "\nUNION\n".join(
    f"SELECT DISTINCT organization, (bucket_start AT TIME ZONE 'UTC')::date AS day "
    f"FROM {S}.{name}_usage_hourly "
    f"WHERE {_ORGANIZATION_MATCHES} AND bucket_start >= :start AND bucket_start < :end_ts"
    for name in USAGE_KINDS
)
#: (organization, day) of every day with usage or cost rows in the range.
COST_DAYS_SQL = f"""
{_USAGE_DAYS}
UNION
SELECT organization, usage_date FROM {S}.project_daily_costs
WHERE {_ORGANIZATION_MATCHES} AND usage_date >= :first AND usage_date < :end
UNION
SELECT organization, usage_date FROM {S}.usage_daily_costs
WHERE {_ORGANIZATION_MATCHES} AND usage_date >= :first AND usage_date < :end
UNION
SELECT organization, usage_date FROM {S}.project_daily_cost_summary
WHERE {_ORGANIZATION_MATCHES} AND usage_date >= :first AND usage_date < :end
ORDER BY day, organization
"""


@dataclass(frozen=True)
class Recomputed:
    #: The distinct days recomputed (of any organization), in order.
    days: list[dt.date]
    cost_before_usd: Decimal
    cost_after_usd: Decimal
    #: The organizations recomputed, in order.
    organizations: list[str] = field(default_factory=list)


def _stored_cost(conn: Connection, day: dt.date, organization: str) -> Decimal:
    return Decimal(
        conn.execute(
            text(f"SELECT (SELECT coalesce(sum(cost_usd), 0) FROM {S}.project_daily_costs "
                 "WHERE organization = :organization AND usage_date = :day) "
                 f"+ (SELECT coalesce(sum(cost_usd), 0) FROM {S}.usage_daily_costs "
                 "WHERE organization = :organization AND usage_date = :day)"),
            {"day": day, "organization": organization},
        ).scalar_one()
    )  # fmt: skip


def recompute_costs(
    engine: Engine,
    first: dt.date = dt.date.min,
    end: dt.date = dt.date.max,
    inputs: PricingInputs | None = None,
    *,
    organization: str | None = None,
) -> Recomputed:
    """Re-price every day in [first, end) that has usage or cost rows, with the current rules
    and the stored price snapshot: cost rows of every usage kind and the per-project summary,
    one transaction per organization and day.

    `organization` None (the default, and `usage-db recompute-costs` without
    `--organization`) recomputes every organization that has usage or cost rows in the
    database: re-pricing reads only stored usage and the shared price snapshot, never an
    organization's Admin API, so one run fixes the rows of every code location after a rule
    changed. A name recomputes that organization only; the others' rows are not touched.

    For cost rows priced before a rule changed (migration 0004: cache writes were counted
    twice). A day's usage is not fetched again; a day's rows are replaced, never appended.
    """
    inputs = inputs or PricingInputs(None)
    overrides, unit_overrides = load_price_file(inputs.override_file)  # fails before writes
    prices = [*genai_price_rows(), *overrides]
    unit_prices = unit_price_rows(unit_overrides)
    bounds = period_bounds(first, end, organization)
    with engine.connect() as conn:
        pairs = [(str(o), d) for o, d in conn.execute(text(COST_DAYS_SQL), bounds)]
    before = after = Decimal(0)
    for org, day in pairs:
        next_day = day + dt.timedelta(days=1)
        with engine.begin() as conn:
            before += _stored_cost(conn, day, org)
            _price_days(conn, day, next_day, prices, overrides, reprice=inputs.reprice,
                        organization=org)  # fmt: skip
            _price_unit_days(conn, day, next_day, unit_prices,
                             [row.model_ref for row in overrides],
                             reprice=inputs.reprice, organization=org)  # fmt: skip
            _summarize_days(conn, day, next_day, org)
            after += _stored_cost(conn, day, org)
    return Recomputed(
        sorted({day for _, day in pairs}), before, after, sorted({org for org, _ in pairs})
    )


# --------------------------------------------------------------------------- check queries


@dataclass(frozen=True)
class CostTotals:
    rows: int
    cost_usd: Decimal
    unpriced_tokens: int
    input_tokens: int
    output_tokens: int
    num_model_requests: int
    #: Distinct projects (the default project, NULL, counts as one).
    projects: int
    #: The ten costliest projects: (project_id, its name from `projects` or None, cost).
    top_projects: list[tuple[str | None, str | None, Decimal]]


def cost_totals(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> CostTotals:
    bounds = period_bounds(first, end, organization)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                f"SELECT count(*), coalesce(sum(cost_usd), 0), "
                f"coalesce(sum(input_tokens + output_tokens) FILTER (WHERE cost_usd IS NULL), 0), "
                f"coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
                f"coalesce(sum(num_model_requests), 0), count(DISTINCT coalesce(project_id, '')) "
                f"FROM {S}.project_daily_costs "
                "WHERE organization = :organization AND usage_date >= :first AND usage_date < :end"
            ),
            bounds,
        ).one()
        top = conn.execute(
            text(
                "SELECT c.project_id, p.name, coalesce(sum(c.cost_usd), 0) AS cost "
                f"FROM {S}.project_daily_costs c "
                f"LEFT JOIN {S}.projects p ON p.organization = c.organization "
                "AND p.id = c.project_id "
                "WHERE c.organization = :organization AND c.usage_date >= :first "
                "AND c.usage_date < :end "
                "GROUP BY c.project_id, p.name ORDER BY cost DESC NULLS LAST, 1 LIMIT 10"
            ),
            bounds,
        ).all()
    return CostTotals(
        rows=int(row[0]),
        cost_usd=Decimal(row[1]),
        unpriced_tokens=int(row[2]),
        input_tokens=int(row[3]),
        output_tokens=int(row[4]),
        num_model_requests=int(row[5]),
        projects=int(row[6]),
        top_projects=[(project, name, Decimal(cost)) for project, name, cost in top],
    )


def raw_totals(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> tuple[int, int, int]:
    bounds = period_bounds(first, end, organization)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
                f"coalesce(sum(num_model_requests), 0) FROM {S}.completions_usage_hourly "
                "WHERE organization = :organization "
                "AND bucket_start >= :start AND bucket_start < :end_ts"
            ),
            bounds,
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def kind_mismatches(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> int:
    """Cost rows whose token kinds do not add up to their input/output totals, or whose
    cache-write total is not its 30-minute and 12-hour parts (each token priced exactly once)."""
    inputs = " + ".join(k for k in TOKEN_KINDS if k.startswith("input_"))
    outputs = " + ".join(k for k in TOKEN_KINDS if k.startswith("output_"))
    parts = "input_cache_write_30m_tokens + input_cache_write_12h_tokens"
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    f"SELECT count(*) FROM {S}.project_daily_costs "
                    "WHERE organization = :organization "
                    "AND usage_date >= :first AND usage_date < :end "
                    f"AND ({inputs} <> input_tokens OR {outputs} <> output_tokens "
                    f"OR {CACHE_WRITE_TOTAL} <> {parts})"
                ),
                period_bounds(first, end, organization),
            ).scalar_one()
        )


def unpriced_usage(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> list[tuple[Any, ...]]:
    """(model, service_tier, batch, reason, tokens) of usage with no price."""
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    f"SELECT model, service_tier, batch, unpriced_reason, "
                    f"sum(input_tokens + output_tokens)::bigint AS tokens "
                    f"FROM {S}.project_daily_costs WHERE cost_usd IS NULL "
                    "AND organization = :organization "
                    "AND usage_date >= :first AND usage_date < :end "
                    "GROUP BY 1, 2, 3, 4 ORDER BY tokens DESC"
                ),
                period_bounds(first, end, organization),
            )
        ]


def negative_values(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> int:
    columns = ["input_tokens", "output_tokens", "num_model_requests", "cost_usd", *TOKEN_KINDS,
               CACHE_WRITE_TOTAL]  # fmt: skip
    condition = " OR ".join(f"{c} < 0" for c in columns)
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    f"SELECT count(*) FROM {S}.project_daily_costs "
                    "WHERE organization = :organization "
                    "AND usage_date >= :first AND usage_date < :end "
                    f"AND ({condition})"
                ),
                period_bounds(first, end, organization),
            ).scalar_one()
        )


# --------------------------------------------------------------------------- reconciliation

KIND_ARGS_C = ", ".join(f"c.{kind}" for kind in TOKEN_KINDS)

#: Estimated cost rows of every kind: completions (project_daily_costs) and the others.
_ESTIMATES = f"""
    SELECT usage_date, project_id, usage_kind, cost_usd FROM {S}.project_daily_costs
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
    UNION ALL
    SELECT usage_date, project_id, usage_kind, cost_usd FROM {S}.usage_daily_costs
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
"""

#: The project's name beside its id (NULL: the default project, or not in `projects` yet).
_PROJECT_NAME = (
    f"LEFT JOIN {S}.projects p ON p.organization = :organization "
    "AND p.id = coalesce(e.project_id, b.project_id)"
)

RECONCILE_PROJECTS_SQL = f"""
WITH estimated AS (
    SELECT usage_date, project_id, sum(cost_usd) AS estimated_usd
    FROM ({_ESTIMATES}) e
    GROUP BY 1, 2
), billed AS (
    SELECT usage_date, project_id, sum(amount_usd) AS billed_usd
    FROM {S}.costs_daily
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2
)
SELECT coalesce(e.usage_date, b.usage_date), coalesce(e.project_id, b.project_id),
       coalesce(e.estimated_usd, 0), coalesce(b.billed_usd, 0), p.name
FROM estimated e
FULL JOIN billed b ON b.usage_date = e.usage_date AND b.project_id IS NOT DISTINCT FROM e.project_id
{_PROJECT_NAME}
"""

#: v_reconciliation_daily (migration 0008) for a range of days: per day, project and family
#: (the usage kind of a billed line item by `line_item_family()`, 'other' when unknown).
RECONCILE_FAMILIES_SQL = f"""
WITH estimated AS (
    SELECT usage_date, project_id, usage_kind AS family, sum(cost_usd) AS usd,
           count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_rows
    FROM ({_ESTIMATES}) e
    GROUP BY 1, 2, 3
), billed AS (
    SELECT usage_date, project_id, {S}.line_item_family(line_item, quantity_unit) AS family,
           sum(amount_usd) AS usd
    FROM {S}.costs_daily
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2, 3
)
SELECT coalesce(e.usage_date, b.usage_date), coalesce(e.project_id, b.project_id),
       coalesce(e.family, b.family), coalesce(e.usd, 0), coalesce(b.usd, 0),
       coalesce(e.unpriced_rows, 0), p.name
FROM estimated e
FULL JOIN billed b
       ON b.usage_date = e.usage_date AND b.project_id IS NOT DISTINCT FROM e.project_id
      AND b.family = e.family
{_PROJECT_NAME}
"""

RECONCILE_LINE_ITEMS_SQL = f"""
WITH estimated AS (
    SELECT c.usage_date, c.project_id, c.model, k.line_item_kind, sum(k.cost_usd) AS usd
    FROM {S}.project_daily_costs c
    LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
    CROSS JOIN LATERAL {S}.estimate_cost_by_kind(mp, {KIND_ARGS_C}) k
    WHERE c.organization = :organization AND c.usage_date >= :first AND c.usage_date < :end
    GROUP BY 1, 2, 3, 4
), billed AS (
    SELECT usage_date, project_id, line_item_model AS model, line_item_kind,
           sum(amount_usd) AS usd
    FROM {S}.costs_daily
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
      AND {S}.line_item_family(line_item, quantity_unit) = 'completions'
    GROUP BY 1, 2, 3, 4
)
SELECT coalesce(e.usage_date, b.usage_date), coalesce(e.project_id, b.project_id),
       coalesce(e.model, b.model), coalesce(e.line_item_kind, b.line_item_kind),
       coalesce(e.usd, 0), coalesce(b.usd, 0), p.name
FROM estimated e
FULL JOIN billed b
       ON b.usage_date = e.usage_date AND b.project_id IS NOT DISTINCT FROM e.project_id
      AND b.model IS NOT DISTINCT FROM e.model AND b.line_item_kind = e.line_item_kind
{_PROJECT_NAME}
WHERE coalesce(e.usd, 0) <> 0 OR coalesce(b.usd, 0) <> 0
"""


@dataclass(frozen=True)
class Gap:
    usage_date: dt.date
    project_id: str | None
    what: str
    estimated_usd: Decimal
    billed_usd: Decimal
    #: The project's name (`projects`), shown beside the id; None while unknown.
    project_name: str | None = None

    @property
    def difference_usd(self) -> Decimal:
        return self.estimated_usd - self.billed_usd

    def relative(self) -> Decimal:
        base = max(abs(self.billed_usd), abs(self.estimated_usd))
        return abs(self.difference_usd) / base if base else Decimal(0)


G = TypeVar("G", bound=Gap)


@dataclass(frozen=True)
class FamilyGap(Gap):
    #: Estimated cost rows of the family without a price (their cost is not in the estimate).
    unpriced_rows: int = 0


@dataclass(frozen=True)
class Reconciliation:
    projects: list[Gap]
    #: Per day, project and line-item family (usage kind, or 'other').
    families: list[FamilyGap]
    #: Completions per day, project, model and token kind.
    line_items: list[Gap]
    tolerance: Decimal
    #: The organization compared: its billed rows against its estimates, nobody else's.
    organization: str = DEFAULT_ORGANIZATION

    @property
    def failing_projects(self) -> list[Gap]:
        return [gap for gap in self.projects if gap.relative() > self.tolerance]

    def family_totals(self) -> list[FamilyGap]:
        """Each family over every day and project, in usage-kind order ('other' last)."""
        totals: dict[str, FamilyGap] = {}
        for g in self.families:
            t = totals.get(g.what)
            totals[g.what] = FamilyGap(
                g.usage_date if t is None else min(t.usage_date, g.usage_date), None, g.what,
                g.estimated_usd + (t.estimated_usd if t else 0),
                g.billed_usd + (t.billed_usd if t else 0),
                unpriced_rows=g.unpriced_rows + (t.unpriced_rows if t else 0),
            )  # fmt: skip
        order = {kind: i for i, kind in enumerate(USAGE_KINDS)}
        return sorted(totals.values(), key=lambda g: (order.get(g.what, len(order)), g.what))

    def worst(self, gaps: Sequence[G], n: int = 10) -> list[G]:
        return sorted(gaps, key=lambda g: abs(g.difference_usd), reverse=True)[:n]


def reconcile(
    engine: Engine,
    first: dt.date,
    end: dt.date,
    tolerance: float,
    *,
    organization: str = DEFAULT_ORGANIZATION,
) -> Reconciliation:
    """`organization`'s estimated vs billed per project (every usage kind against every line
    item), per line-item family, and per completions model and token kind: its billed rows
    (`costs_daily`) only against its own estimates, so a project id or the default project
    (NULL) of another organization never counts."""
    bounds = period_bounds(first, end, organization)
    with engine.connect() as conn:
        projects = [
            Gap(d, p, "all usage", Decimal(e), Decimal(b), name)
            for d, p, e, b, name in conn.execute(text(RECONCILE_PROJECTS_SQL), bounds)
        ]
        families = [
            FamilyGap(d, p, family, Decimal(e), Decimal(b), name, unpriced_rows=int(u))
            for d, p, family, e, b, u, name in conn.execute(text(RECONCILE_FAMILIES_SQL), bounds)
        ]
        line_items = [
            Gap(d, p, f"{model}, {kind}", Decimal(e), Decimal(b), name)
            for d, p, model, kind, e, b, name in conn.execute(
                text(RECONCILE_LINE_ITEMS_SQL), bounds
            )
        ]
    return Reconciliation(projects, families, line_items, Decimal(str(tolerance)), organization)


def families_markdown(gaps: Sequence[FamilyGap]) -> str:
    """Per family totals: estimated, billed, difference, and unpriced estimate rows."""
    if not gaps:
        return "_nothing estimated or billed_"
    return md_table(
        ["family", "estimated", "billed", "difference", "relative", "unpriced rows"],
        [
            (
                g.what,
                money(g.estimated_usd),
                money(g.billed_usd),
                money(g.difference_usd),
                f"{g.relative():.1%}",
                g.unpriced_rows,
            )
            for g in gaps
        ],
        right=[1, 2, 3, 4, 5],
    )


def gaps_markdown(gaps: Sequence[Gap], what: str = "line items") -> str:
    if not gaps:
        return "_no gaps_"
    return md_table(
        ["day", "project", what, "estimated", "billed", "difference", "relative"],
        [
            (
                g.usage_date,
                named(g.project_id, g.project_name),
                g.what,
                money(g.estimated_usd),
                money(g.billed_usd),
                money(g.difference_usd),
                f"{g.relative():.1%}",
            )
            for g in gaps
        ],
        right=[3, 4, 5, 6],
    )


def money(value: Decimal) -> str:
    """USD for tables in metadata: cents are not enough for a single model's day."""
    return f"${value:,.4f}"


# --------------------------------------------------------------------------- unit-cost checks


@dataclass(frozen=True)
class KindTotals:
    """One usage kind's cost rows over some days."""

    usage_kind: str
    unit: str
    rows: int
    quantity: Decimal
    cost_usd: Decimal
    unpriced_rows: int
    unpriced_quantity: Decimal


def unit_cost_totals(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> dict[str, KindTotals]:
    """Per usage kind (every kind but completions, those with cost rows)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT usage_kind, min(unit), count(*), coalesce(sum(quantity), 0), "
                "coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL), "
                "coalesce(sum(quantity) FILTER (WHERE cost_usd IS NULL), 0) "
                f"FROM {S}.usage_daily_costs WHERE organization = :organization "
                "AND usage_date >= :first AND usage_date < :end "
                "GROUP BY usage_kind"
            ),
            period_bounds(first, end, organization),
        ).all()
    return {
        kind: KindTotals(kind, unit, int(n), Decimal(q), Decimal(c), int(un), Decimal(uq))
        for kind, unit, n, q, c, un, uq in rows
    }


def raw_unit_quantities(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> dict[str, Decimal]:
    """Each kind's usage straight from its table (or view), in its priced unit."""
    bounds = period_bounds(first, end, organization)
    quantities: dict[str, Decimal] = {}
    with engine.connect() as conn:
        for name, kind in UNIT_KINDS.items():
            source = (
                f"SELECT coalesce(sum(gib_days), 0) FROM {S}.v_vector_store_storage_daily "
                "WHERE organization = :organization AND usage_date >= :first AND usage_date < :end"
                if name == "vector_stores"
                else f"SELECT coalesce(sum({kind.metric}), 0) FROM {S}.{kind.endpoint.table_name} "
                "WHERE organization = :organization "
                "AND bucket_start >= :start AND bucket_start < :end_ts"
            )
            quantities[name] = Decimal(conn.execute(text(source), bounds).scalar_one()) / kind.per
    return quantities


#: Quantities in minutes (seconds / 60) are rounded by PostgreSQL's numeric division.
QUANTITY_TOLERANCE = Decimal("1e-9")


def unit_quantity_mismatches(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> list[tuple[str, Decimal, Decimal]]:
    """(kind, costed quantity, usage quantity) of every kind whose cost rows lost or added
    usage."""
    costed = unit_cost_totals(engine, first, end, organization=organization)
    mismatches = []
    for kind, raw in raw_unit_quantities(engine, first, end, organization=organization).items():
        got = costed[kind].quantity if kind in costed else Decimal(0)
        if abs(got - raw) > QUANTITY_TOLERANCE * max(Decimal(1), abs(raw)):
            mismatches.append((kind, got, raw))
    return mismatches


def unpriced_unit_usage(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> list[tuple[Any, ...]]:
    """(kind, reason, quantity, unit) of usage with no unit price, largest first."""
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT usage_kind, unpriced_reason, sum(quantity) AS quantity, min(unit) "
                    f"FROM {S}.usage_daily_costs WHERE cost_usd IS NULL "
                    "AND organization = :organization "
                    "AND usage_date >= :first AND usage_date < :end "
                    "GROUP BY 1, 2 ORDER BY 1, quantity DESC"
                ),
                period_bounds(first, end, organization),
            )
        ]


def unit_negative_values(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    f"SELECT count(*) FROM {S}.usage_daily_costs "
                    "WHERE organization = :organization AND usage_date >= :first "
                    "AND usage_date < :end AND (quantity < 0 OR "
                    "free_quantity < 0 OR free_quantity > quantity OR cost_usd < 0 OR "
                    "num_model_requests < 0)"
                ),
                period_bounds(first, end, organization),
            ).scalar_one()
        )


def summary_totals(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> tuple[int, Decimal, int, int]:
    """(projects, cost_usd of every kind, unpriced tokens, unpriced usage rows) of the
    summary."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), coalesce(sum(cost_usd), 0), coalesce(sum(unpriced_tokens), 0), "
                f"coalesce(sum(unpriced_usage_rows), 0) FROM {S}.project_daily_cost_summary "
                "WHERE organization = :organization AND usage_date >= :first AND usage_date < :end"
            ),
            period_bounds(first, end, organization),
        ).one()
    return int(row[0]), Decimal(row[1]), int(row[2]), int(row[3])
