"""Cost attribution in PostgreSQL: priced usage per day, project, model, batch flag and tier.

Everything is set-based SQL over `v_usage_token_kinds` (token kinds, with the fallback for older
rows) and `estimate_cost_usd()` (the pricing rules), both defined once by migration 0004 (the
cache-write retentions; 0002 before it). Python only resolves model names and keeps the price
snapshot current.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from usage_assets.markdown import md_table
from usage_assets.models import SCHEMA, TOKEN_KINDS
from usage_assets.pricing import (
    OVERRIDE_SOURCE,
    PriceRow,
    SyncReport,
    genai_price_rows,
    load_overrides,
    sync_model_aliases,
    sync_price_snapshot,
)

S = SCHEMA
KIND_SUMS = ",\n".join(f"sum({kind})::bigint AS {kind}" for kind in TOKEN_KINDS)
KIND_ARGS = ", ".join(f"a.{kind}" for kind in TOKEN_KINDS)
KIND_COLUMNS = ", ".join(TOKEN_KINDS)
#: The cache-write total (30m + 12h): stored beside its parts, priced through them.
CACHE_WRITE_TOTAL = "input_cache_write_tokens"

PRICE_USAGE_SQL = f"""
INSERT INTO {S}.project_daily_costs (
    usage_date, project_id, model, batch, service_tier, model_ref, price_id,
    input_tokens, output_tokens, num_model_requests, {KIND_COLUMNS}, {CACHE_WRITE_TOTAL},
    breakdown_fallback, cost_usd, unpriced_reason)
WITH a AS (
    SELECT usage_date, project_id, model, batch, service_tier,
           sum(input_tokens)::bigint AS input_tokens,
           sum(output_tokens)::bigint AS output_tokens,
           sum(num_model_requests)::bigint AS num_model_requests,
           {KIND_SUMS},
           sum({CACHE_WRITE_TOTAL})::bigint AS {CACHE_WRITE_TOTAL},
           bool_or(breakdown_fallback) AS breakdown_fallback
    FROM {S}.v_usage_token_kinds
    WHERE bucket_start >= :start AND bucket_start < :end
    GROUP BY usage_date, project_id, model, batch, service_tier
)
SELECT a.usage_date, a.project_id, a.model, a.batch, a.service_tier, al.model_ref,
       (mp.price).price_id, a.input_tokens, a.output_tokens, a.num_model_requests,
       {KIND_ARGS}, a.{CACHE_WRITE_TOTAL},
       a.breakdown_fallback,
       priced.cost_usd,
       CASE WHEN priced.cost_usd IS NULL
            THEN coalesce({S}.unpriced_reason(al.model_ref, mp.price, {KIND_ARGS}), 'missing rate')
       END
FROM a
LEFT JOIN {S}.model_aliases al ON al.model = a.model
LEFT JOIN LATERAL (
    SELECT p AS price
    FROM {S}.model_prices p
    WHERE p.model_ref = al.model_ref
      AND p.superseded_at IS NULL
      AND p.batch = coalesce(a.batch, false)
      -- 'scale' is prepaid capacity: estimated at the default rates unless overridden.
      AND p.service_tier IN (coalesce(a.service_tier, 'default'),
                             CASE WHEN a.service_tier = 'scale' THEN 'default' END)
      AND p.effective_from <= a.usage_date
      AND (p.effective_to IS NULL OR a.usage_date < p.effective_to)
    ORDER BY (p.source = '{OVERRIDE_SOURCE}') DESC,
             (p.service_tier = coalesce(a.service_tier, 'default')) DESC,
             p.effective_from DESC
    LIMIT 1
) mp ON true
CROSS JOIN LATERAL (SELECT {S}.estimate_cost_usd(mp.price, {KIND_ARGS}) AS cost_usd) priced
"""

SUMMARY_SQL = f"""
INSERT INTO {S}.project_daily_cost_summary (
    usage_date, project_id, cost_usd, unpriced_tokens, input_tokens, output_tokens,
    num_model_requests, models)
SELECT usage_date, project_id,
       coalesce(sum(cost_usd), 0),
       coalesce(sum(input_tokens + output_tokens) FILTER (WHERE cost_usd IS NULL), 0)::bigint,
       sum(input_tokens)::bigint, sum(output_tokens)::bigint, sum(num_model_requests)::bigint,
       count(DISTINCT model)
