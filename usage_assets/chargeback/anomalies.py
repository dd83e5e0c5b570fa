"""Spend anomalies: a project's day whose billed spend departs from its own recent baseline.

The rule, in one place (the check, the README and the tests refer to it):

- spend of (organization, project, day) = sum of `cost_allocation_daily.allocated_usd` (the bill
  allocated, so it adds up to the invoice);
- the baseline of day D: the `baseline_days` days before D on which the organization has
  allocation rows (a day it has none was not loaded, and is left out); on such a day a project
  without rows spent 0, so a project that suddenly stops is a drop;
- median and MAD (median absolute deviation from the median) of the baseline, with
  `percentile_cont(0.5)`; robust score = (spend - median) / scale, where
  scale = greatest(1.4826 x MAD, 10% of |median|, min_usd, $0.000001): 1.4826 x MAD estimates a
  standard deviation for normal noise, and the floors keep a flat history (MAD = 0) from
  turning a cent into an infinite score; the 10% floor also keeps a tight week of baseline
  (MAD of a few days is often far below the spend's real day-to-day noise) from flagging a
  normal 20% move;
- flagged when |score| > sensitivity, |spend - median| >= min_usd, and the baseline has at least
  `min_baseline_days` days; a 'spike' above the median, a 'drop' below it;
- drivers: per flagged project-day, the API keys and (separately) the models whose spend moved
  most in the anomaly's direction against their own median over the same baseline days.

Only the given organization's rows count: another organization's projects, days and keys never
enter a baseline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from sqlalchemy import Engine, text

from usage_assets.warehouse.models import DEFAULT_ORGANIZATION, SCHEMA

S = SCHEMA
#: 1.4826 x MAD estimates the standard deviation of normally distributed noise.
MAD_TO_SIGMA = Decimal("1.4826")
#: The scale is at least this share of the baseline median (a flat history has MAD 0).
RELATIVE_FLOOR = Decimal("0.10")
#: ... and never below a micro-dollar (the allocation's quantum), so there is no 0 to divide by.
ABSOLUTE_FLOOR_USD = Decimal("0.000001")

DEFAULT_SENSITIVITY = 3.5
DEFAULT_BASELINE_DAYS = 28
DEFAULT_MIN_USD = Decimal("1.00")
DEFAULT_MIN_BASELINE_DAYS = 7
DEFAULT_DRIVER_COUNT = 3

Direction = Literal["spike", "drop"]


@dataclass(frozen=True)
class AnomalyRule:
    """The rule's parameters (sensitivity, baseline window, minimum change in USD)."""

    sensitivity: float = DEFAULT_SENSITIVITY
    baseline_days: int = DEFAULT_BASELINE_DAYS
    min_usd: Decimal = DEFAULT_MIN_USD
    min_baseline_days: int = DEFAULT_MIN_BASELINE_DAYS
    driver_count: int = DEFAULT_DRIVER_COUNT

    def __post_init__(self) -> None:
        if not self.sensitivity > 0:
            raise ValueError(f"sensitivity must be > 0, not {self.sensitivity}")
        if self.baseline_days < 1 or self.min_baseline_days < 1:
            raise ValueError("baseline_days and min_baseline_days must be at least 1")
        if self.min_usd < 0:
            raise ValueError(f"min_usd must be >= 0, not {self.min_usd}")

    @property
    def required_days(self) -> int:
        """Baseline days needed to score a day (never more than the window holds)."""
        return min(self.min_baseline_days, self.baseline_days)

    def describe(self) -> str:
        return (
            f"|spend - median| / max(1.4826 x MAD, {RELATIVE_FLOOR:.0%} of median, "
            f"${self.min_usd}) > {self.sensitivity:g}, |spend - median| >= ${self.min_usd}, "
            f"median and MAD over the {self.baseline_days} days before (days the organization "
            f"has allocation rows; a project without rows spent 0), at least "
            f"{self.required_days} of them"
        )


