"""The bill allocated over the usage behind it, exactly.

Each billed amount of a day, project and line item (and API key or user where the Costs API
grouping has them, see `costs_daily.group_by`) is shared out over the usage rows of the same
line-item family (`line_item_family()`) of that project and day, per API key, user, model and
usage kind, in proportion to the first of these that is positive for some candidate:

1. the estimated cost of the line item's token kind of the line item's model
   ("gpt-4o, cached input" -> the cached input cost of gpt-4o usage);
2. the estimated cost of the line item's model;
3. the estimated cost of the family's usage;
4. the usage quantity (usage that could not be priced still takes its share).

A billed amount with no candidate is kept as one row with an `unallocated_reason`. Shares are
whole micro-dollars by the largest-remainder rule, computed with exact numeric integer division,
so per day, project and line item the rows sum to the billed amount exactly; a bill with more
than six decimals gives its sub-micro-dollar rest to its largest share.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, Table, text

from usage_assets.errors import DoubledRowsError
from usage_assets.pricing.attribution import (
    KIND_COLUMNS,
    PRICING_WORK_MEM,
    days_between,
    delete_days,
    lock_days,
    period_bounds,
    priced_quantity_sql,
)
from usage_assets.pricing.prices import UNIT_KINDS
from usage_assets.warehouse.day_chunks import in_day_chunks
from usage_assets.warehouse.models import (
    ALLOCATION_GRAIN,
    DEFAULT_ORGANIZATION,
    SCHEMA,
    TOKEN_KINDS,
    CostAllocationDaily,
)
from usage_assets.warehouse.replace import first_repeated_key

S = SCHEMA
TABLE = "cost_allocation_daily"
#: Shares are whole units of this many USD (the largest-remainder rule's quantum).
MICRO_USD = Decimal("0.000001")
_ARGS = ", ".join(f"a.{kind}" for kind in TOKEN_KINDS)


def _same(column: str, left: str, right: str) -> str:
    """`left.column IS NOT DISTINCT FROM right.column` for a text column, written as an equality
    the planner can hash (IS NOT DISTINCT FROM only joins by nested loops or merge joins that
    rescan: quadratic in the day's rows). No id or name is the empty string."""
    return f"coalesce({left}.{column}, '') = coalesce({right}.{column}, '')"


#: Completions usage per day, project, key, user, model and token kind (`completions_usage_daily`,
#: rebuilt with the estimate this depends on), with the estimated cost of each kind at the price
#: its day's cost row used.
_COMPLETIONS_BASIS = f"""
SELECT a.organization, a.usage_date, a.project_id, a.api_key_id, a.user_id, a.model,
       'completions' AS usage_kind, k.line_item_kind, k.cost_usd AS estimated_usd,
       k.tokens AS quantity
FROM (
    SELECT organization, usage_date, project_id, api_key_id, user_id, model, batch,
           service_tier, {KIND_COLUMNS}
    FROM {S}.completions_usage_daily
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
) a
LEFT JOIN {S}.project_daily_costs c
       ON c.organization = a.organization AND c.usage_date = a.usage_date
      AND c.usage_date >= :first AND c.usage_date < :end
      AND {_same("project_id", "c", "a")} AND {_same("model", "c", "a")}
      AND coalesce(c.batch::int, -1) = coalesce(a.batch::int, -1)
      AND {_same("service_tier", "c", "a")}
LEFT JOIN {S}.model_prices mp ON mp.price_id = c.price_id
CROSS JOIN LATERAL {S}.estimate_by_kind(mp, {_ARGS}) k
"""


#: A `unit_usage_daily` row's quantity in its kind's priced unit (`priced_quantity_sql`).
_PRICED_QUANTITY = "CASE s.usage_kind {} ELSE s.quantity END".format(
    " ".join(
        f"WHEN '{name}' THEN {priced_quantity_sql(kind, 's.quantity')}"
        for name, kind in UNIT_KINDS.items()
    )
)

#: The other kinds' usage per day, project, key, user and model (`unit_usage_daily`, rebuilt
#: with the estimate this depends on), with its share of the estimated cost of its
#: `usage_daily_costs` row (cost is linear in quantity within a row, and a free allowance is
#: shared pro rata, so the quantity's share is the cost's share).
_UNIT_BASIS = f"""
SELECT s.organization, s.usage_date, s.project_id, s.api_key_id, s.user_id, s.model,
       s.usage_kind, NULL::text AS line_item_kind,
       u.cost_usd * s.priced_quantity / nullif(u.quantity, 0) AS estimated_usd,
       s.priced_quantity AS quantity
FROM (
    SELECT s.*, {_PRICED_QUANTITY} AS priced_quantity
    FROM {S}.unit_usage_daily s
    WHERE s.organization = :organization AND s.usage_date >= :first AND s.usage_date < :end
) s
LEFT JOIN {S}.usage_daily_costs u
       ON u.organization = s.organization AND u.usage_date = s.usage_date
      AND u.usage_date >= :first AND u.usage_date < :end
      AND {_same("project_id", "u", "s")} AND u.usage_kind = s.usage_kind
      AND {_same("model", "u", "s")} AND u.detail = s.detail
"""


BASIS_SQL = "\nUNION ALL\n".join([_COMPLETIONS_BASIS, _UNIT_BASIS])


def _matches(by_key: bool, by_user: bool, bills: str, narrower: str, where: str) -> str:
    """The usage rows of the `bills` of one grouping (by key, by user, both or neither), joined
    on `narrower` too (the same model, the same token kind), kept when `where`."""
    keys = (" AND r.key_key = b.key_key" if by_key else "") + (
        " AND r.user_key = b.user_key" if by_user else ""
    )
    return f"""    SELECT b.gid, r.*
    FROM {bills} b
    JOIN basis r
      ON r.organization = b.organization AND r.usage_date = b.usage_date
     AND r.project_key = b.project_key AND r.usage_kind = b.family{keys}{narrower}
    WHERE {"" if by_key else "NOT "}b.by_key AND {"" if by_user else "NOT "}b.by_user{where}"""


def _every_grouping(bills: str, narrower: str = "", where: str = "") -> str:
    """`_matches` for the four groupings, one equi-join each so that every one hashes."""
    return "\n    UNION ALL\n".join(
        _matches(by_key, by_user, bills, narrower, where)
        for by_key in (True, False)
        for by_user in (True, False)
    )


SAME_MODEL = " AND r.base_model = b.base_model"
SAME_KIND = " AND r.line_item_kind = b.line_item_kind"
POSITIVE = " AND r.estimated_usd > 0"


#: The `allocation_basis` of a share of level `s.level` (the module docstring's levels).
_BASIS_NAME = """CASE s.level WHEN 1 THEN 'estimated cost of the token kind'
                    WHEN 2 THEN 'estimated cost of the model'
                    WHEN 3 THEN 'estimated cost'
                    ELSE 'usage quantity' END"""

ALLOCATE_SQL = f"""
INSERT INTO {S}.{TABLE} (
    organization, usage_date, project_id, line_item, api_key_id, user_id, model, usage_kind,
    allocated_usd, currency, estimated_usd, quantity, quantity_unit, allocation_basis,
    unallocated_reason)
WITH usage_rows AS MATERIALIZED (
    {BASIS_SQL}
),
-- The day's bill, read once (the table keeps each row's whole API result too).
day_costs AS MATERIALIZED (
    SELECT organization, usage_date, project_id, line_item, api_key_id, user_id, line_item_model,
           line_item_kind, group_by, amount_usd, quantity, quantity_unit, currency
    FROM {S}.costs_daily
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
),
-- base_model() (a regular expression) once per model, not once per row of a day's usage and
-- bill (tens of thousands of rows, a few dozen models).
base_models AS MATERIALIZED (
    SELECT model, {S}.base_model(model) AS base_model
    FROM (SELECT model FROM usage_rows UNION SELECT line_item_model FROM day_costs) m
    WHERE model IS NOT NULL
),
basis AS MATERIALIZED (
    SELECT x.*, coalesce(x.project_id, '') AS project_key, coalesce(x.api_key_id, '') AS key_key,
           coalesce(x.user_id, '') AS user_key, m.base_model
    FROM usage_rows x LEFT JOIN base_models m ON m.model = x.model
),
-- The family of each line item and unit billed, once each (the function is the costly part of
-- a bill's row; a large organization's day has tens of thousands of rows, a few dozen items).
families_billed AS MATERIALIZED (
    SELECT line_item_key, unit_key,
           {S}.line_item_family(nullif(line_item_key, ''), nullif(unit_key, '')) AS family
    FROM (
        SELECT DISTINCT coalesce(line_item, '') AS line_item_key,
               coalesce(quantity_unit, '') AS unit_key
        FROM day_costs
    ) d
),
billed AS MATERIALIZED (
    SELECT row_number() OVER () AS gid, coalesce(g.project_id, '') AS project_key,
           coalesce(g.api_key_id, '') AS key_key, coalesce(g.user_id, '') AS user_key,
           m.base_model, g.*
    FROM (
        SELECT c.organization, c.usage_date, c.project_id, c.line_item, c.api_key_id, c.user_id,
               f.family, c.line_item_model, c.line_item_kind,
               'api_key_id' = ANY(coalesce(c.group_by, '{{}}')) AS by_key,
               'user_id' = ANY(coalesce(c.group_by, '{{}}')) AS by_user,
               sum(c.amount_usd) AS billed_usd, sum(c.quantity) AS billed_quantity,
               min(c.quantity_unit) AS quantity_unit, min(c.currency) AS currency
        FROM day_costs c
        JOIN families_billed f
          ON f.line_item_key = coalesce(c.line_item, '')
         AND f.unit_key = coalesce(c.quantity_unit, '')
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    ) g
    LEFT JOIN base_models m ON m.model = g.line_item_model
),
-- The usage rows a billed amount may go to: its project, day and family (and its key and
-- user when the bill was grouped by them). The levels of the module docstring, each asked only
-- for the bills the levels before it left without a candidate: a bill matches every row of
-- its family, but nearly every bill has a row of its model and token kind (level 1), and
-- pairing each bill with all of its family's rows first was quadratic in the day's bills.
level_1 AS MATERIALIZED (
{_every_grouping("billed", SAME_MODEL + SAME_KIND, POSITIVE)}
),
without_1 AS MATERIALIZED (
    SELECT * FROM billed b WHERE NOT EXISTS (SELECT 1 FROM level_1 x WHERE x.gid = b.gid)
),
level_2 AS MATERIALIZED (
{_every_grouping("without_1", SAME_MODEL, POSITIVE)}
),
without_2 AS MATERIALIZED (
    SELECT * FROM without_1 b WHERE NOT EXISTS (SELECT 1 FROM level_2 x WHERE x.gid = b.gid)
),
-- Levels 3 and 4; also which billed amounts had usage of their key or user at all.
matches AS MATERIALIZED (
{_every_grouping("without_2")}
),
candidates AS (
    SELECT gid, api_key_id, user_id, model, usage_kind, 1 AS level, estimated_usd AS weight,
           estimated_usd
    FROM level_1
    UNION ALL
    SELECT gid, api_key_id, user_id, model, usage_kind, 2, estimated_usd, estimated_usd
    FROM level_2
    UNION ALL
    SELECT r.gid, r.api_key_id, r.user_id, r.model, r.usage_kind, v.level, v.weight,
           r.estimated_usd
    FROM matches r
    CROSS JOIN LATERAL (VALUES (3, r.estimated_usd), (4, r.quantity)) v(level, weight)
    WHERE v.weight > 0
),
chosen AS (
    SELECT gid, min(level) AS level FROM candidates GROUP BY gid
),
-- For the reasons of what stays unallocated: which families each project used that day
-- (and `matches`: which billed amounts had usage of their key or user at all).
families AS (
    SELECT DISTINCT organization, usage_date, project_key, usage_kind FROM basis
),
shares AS MATERIALIZED (
    SELECT c.gid, c.api_key_id, c.user_id, c.model, c.usage_kind, ch.level,
           sum(c.weight) AS weight, sum(c.estimated_usd) AS estimated_usd
    FROM candidates c JOIN chosen ch ON ch.gid = c.gid AND ch.level = c.level
    GROUP BY 1, 2, 3, 4, 5, 6
),
-- Nearly every billed amount has one share (its model's token kind used by one key and user):
-- that share is the amount itself, which the rule below gives too. Only the others go through
-- the largest-remainder rule (its numeric division and two sorts were most of a day's time).
shared AS MATERIALIZED (
    SELECT gid FROM shares GROUP BY gid HAVING count(*) > 1
),
quotas AS (
    SELECT s.*, b.billed_usd, b.billed_quantity,
           abs(b.billed_usd) * 1000000 * s.weight AS scaled,
           sum(s.weight) OVER (PARTITION BY s.gid) AS total_weight
    FROM shares s JOIN billed b ON b.gid = s.gid
    WHERE s.gid IN (SELECT gid FROM shared)
),
ranked AS (
    SELECT q.*,
           div(q.scaled, q.total_weight) AS units,
           row_number() OVER (
               PARTITION BY q.gid
               ORDER BY mod(q.scaled, q.total_weight) DESC, q.weight DESC,
                        q.api_key_id NULLS FIRST, q.user_id NULLS FIRST, q.model NULLS FIRST
           ) AS remainder_rank,
           row_number() OVER (
               PARTITION BY q.gid
               ORDER BY q.weight DESC, q.api_key_id NULLS FIRST, q.user_id NULLS FIRST,
                        q.model NULLS FIRST
           ) AS size_rank
    FROM quotas q
),
settled AS (
    SELECT r.*,
           floor(abs(r.billed_usd) * 1000000) - sum(r.units) OVER (PARTITION BY r.gid)
               AS spare_units,
           abs(r.billed_usd) - floor(abs(r.billed_usd) * 1000000) / 1000000 AS rest
    FROM ranked r
)
SELECT b.organization, b.usage_date, b.project_id, b.line_item, s.api_key_id, s.user_id, s.model,
       s.usage_kind,
       sign(b.billed_usd) * (
           (s.units + CASE WHEN s.remainder_rank <= s.spare_units THEN 1 ELSE 0 END) / 1000000
           + CASE WHEN s.size_rank = 1 THEN s.rest ELSE 0 END),
       coalesce(b.currency, 'usd'),
       s.estimated_usd,
       b.billed_quantity * s.weight / s.total_weight,
       b.quantity_unit,
       {_BASIS_NAME},
       NULL
FROM settled s JOIN billed b ON b.gid = s.gid
UNION ALL
SELECT b.organization, b.usage_date, b.project_id, b.line_item, s.api_key_id, s.user_id, s.model,
       s.usage_kind, b.billed_usd, coalesce(b.currency, 'usd'), s.estimated_usd,
       b.billed_quantity, b.quantity_unit, {_BASIS_NAME}, NULL
FROM shares s JOIN billed b ON b.gid = s.gid
WHERE NOT EXISTS (SELECT 1 FROM shared x WHERE x.gid = s.gid)
UNION ALL
SELECT b.organization, b.usage_date, b.project_id, b.line_item,
       CASE WHEN b.by_key THEN b.api_key_id END, CASE WHEN b.by_user THEN b.user_id END,
       CASE WHEN b.family <> 'other' AND b.line_item_model NOT LIKE '%,%'
            THEN b.line_item_model END,
       b.family, b.billed_usd, coalesce(b.currency, 'usd'), NULL, b.billed_quantity,
       b.quantity_unit, NULL,
       CASE
           WHEN b.family = 'other' THEN 'the line item names no usage kind'
           WHEN f.usage_kind IS NULL THEN 'no ' || b.family || ' usage of the project on the day'
           WHEN (b.by_key OR b.by_user) AND NOT EXISTS (
               SELECT 1 FROM matches m WHERE m.gid = b.gid)
               THEN 'no ' || b.family || ' usage of the billed API key or user on the day'
           ELSE 'the ' || b.family || ' usage behind it has no estimated cost and no quantity'
       END
FROM billed b
LEFT JOIN families f
       ON f.organization = b.organization AND f.usage_date = b.usage_date
      AND f.project_key = b.project_key AND f.usage_kind = b.family
WHERE NOT EXISTS (SELECT 1 FROM chosen c WHERE c.gid = b.gid)
"""


def refuse_repeated_grain(conn: Connection, bounds: dict[str, Any]) -> None:
    """Raise DoubledRowsError, naming the grain, if the days of `bounds` hold two rows of one
    grain (the table has no unique index on it, see `ALLOCATION_GRAIN`); before the commit, so
    the days stored before stay."""
    table = CostAllocationDaily.__table__
    assert isinstance(table, Table)
    repeated = first_repeated_key(
        conn,
        table,
        ALLOCATION_GRAIN,
        [
            table.c.organization == bounds["organization"],
            table.c.usage_date >= bounds["first"],
            table.c.usage_date < bounds["end"],
        ],
    )
    if repeated is not None:
        *grain, count = repeated
        named = ", ".join(f"{n}={v!r}" for n, v in zip(ALLOCATION_GRAIN, grain, strict=True))
        raise DoubledRowsError(
            f"The allocation wrote {count} rows of one grain of {TABLE} ({named}); the days "
            "of this transaction were not committed (their stored rows stay)."
        )


def allocate_costs(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> int:
    """Recompute `organization`'s `cost_allocation_daily` for [first, end) under the table's
    per-day locks, in chunks of days on USAGE_COST_WORKERS connections at once, each chunk in one
    transaction (`in_day_chunks`); returns the rows written."""
    return sum(
        in_day_chunks(
            engine, first, end, lambda conn, a, b: _allocate_days(conn, a, b, organization)
        )
    )


def _allocate_days(conn: Connection, first: dt.date, end: dt.date, organization: str) -> int:
    bounds = period_bounds(first, end, organization)
    lock_days(conn, TABLE, first, end, organization)
    # The CTEs carry no statistics (the costs and usage were often written seconds ago, before
    # any ANALYZE): estimated at one row each, the planner would rerun whole subtrees per bill
    # in nested loops, quadratic in the day's bills. Hash joins are linear whatever the counts.
    conn.execute(text("SET LOCAL enable_nestloop = off"))
    conn.execute(text("SET LOCAL enable_mergejoin = off"))
    conn.execute(text(f"SET LOCAL work_mem = '{PRICING_WORK_MEM}'"))
    delete_days(conn, (TABLE,), bounds)
    # One statement per day (a bill only ever goes to its own day's usage): a month in one
    # statement took 63 s for 30 large days, a day at a time 49 s (smaller hash tables and
    # CTEs that stay in memory).
    # No unique index on the grain (`ALLOCATION_GRAIN`): each day's rows are checked once
    # written, in the same transaction.
    written = 0
    for day in days_between(first, end):
        day_bounds = period_bounds(day, day + dt.timedelta(days=1), organization)
        written += conn.execute(text(ALLOCATE_SQL), day_bounds).rowcount
        refuse_repeated_grain(conn, day_bounds)
    return written


# --------------------------------------------------------------------------- what it proves


@dataclass(frozen=True)
class AllocationGap:
    """A day, project and line item whose allocated rows do not sum to the billed amount."""

    usage_date: dt.date
    project_id: str | None
    line_item: str | None
    billed_usd: Decimal
    allocated_usd: Decimal
    #: The project's name (`projects`), shown beside the id; None while unknown.
    project_name: str | None = None


GAPS_SQL = f"""
WITH billed AS (
    SELECT usage_date, project_id, line_item, sum(amount_usd) AS usd
    FROM {S}.costs_daily
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2, 3
), allocated AS (
    SELECT usage_date, project_id, line_item, sum(allocated_usd) AS usd
    FROM {S}.{TABLE}
    WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
    GROUP BY 1, 2, 3
)
SELECT coalesce(b.usage_date, a.usage_date), coalesce(b.project_id, a.project_id),
       coalesce(b.line_item, a.line_item), coalesce(b.usd, 0), coalesce(a.usd, 0), p.name
FROM billed b
FULL JOIN allocated a
       ON a.usage_date = b.usage_date AND a.project_id IS NOT DISTINCT FROM b.project_id
      AND a.line_item IS NOT DISTINCT FROM b.line_item
LEFT JOIN {S}.projects p
       ON p.organization = :organization AND p.id = coalesce(b.project_id, a.project_id)
WHERE coalesce(b.usd, 0) <> coalesce(a.usd, 0)
ORDER BY 1, 2 NULLS FIRST, 3 NULLS FIRST
"""


def allocation_gaps(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> list[AllocationGap]:
    """Every day, project and line item of [first, end) whose allocation is not exactly its
    bill (numeric equality, no tolerance); empty when the allocation adds up."""
    with engine.connect() as conn:
        rows = conn.execute(text(GAPS_SQL), period_bounds(first, end, organization))
        return [AllocationGap(*row) for row in rows]


@dataclass(frozen=True)
class AllocationTotals:
    """One range of days' allocation, for metadata."""

    rows: int
    billed_usd: Decimal
    allocated_usd: Decimal
    unallocated_usd: Decimal
    unallocated_rows: int
    #: Unallocated USD per reason.
    unallocated_by_reason: list[tuple[str, Decimal]]
    #: Allocated USD per allocation basis ("estimated cost of the token kind", ...).
    by_basis: list[tuple[str, Decimal]]
    #: Allocated USD per project (top 10), and per API key (top 10): (id, its name from
    #: `projects` / `api_keys` or None, USD).
    top_projects: list[tuple[str | None, str | None, Decimal]]
    top_api_keys: list[tuple[str | None, str | None, Decimal]]


TOTALS_SQL = f"""
SELECT count(*), coalesce(sum(allocated_usd), 0),
       coalesce(sum(allocated_usd) FILTER (WHERE unallocated_reason IS NOT NULL), 0),
       count(*) FILTER (WHERE unallocated_reason IS NOT NULL)
FROM {S}.{TABLE}
WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
"""
BILLED_SQL = f"""
SELECT coalesce(sum(amount_usd), 0) FROM {S}.costs_daily
WHERE organization = :organization AND usage_date >= :first AND usage_date < :end
"""


def _grouped(
    conn: Connection, column: str, bounds: dict[str, Any], where: str = ""
) -> list[tuple[Any, Decimal]]:
    """Allocated USD per value of `column`, largest first (ten)."""
    return [
        tuple(row)
        for row in conn.execute(
            text(
                f"SELECT {column}, sum(allocated_usd) AS usd FROM {S}.{TABLE} "
                "WHERE organization = :organization AND usage_date >= :first "
                f"AND usage_date < :end {where} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
            ),
            bounds,
        )
    ]


def _top_named(
    conn: Connection, column: str, names: str, bounds: dict[str, Any]
) -> list[tuple[Any, str | None, Decimal]]:
    """Allocated USD per value of the id `column`, largest first (ten), with its name from the
    names table `names` (keyed by organization and id)."""
    return [
        tuple(row)
        for row in conn.execute(
            text(
                f"SELECT a.{column}, n.name, sum(a.allocated_usd) AS usd FROM {S}.{TABLE} a "
                f"LEFT JOIN {S}.{names} n ON n.organization = a.organization "
                f"AND n.id = a.{column} "
                "WHERE a.organization = :organization AND a.usage_date >= :first "
                "AND a.usage_date < :end GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 10"
            ),
            bounds,
        )
    ]


def allocation_totals(
    engine: Engine, first: dt.date, end: dt.date, *, organization: str = DEFAULT_ORGANIZATION
) -> AllocationTotals:
    bounds = period_bounds(first, end, organization)
    with engine.connect() as conn:
        rows, allocated, unallocated, unallocated_rows = conn.execute(
            text(TOTALS_SQL), bounds
        ).one()
        billed = conn.execute(text(BILLED_SQL), bounds).scalar_one()
        return AllocationTotals(
            rows=rows,
            billed_usd=billed,
            allocated_usd=allocated,
            unallocated_usd=unallocated,
            unallocated_rows=unallocated_rows,
            unallocated_by_reason=_grouped(
                conn, "unallocated_reason", bounds, "AND unallocated_reason IS NOT NULL"
            ),
            by_basis=_grouped(conn, "allocation_basis", bounds, "AND allocation_basis IS NOT NULL"),
            top_projects=_top_named(conn, "project_id", "projects", bounds),
            top_api_keys=_top_named(conn, "api_key_id", "api_keys", bounds),
        )