FROM {S}.project_daily_costs
WHERE usage_date >= :first AND usage_date < :end
GROUP BY usage_date, project_id
"""

_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(:name), :day)"
PRICING_WORK_MEM = "256MB"


@dataclass
class PricingInputs:
    override_file: Path | None
    reprice: bool = False


def days_between(first: dt.date, end: dt.date) -> list[dt.date]:
    """The UTC days of [first, end)."""
    return [first + dt.timedelta(days=i) for i in range((end - first).days)]


def _bounds(first: dt.date, end: dt.date) -> dict[str, Any]:
    return {
        "first": first,
        "end": end,
        "start": dt.datetime.combine(first, dt.time(), dt.UTC),
        "end_ts": dt.datetime.combine(end, dt.time(), dt.UTC),
    }


def _lock_days(conn: Connection, table: str, first: dt.date, end: dt.date) -> None:
    for day in days_between(first, end):
        conn.execute(text(_LOCK_SQL), {"name": table, "day": day.toordinal()})


def price_usage(engine: Engine, first: dt.date, end: dt.date, inputs: PricingInputs) -> SyncReport:
    """Recompute `project_daily_costs` for [first, end) in one transaction."""
    overrides = load_overrides(inputs.override_file)  # a bad file fails before any write
    with engine.begin() as conn:
        return _price_days(conn, first, end, [*genai_price_rows(), *overrides], overrides,
                           reprice=inputs.reprice)  # fmt: skip


def _price_days(
    conn: Connection,
    first: dt.date,
    end: dt.date,
    prices: list[PriceRow],
    overrides: list[PriceRow],
    *,
    reprice: bool,
) -> SyncReport:
    bounds = _bounds(first, end)
    report = sync_price_snapshot(conn, prices, reprice=reprice)
    models = conn.execute(
        text(
            f"SELECT DISTINCT model FROM {S}.completions_usage_hourly "
            "WHERE bucket_start >= :start AND bucket_start < :end_ts AND model IS NOT NULL"
        ),
        bounds,
    ).scalars()
    sync_model_aliases(conn, list(models), [row.model_ref for row in overrides])
    _lock_days(conn, "project_daily_costs", first, end)
    # Aggregating a month of hourly rows wants a hash table, not an on-disk sort.
    conn.execute(text(f"SET LOCAL work_mem = '{PRICING_WORK_MEM}'"))
    conn.execute(
        text(
            f"DELETE FROM {S}.project_daily_costs WHERE usage_date >= :first AND usage_date < :end"
        ),
        bounds,
    )
    conn.execute(text(PRICE_USAGE_SQL), {"start": bounds["start"], "end": bounds["end_ts"]})
    return report


def summarize_costs(engine: Engine, first: dt.date, end: dt.date) -> int:
    """Recompute `project_daily_cost_summary` for [first, end) in one transaction; rows written."""
    with engine.begin() as conn:
        return _summarize_days(conn, first, end)


def _summarize_days(conn: Connection, first: dt.date, end: dt.date) -> int:
    bounds = _bounds(first, end)
    _lock_days(conn, "project_daily_cost_summary", first, end)
    conn.execute(
        text(
            f"DELETE FROM {S}.project_daily_cost_summary "
            "WHERE usage_date >= :first AND usage_date < :end"
        ),
        bounds,
    )
    return int(conn.execute(text(SUMMARY_SQL), bounds).rowcount)


# --------------------------------------------------------------------------- recompute

COST_DAYS_SQL = f"""
SELECT DISTINCT (bucket_start AT TIME ZONE 'UTC')::date AS day
FROM {S}.completions_usage_hourly
WHERE bucket_start >= :start AND bucket_start < :end_ts
UNION
SELECT usage_date FROM {S}.project_daily_costs WHERE usage_date >= :first AND usage_date < :end
UNION
SELECT usage_date FROM {S}.project_daily_cost_summary
WHERE usage_date >= :first AND usage_date < :end
ORDER BY day
"""


@dataclass(frozen=True)
class Recomputed:
    days: list[dt.date]
    cost_before_usd: Decimal
    cost_after_usd: Decimal


def _stored_cost(conn: Connection, day: dt.date) -> Decimal:
    return Decimal(
        conn.execute(
            text(f"SELECT coalesce(sum(cost_usd), 0) FROM {S}.project_daily_costs "
                 "WHERE usage_date = :day"),
            {"day": day},
        ).scalar_one()
    )  # fmt: skip


def recompute_costs(
    engine: Engine,
    first: dt.date = dt.date.min,
    end: dt.date = dt.date.max,
    inputs: PricingInputs | None = None,
) -> Recomputed:
    """Re-price every day in [first, end) that has usage or cost rows, with the current rules
    and the stored price snapshot: cost rows and the per-project summary, one transaction a day.

    For cost rows priced before a rule changed (migration 0004: cache writes were counted
    twice). A day's usage is not fetched again; a day's rows are replaced, never appended.
    """
    inputs = inputs or PricingInputs(None)
    overrides = load_overrides(inputs.override_file)  # a bad file fails before any write
    prices = [*genai_price_rows(), *overrides]
    bounds = _bounds(first, end)
    with engine.connect() as conn:
        days = list(conn.execute(text(COST_DAYS_SQL), bounds).scalars())
    before = after = Decimal(0)
    for day in days:
        with engine.begin() as conn:
            before += _stored_cost(conn, day)
            _price_days(conn, day, day + dt.timedelta(days=1), prices, overrides,
                        reprice=inputs.reprice)  # fmt: skip
            _summarize_days(conn, day, day + dt.timedelta(days=1))
            after += _stored_cost(conn, day)
    return Recomputed(days, before, after)


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
    top_projects: list[tuple[str | None, Decimal]]


def cost_totals(engine: Engine, first: dt.date, end: dt.date) -> CostTotals:
    bounds = _bounds(first, end)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                f"SELECT count(*), coalesce(sum(cost_usd), 0), "
                f"coalesce(sum(input_tokens + output_tokens) FILTER (WHERE cost_usd IS NULL), 0), "
                f"coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
                f"coalesce(sum(num_model_requests), 0), count(DISTINCT coalesce(project_id, '')) "
                f"FROM {S}.project_daily_costs "
                "WHERE usage_date >= :first AND usage_date < :end"
            ),
            bounds,
        ).one()
        top = conn.execute(
            text(
                "SELECT project_id, coalesce(sum(cost_usd), 0) AS cost "
                f"FROM {S}.project_daily_costs "
                "WHERE usage_date >= :first AND usage_date < :end "
                "GROUP BY project_id ORDER BY cost DESC NULLS LAST LIMIT 10"
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
        top_projects=[(project, Decimal(cost)) for project, cost in top],
    )


def raw_totals(engine: Engine, first: dt.date, end: dt.date) -> tuple[int, int, int]:
    bounds = _bounds(first, end)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
                f"coalesce(sum(num_model_requests), 0) FROM {S}.completions_usage_hourly "
                "WHERE bucket_start >= :start AND bucket_start < :end_ts"
            ),
            bounds,
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def kind_mismatches(engine: Engine, first: dt.date, end: dt.date) -> int:
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
                    "WHERE usage_date >= :first AND usage_date < :end "
                    f"AND ({inputs} <> input_tokens OR {outputs} <> output_tokens "
                    f"OR {CACHE_WRITE_TOTAL} <> {parts})"
                ),
                _bounds(first, end),
            ).scalar_one()
        )


def unpriced_usage(engine: Engine, first: dt.date, end: dt.date) -> list[tuple[Any, ...]]:
    """(model, service_tier, batch, reason, tokens) of usage with no price."""
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    f"SELECT model, service_tier, batch, unpriced_reason, "
                    f"sum(input_tokens + output_tokens)::bigint AS tokens "
                    f"FROM {S}.project_daily_costs WHERE cost_usd IS NULL "
                    "AND usage_date >= :first AND usage_date < :end "
                    "GROUP BY 1, 2, 3, 4 ORDER BY tokens DESC"
                ),
                _bounds(first, end),
            )
        ]


def negative_values(engine: Engine, first: dt.date, end: dt.date) -> int:
    columns = ["input_tokens", "output_tokens", "num_model_requests", "cost_usd", *TOKEN_KINDS,
               CACHE_WRITE_TOTAL]  # fmt: skip
    condition = " OR ".join(f"{c} < 0" for c in columns)
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    f"SELECT count(*) FROM {S}.project_daily_costs "
                    f"WHERE usage_date >= :first AND usage_date < :end AND ({condition})"
                ),
                _bounds(first, end),
            ).scalar_one()
        )


# --------------------------------------------------------------------------- reconciliation

KIND_ARGS_C = ", ".join(f"c.{kind}" for kind in TOKEN_KINDS)

RECONCILE_PROJECTS_SQL = f"""
WITH estimated AS (
    SELECT usage_date, project_id, sum(cost_usd) AS estimated_usd
    FROM {S}.project_daily_costs
    WHERE usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2
), billed AS (
    SELECT usage_date, project_id, sum(amount_usd) AS billed_usd
    FROM {S}.costs_daily
    WHERE usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2
)
SELECT coalesce(e.usage_date, b.usage_date), coalesce(e.project_id, b.project_id),
       coalesce(e.estimated_usd, 0), coalesce(b.billed_usd, 0)