@dataclass(frozen=True)
class Driver:
    """An API key or a model of a flagged project-day, and how its spend moved."""

    kind: Literal["api_key", "model"]
    id: str | None  # the key id or the model; None: no key / no model
    name: str | None  # the key's name (api_keys.name); a model's name is its id
    spend_usd: Decimal
    baseline_usd: Decimal  # its own median over the baseline days
    change_usd: Decimal

    @property
    def label(self) -> str:
        if self.id is None:
            return "(no key)" if self.kind == "api_key" else "(no model)"
        if self.kind == "api_key" and self.name:
            return f"{self.name} ({self.id})"
        return self.id


@dataclass(frozen=True)
class SpendAnomaly:
    organization: str
    usage_date: dt.date
    project_id: str | None  # None: the default project
    project_name: str | None
    spend_usd: Decimal
    median_usd: Decimal
    mad_usd: Decimal
    scale_usd: Decimal
    score: float
    baseline_days: int
    direction: Direction
    api_keys: tuple[Driver, ...] = ()
    models: tuple[Driver, ...] = ()

    @property
    def change_usd(self) -> Decimal:
        return self.spend_usd - self.median_usd

    @property
    def project_label(self) -> str:
        if self.project_id is None:
            return "(default project)"
        return self.project_name or self.project_id


@dataclass(frozen=True)
class AnomalyScan:
    """The days [first, end) of one organization scored against their baselines."""

    organization: str
    first: dt.date
    end: dt.date
    rule: AnomalyRule
    anomalies: tuple[SpendAnomaly, ...]
    #: Project-days with enough baseline to be scored.
    scored: int
    #: Days of the range the organization has allocation rows on.
    loaded_days: int
    #: Of those, days whose baseline was too short to score.
    short_baseline_days: int

    @property
    def spikes(self) -> tuple[SpendAnomaly, ...]:
        return tuple(a for a in self.anomalies if a.direction == "spike")

    @property
    def drops(self) -> tuple[SpendAnomaly, ...]:
        return tuple(a for a in self.anomalies if a.direction == "drop")


# Every loaded day (the organization has rows) x every project seen in the window, 0 where
# the project has none; each day of [first, end) against the loaded days before it.
SCORE_SQL = f"""
WITH spend AS (
    SELECT usage_date, project_id, sum(allocated_usd) AS usd
    FROM {S}.cost_allocation_daily
    WHERE organization = :organization
      AND usage_date >= :window_first AND usage_date < :end
    GROUP BY usage_date, project_id
),
loaded AS (SELECT DISTINCT usage_date FROM spend),
projects AS (SELECT DISTINCT project_id FROM spend),
daily AS (
    SELECT l.usage_date, p.project_id, coalesce(s.usd, 0) AS usd
    FROM loaded l
    CROSS JOIN projects p
    LEFT JOIN spend s
      ON s.usage_date = l.usage_date AND s.project_id IS NOT DISTINCT FROM p.project_id
),
history AS (
    SELECT t.usage_date, t.project_id, t.usd, b.usd AS past_usd
    FROM daily t
    JOIN daily b
      ON b.project_id IS NOT DISTINCT FROM t.project_id
     AND b.usage_date >= t.usage_date - CAST(:baseline_days AS integer)
     AND b.usage_date < t.usage_date
    WHERE t.usage_date >= :first
),
medians AS (
    SELECT usage_date, project_id, usd, count(*) AS baseline_days,
           CAST(percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(past_usd AS float8))
                AS numeric) AS median
    FROM history
    GROUP BY usage_date, project_id, usd
),
deviations AS (
    SELECT m.usage_date, m.project_id, m.usd, m.baseline_days, m.median,
           CAST(percentile_cont(0.5) WITHIN GROUP (
               ORDER BY CAST(abs(h.past_usd - m.median) AS float8)) AS numeric) AS mad
    FROM medians m
    JOIN history h
      ON h.usage_date = m.usage_date AND h.project_id IS NOT DISTINCT FROM m.project_id
    GROUP BY m.usage_date, m.project_id, m.usd, m.baseline_days, m.median
),
scored AS (
    SELECT d.*,
           greatest(CAST(:mad_to_sigma AS numeric) * d.mad,
                    CAST(:relative_floor AS numeric) * abs(d.median),
                    CAST(:min_usd AS numeric), CAST(:absolute_floor AS numeric)) AS scale
    FROM deviations d
)
SELECT s.usage_date, s.project_id, p.name AS project_name, s.usd, s.median, s.mad, s.scale,
       CAST((s.usd - s.median) / s.scale AS float8) AS score, s.baseline_days,
       (s.baseline_days >= :required_days
        AND abs(s.usd - s.median) >= CAST(:min_usd AS numeric)
        AND abs((s.usd - s.median) / s.scale) > :sensitivity) AS flagged
FROM scored s
LEFT JOIN {S}.projects p ON p.organization = :organization AND p.id = s.project_id
ORDER BY s.usage_date, s.project_id NULLS FIRST
"""