FROM estimated e
FULL JOIN billed b ON b.usage_date = e.usage_date AND b.project_id IS NOT DISTINCT FROM e.project_id
"""

RECONCILE_LINE_ITEMS_SQL = f"""
WITH estimated AS (
    SELECT c.usage_date, c.project_id, c.model, k.line_item_kind, sum(k.cost_usd) AS usd
    FROM {S}.project_daily_costs c
    LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
    CROSS JOIN LATERAL {S}.estimate_cost_by_kind(mp, {KIND_ARGS_C}) k
    WHERE c.usage_date >= :first AND c.usage_date < :end
    GROUP BY 1, 2, 3, 4
), billed AS (
    SELECT usage_date, project_id, line_item_model AS model, line_item_kind,
           sum(amount_usd) AS usd
    FROM {S}.costs_daily
    WHERE usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2, 3, 4
)
SELECT coalesce(e.usage_date, b.usage_date), coalesce(e.project_id, b.project_id),
       coalesce(e.model, b.model), coalesce(e.line_item_kind, b.line_item_kind),
       coalesce(e.usd, 0), coalesce(b.usd, 0)
FROM estimated e
FULL JOIN billed b
       ON b.usage_date = e.usage_date AND b.project_id IS NOT DISTINCT FROM e.project_id
      AND b.model IS NOT DISTINCT FROM e.model AND b.line_item_kind = e.line_item_kind