# Days of [first, end) the organization has rows on, and how many loaded days precede each in
# its window (a day with too few is not scored).
LOADED_SQL = f"""
WITH loaded AS (
    SELECT DISTINCT usage_date FROM {S}.cost_allocation_daily
    WHERE organization = :organization
      AND usage_date >= :window_first AND usage_date < :end
)
SELECT t.usage_date,
       (SELECT count(*) FROM loaded b
        WHERE b.usage_date >= t.usage_date - CAST(:baseline_days AS integer)
          AND b.usage_date < t.usage_date) AS baseline_days
FROM loaded t
WHERE t.usage_date >= :first
"""

# The members (API keys, or models) of each flagged project-day against their own medians over
# the same loaded days; kept when they moved in the anomaly's direction, the largest first.
DRIVERS_SQL = """
WITH flagged AS (
    SELECT * FROM unnest(CAST(:days AS date[]), CAST(:projects AS text[]),
                         CAST(:directions AS integer[]))
        AS f(usage_date, project_id, direction)
),
loaded AS (
    SELECT DISTINCT usage_date FROM {S}.cost_allocation_daily
    WHERE organization = :organization
      AND usage_date >= :window_first AND usage_date < :end
),
member_spend AS (
    SELECT f.usage_date AS flagged_date, f.project_id, c.usage_date, c.{member} AS member,
           sum(c.allocated_usd) AS usd
    FROM flagged f
    JOIN {S}.cost_allocation_daily c
      ON c.organization = :organization
     AND c.project_id IS NOT DISTINCT FROM f.project_id
     AND c.usage_date >= f.usage_date - CAST(:baseline_days AS integer)
     AND c.usage_date <= f.usage_date
    GROUP BY f.usage_date, f.project_id, c.usage_date, c.{member}
),
members AS (SELECT DISTINCT flagged_date, project_id, member FROM member_spend),
history AS (
    SELECT m.flagged_date, m.project_id, m.member, coalesce(s.usd, 0) AS usd
    FROM members m
    JOIN loaded l
      ON l.usage_date >= m.flagged_date - CAST(:baseline_days AS integer)
     AND l.usage_date < m.flagged_date
    LEFT JOIN member_spend s
      ON s.flagged_date = m.flagged_date AND s.usage_date = l.usage_date
     AND s.project_id IS NOT DISTINCT FROM m.project_id
     AND s.member IS NOT DISTINCT FROM m.member
),
baseline AS (
    SELECT flagged_date, project_id, member,
           CAST(percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(usd AS float8)) AS numeric)
               AS median
    FROM history
    GROUP BY flagged_date, project_id, member
),
changes AS (
    SELECT m.flagged_date, m.project_id, m.member, f.direction,
           coalesce(t.usd, 0) AS usd, coalesce(b.median, 0) AS median,
           coalesce(t.usd, 0) - coalesce(b.median, 0) AS change
    FROM members m
    JOIN flagged f
      ON f.usage_date = m.flagged_date AND f.project_id IS NOT DISTINCT FROM m.project_id
    LEFT JOIN member_spend t
      ON t.flagged_date = m.flagged_date AND t.usage_date = m.flagged_date
     AND t.project_id IS NOT DISTINCT FROM m.project_id
     AND t.member IS NOT DISTINCT FROM m.member
    LEFT JOIN baseline b
      ON b.flagged_date = m.flagged_date
     AND b.project_id IS NOT DISTINCT FROM m.project_id
     AND b.member IS NOT DISTINCT FROM m.member
),
ranked AS (
    SELECT c.*, row_number() OVER (
        PARTITION BY c.flagged_date, c.project_id
        ORDER BY c.change * c.direction DESC, c.member NULLS LAST) AS rank
    FROM changes c
    WHERE c.change * c.direction > 0
)
SELECT r.flagged_date, r.project_id, r.member, {name} AS name, r.usd, r.median, r.change
FROM ranked r
{name_join}
WHERE r.rank <= :driver_count
ORDER BY r.flagged_date, r.project_id NULLS FIRST, r.rank
"""

_DRIVER_QUERIES = {
    "api_key": DRIVERS_SQL.format(
        S=S,
        member="api_key_id",
        name="k.name",
        name_join=(
            f"LEFT JOIN {S}.api_keys k ON k.organization = :organization AND k.id = r.member"
        ),
    ),
    "model": DRIVERS_SQL.format(S=S, member="model", name="r.member", name_join=""),
}

_DriverKey = tuple[dt.date, str | None]


def find_anomalies(
    engine: Engine,
    first: dt.date,
    end: dt.date,
    rule: AnomalyRule | None = None,
    *,
    organization: str = DEFAULT_ORGANIZATION,
) -> AnomalyScan:
    """Score every project-day of [first, end) of `organization` against its baseline and
    return the flagged ones with their driving keys and models (the module docstring's rule)."""
    rule = rule or AnomalyRule()
    params = {
        "organization": organization,
        "first": first,
        "end": end,
        "window_first": first - dt.timedelta(days=rule.baseline_days),
        "baseline_days": rule.baseline_days,
        "required_days": rule.required_days,
        "sensitivity": rule.sensitivity,
        "min_usd": str(rule.min_usd),
        "mad_to_sigma": str(MAD_TO_SIGMA),
        "relative_floor": str(RELATIVE_FLOOR),
        "absolute_floor": str(ABSOLUTE_FLOOR_USD),
    }
    with engine.connect() as conn:
        rows = conn.execute(text(SCORE_SQL), params).all()
        loaded = conn.execute(text(LOADED_SQL), params).all()
        flagged = [r for r in rows if r.flagged]
        drivers: dict[str, dict[_DriverKey, list[Driver]]] = {}
        if flagged:
            driver_params = {
                **params,
                "days": [r.usage_date for r in flagged],
                "projects": [r.project_id for r in flagged],
                "directions": [1 if r.usd > r.median else -1 for r in flagged],
                "driver_count": rule.driver_count,
            }
            for kind, sql in _DRIVER_QUERIES.items():
                found: dict[_DriverKey, list[Driver]] = {}
                for d in conn.execute(text(sql), driver_params):
                    found.setdefault((d.flagged_date, d.project_id), []).append(
                        Driver(
                            kind,  # type: ignore[arg-type]
                            d.member,
                            d.name,
                            Decimal(d.usd),
                            Decimal(d.median),
                            Decimal(d.change),
                        )
                    )
                drivers[kind] = found
    anomalies = tuple(
        SpendAnomaly(
            organization=organization,
            usage_date=r.usage_date,
            project_id=r.project_id,
            project_name=r.project_name,
            spend_usd=Decimal(r.usd),
            median_usd=Decimal(r.median),
            mad_usd=Decimal(r.mad),
            scale_usd=Decimal(r.scale),
            score=float(r.score),
            baseline_days=int(r.baseline_days),
            direction="spike" if r.usd > r.median else "drop",
            api_keys=tuple(drivers["api_key"].get((r.usage_date, r.project_id), ())),
            models=tuple(drivers["model"].get((r.usage_date, r.project_id), ())),
        )
        for r in flagged
    )
    return AnomalyScan(
        organization=organization,
        first=first,
        end=end,
        rule=rule,
        anomalies=anomalies,
        scored=sum(1 for r in rows if r.baseline_days >= rule.required_days),
        loaded_days=len(loaded),
        short_baseline_days=sum(1 for r in loaded if r.baseline_days < rule.required_days),
    )


def latest_allocated_day(
    engine: Engine, organization: str = DEFAULT_ORGANIZATION
) -> dt.date | None:
    """The last day `organization` has allocation rows on (None: none yet)."""
    with engine.connect() as conn:
        day: dt.date | None = conn.execute(
            text(
                f"SELECT max(usage_date) FROM {S}.cost_allocation_daily "
                "WHERE organization = :organization"
            ),
            {"organization": organization},
        ).scalar_one()
    return day