WHERE coalesce(e.usd, 0) <> 0 OR coalesce(b.usd, 0) <> 0
"""


@dataclass(frozen=True)
class Gap:
    usage_date: dt.date
    project_id: str | None
    what: str
    estimated_usd: Decimal
    billed_usd: Decimal

    @property
    def difference_usd(self) -> Decimal:
        return self.estimated_usd - self.billed_usd

    def relative(self) -> Decimal:
        base = max(abs(self.billed_usd), abs(self.estimated_usd))
        return abs(self.difference_usd) / base if base else Decimal(0)


@dataclass(frozen=True)
class Reconciliation:
    projects: list[Gap]
    line_items: list[Gap]
    tolerance: Decimal

    @property
    def failing_projects(self) -> list[Gap]:
        return [gap for gap in self.projects if gap.relative() > self.tolerance]

    def worst(self, gaps: list[Gap], n: int = 10) -> list[Gap]:
        return sorted(gaps, key=lambda g: abs(g.difference_usd), reverse=True)[:n]


def reconcile(engine: Engine, first: dt.date, end: dt.date, tolerance: float) -> Reconciliation:
    """Estimated vs billed per project, and per model and line-item kind."""
    bounds = _bounds(first, end)
    with engine.connect() as conn:
        projects = [
            Gap(d, p, "all models", Decimal(e), Decimal(b))
            for d, p, e, b in conn.execute(text(RECONCILE_PROJECTS_SQL), bounds)
        ]
        line_items = [
            Gap(d, p, f"{model}, {kind}", Decimal(e), Decimal(b))
            for d, p, model, kind, e, b in conn.execute(text(RECONCILE_LINE_ITEMS_SQL), bounds)
        ]
    return Reconciliation(projects, line_items, Decimal(str(tolerance)))


def gaps_markdown(gaps: list[Gap]) -> str:
    if not gaps:
        return "_no gaps_"
    return md_table(
        ["day", "project", "line items", "estimated", "billed", "difference", "relative"],
        [
            (
                g.usage_date,
                g.project_id or "(default project)",
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
