"""Monthly partitions of the hourly usage tables, the slim `result` and the duplicate-group
guard that replaced the unique index (migration 0018, `warehouse.partitions`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from usage_assets.admin_api.rows import DaySummary
from usage_assets.admin_api.usage import UsageBucket
from usage_assets.errors import PayloadError
from usage_assets.warehouse import usage_days
from usage_assets.warehouse.database import alembic_config, engine_for, migrate
from usage_assets.warehouse.models import DIMENSIONS, USAGE_TABLES
from usage_assets.warehouse.partitions import (
    ensure_month_partitions,
    months_of,
    partition_name,
    refresh_statistics,
)
from usage_assets.warehouse.usage_days import LoadInfo, replace_day

from .conftest import create_database, drop_database
from .results import as_served
from .test_normalize import sample_result

TABLE = USAGE_TABLES["completions"]
UTC = dt.UTC
INFO = LoadInfo(group_by=DIMENSIONS, simulated=True, source_url="t", dagster_run_id=None)


def bucket(day: dt.date, hour: int, *results: dict[str, Any]) -> UsageBucket:
    start = int(dt.datetime.combine(day, dt.time(hour), UTC).timestamp())
    return UsageBucket(start, start + 3600, list(results))


def write(engine: Engine, day: dt.date, *buckets: UsageBucket) -> int:
    summary = DaySummary(day)
    return replace_day(engine, summary, summary.rows(buckets), INFO)


def partitions(engine: Engine) -> dict[str, str]:
    """Each partition of completions_usage_hourly and its bounds."""
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                    "JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'openai_usage.completions_usage_hourly'::regclass"
                )
            ).all()
        )


def rows_by_partition(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT tableoid::regclass::text, count(*) "
                    "FROM openai_usage.completions_usage_hourly GROUP BY 1"
                )
            ).all()
        )


def test_months_of_a_range_and_the_month_ahead() -> None:
    assert list(months_of(dt.date(2025, 12, 30), dt.date(2026, 1, 2))) == [
        dt.date(2025, 12, 1), dt.date(2026, 1, 1), dt.date(2026, 2, 1),
    ]  # fmt: skip
    # end is exclusive: a range ending on the 1st does not reach into that month
    assert list(months_of(dt.date(2025, 11, 30), dt.date(2025, 12, 1))) == [
        dt.date(2025, 11, 1), dt.date(2025, 12, 1),
    ]  # fmt: skip


def test_a_day_lands_in_its_month_partition_created_ahead(engine: Engine) -> None:
    day = dt.date(2023, 3, 31)  # a month no migration made
    assert partition_name(TABLE.name, dt.date(2023, 3, 1)) not in partitions(engine)
    assert write(engine, day, bucket(day, 23, sample_result())) == 1
    made = partitions(engine)
    assert made["completions_usage_hourly_2023_03"] == (
        "FOR VALUES FROM ('2023-03-01 00:00:00+00') TO ('2023-04-01 00:00:00+00')"
    )
    assert "completions_usage_hourly_2023_04" in made  # the month ahead, before it is needed
    assert made["completions_usage_hourly_default"] == "DEFAULT"
    assert rows_by_partition(engine) == {"openai_usage.completions_usage_hourly_2023_03": 1}
    # the partition has the parent's indexes, and nothing new is made a second time
    with engine.connect() as conn:
        indexes = conn.execute(
            text(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = 'openai_usage' "
                "AND tablename = 'completions_usage_hourly_2023_03'"
            )
        ).scalar_one()
    assert indexes == 2
    assert ensure_month_partitions(engine, TABLE, day, day + dt.timedelta(days=1)) == []


def test_rows_written_outside_the_app_move_to_their_new_partition(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO openai_usage.completions_usage_hourly (bucket_start, bucket_end, "
                "project_id, input_tokens, output_tokens, num_model_requests) VALUES "
                "('2022-07-04 10:00+00', '2022-07-04 11:00+00', 'proj_psql', 1, 2, 3), "
                "('2022-08-01 00:00+00', '2022-08-01 01:00+00', 'proj_psql', 1, 2, 3)"
            )
        )
    assert rows_by_partition(engine) == {"openai_usage.completions_usage_hourly_default": 2}
    created = ensure_month_partitions(engine, TABLE, dt.date(2022, 7, 4), dt.date(2022, 7, 5))
    assert created == ["completions_usage_hourly_2022_07", "completions_usage_hourly_2022_08"]
    assert rows_by_partition(engine) == {
        "openai_usage.completions_usage_hourly_2022_07": 1,
        "openai_usage.completions_usage_hourly_2022_08": 1,
    }


def test_a_day_is_replaced_within_its_partition(engine: Engine) -> None:
    day, other = dt.date(2025, 6, 2), dt.date(2025, 6, 3)
    write(engine, other, bucket(other, 0, sample_result()))
    first = [bucket(day, h, sample_result(input_tokens=h + 1)) for h in range(3)]
    assert write(engine, day, *first) == 3
    assert write(engine, day, bucket(day, 5, sample_result(), sample_result(user_id=None))) == 2
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT bucket_start, user_id FROM openai_usage.completions_usage_hourly "
                "ORDER BY 1, 2"
            )
        ).all()
    at = dt.datetime.combine
    assert stored == [
        (at(day, dt.time(5), UTC), "user-abc"),
        (at(day, dt.time(5), UTC), None),
        (at(other, dt.time(0), UTC), "user-abc"),
    ]


@pytest.mark.parametrize("user", [None, "user-abc"])
def test_a_group_listed_twice_in_one_hour_is_refused(engine: Engine, user: str | None) -> None:
    """NULL dimensions are equal here, as the unique index's NULLS NOT DISTINCT made them."""
    day = dt.date(2025, 6, 2)
    write(engine, day, bucket(day, 1, sample_result()))
    twice = sample_result(user_id=user)
    parts = [bucket(day, 4, twice, sample_result(user_id="other")), bucket(day, 4, twice)]
    with pytest.raises(PayloadError) as failure:
        write(engine, day, bucket(day, 3, sample_result()), *parts)  # across two page parts
    message = str(failure.value)
    assert "listed one group twice in the same bucket of 2025-06-02" in message
    assert "2025-06-02 04:00:00+00:00" in message
    assert "user_id, api_key_id, model, batch, service_tier, api_source)" in message
    assert ("NULL, key_abc" if user is None else "user-abc, key_abc") in message
    with engine.connect() as conn:  # the day as it was
        hours = conn.execute(
            text("SELECT bucket_start FROM openai_usage.completions_usage_hourly")
        ).scalars()
        assert [h.hour for h in hours] == [1]


def test_the_same_group_in_another_hour_is_no_duplicate(engine: Engine) -> None:
    day = dt.date(2025, 6, 2)
    assert write(engine, day, *(bucket(day, h, sample_result()) for h in range(24))) == 24


def test_groups_that_only_share_a_hash_are_written(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every group hashing alike makes every hour a suspect: the check in SQL clears them."""
    monkeypatch.setattr(usage_days, "hash", lambda group: 7, raising=False)
    day = dt.date(2025, 6, 2)
    results = [sample_result(user_id=f"user-{i}") for i in range(5)]
    assert write(engine, day, bucket(day, 2, *results), bucket(day, 3, *results)) == 10
    with pytest.raises(PayloadError, match="listed one group twice"):
        write(engine, day, bucket(day, 2, *results, results[3]))


# ------------------------------------------------------------------ migration 0018, with data


@pytest.fixture
def url_at_0017(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url)
    migrate(url, "0017")
    yield url
    drop_database(pg_server_url, url)


def _insert_whole(engine: Engine, start: str, result: dict[str, Any]) -> None:
    columns = [c for c in result if c != "object" and c in TABLE.c]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO openai_usage.completions_usage_hourly (bucket_start, bucket_end, "
                f"{', '.join(columns)}, result) VALUES (CAST(:start AS timestamptz), "
                "CAST(:start AS timestamptz) + interval '1 hour', "
                + ", ".join(f":{c}" for c in columns)
                + ", CAST(:result AS jsonb))"
            ),
            {"start": start, **{c: result[c] for c in columns}, "result": json.dumps(result)},
        )


def test_0018_keeps_every_row_and_rebuilds_the_whole_result(url_at_0017: str) -> None:
    engine = engine_for(url_at_0017)
    older = {k: v for k, v in sample_result(user_id=None).items() if "cache_write_30m" not in k}
    served = [
        ("2025-09-30 23:00+00", sample_result(tomorrow={"a": [1, 2]})),
        ("2025-10-01 00:00+00", older),
    ]
    for start, result in served:
        _insert_whole(engine, start, result)
    with engine.connect() as conn:
        before = conn.execute(
            text("SELECT * FROM openai_usage.v_usage_token_kinds ORDER BY 1, 2, 3")
        ).all()
    migrate(url_at_0017)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT tableoid::regclass::text, result, openai_usage.api_result(u) "
                "FROM openai_usage.completions_usage_hourly u ORDER BY bucket_start"
            )
        ).all()
        views = conn.execute(
            text("SELECT * FROM openai_usage.v_usage_token_kinds ORDER BY 1, 2, 3")
        ).all()
    assert [r[0] for r in rows] == [
        "openai_usage.completions_usage_hourly_2025_09",
        "openai_usage.completions_usage_hourly_2025_10",
    ]
    assert [r[1] for r in rows] == [{"tomorrow": {"a": [1, 2]}}, None]
    assert [r[2] for r in rows] == [as_served(result) for _, result in served]
    assert views == before  # the views read the new tables, unchanged
    command.downgrade(alembic_config(url_at_0017), "0017")
    with engine.connect() as conn:
        whole = conn.execute(
            text("SELECT id, result FROM openai_usage.completions_usage_hourly ORDER BY id")
        ).all()
        kind = conn.execute(
            text("SELECT relkind FROM pg_class WHERE oid = CAST(:t AS regclass)"),
            {"t": "openai_usage.completions_usage_hourly"},
        ).scalar_one()
    assert kind == "r"
    assert [r[1] for r in whole] == [as_served(result) for _, result in served]
    with pytest.raises(IntegrityError, match="uq_completions_usage_hourly_bucket_group"):
        _insert_whole(engine, "2025-09-30 23:00+00", served[0][1])  # the unique group is back


def _table_stats(engine: Engine, name: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT n_live_tup, n_dead_tup, n_mod_since_analyze, analyze_count, vacuum_count "
                "FROM pg_stat_user_tables WHERE schemaname = 'openai_usage' AND relname = :name"
            ),
            {"name": name},
        ).one()
    return dict(row._mapping)


def test_statistics_are_sampled_again_by_autovacuums_rule(engine: Engine) -> None:
    """After a load every partition written is vacuumed unless it holds dead rows (a day
    replaced: left to autovacuum); it is analyzed (and the parent with it) when it never was or
    when more than 10% of its rows changed since, not for one day replaced in a full month."""
    first = dt.date(2031, 3, 1)
    days = [first + dt.timedelta(days=n) for n in range(30)]

    def load(loaded: list[dt.date]) -> int:
        return sum(
            write(engine, day, *(bucket(day, h, *(sample_result(project_id=f"proj_{p}")
                                                   for p in range(3))) for h in range(24)))
            for day in loaded
        )  # fmt: skip

    name, parent = "completions_usage_hourly_2031_03", TABLE.name
    assert load(days) == 2160
    with engine.begin() as conn:  # no autovacuum resetting the counters while they are read
        conn.execute(text(f"ALTER TABLE openai_usage.{name} SET (autovacuum_enabled = off)"))
    before = _table_stats(engine, name)
    parent_before = _table_stats(engine, parent)["analyze_count"]
    assert refresh_statistics(engine, TABLE, first, days[-1]) == [name]
    analyzed = _table_stats(engine, name)
    assert analyzed["analyze_count"] == before["analyze_count"] + 1
    assert analyzed["vacuum_count"] == before["vacuum_count"] + 1
    assert _table_stats(engine, parent)["analyze_count"] == parent_before + 1

    # One day of 30 replaced: 72 rows deleted and 72 written, 7% < 10%: kept; its dead rows
    # are autovacuum's (a VACUUM now would pass over every index of the month).
    assert load(days[4:5]) == 72
    replaced = _table_stats(engine, name)
    assert replaced["n_mod_since_analyze"] == 144  # counted at the load's commit, not later
    assert replaced["n_dead_tup"] == 72
    assert refresh_statistics(engine, TABLE, days[4], days[5]) == []
    kept = _table_stats(engine, name)
    assert kept["analyze_count"] == replaced["analyze_count"]
    assert kept["vacuum_count"] == replaced["vacuum_count"]
    assert _table_stats(engine, parent)["analyze_count"] == parent_before + 1

    # Ten days replaced: a third of the month changed.
    assert load(days[10:20]) == 720
    assert _table_stats(engine, name)["n_mod_since_analyze"] == 144 + 1440
    assert refresh_statistics(engine, TABLE, days[10], days[20]) == [name]
    assert _table_stats(engine, name)["analyze_count"] == kept["analyze_count"] + 1
    assert _table_stats(engine, name)["vacuum_count"] == kept["vacuum_count"]
    assert _table_stats(engine, parent)["analyze_count"] == parent_before + 2


def test_metrics_are_not_sampled_in_any_partition(engine: Engine) -> None:
    """Migration 0020: the metric columns (only ever summed) have no planner statistics, in
    the parent and in a month partition created later; the dimensions keep theirs, from a
    sample of 3,000 rows (target 10, migration 0025)."""
    day = dt.date(2032, 5, 4)
    write(engine, day, bucket(day, 1, sample_result()))
    name = partition_name(TABLE.name, day.replace(day=1))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"ANALYZE openai_usage.{name}"))
        targets = dict(
            conn.execute(
                text(
                    "SELECT c.relname, array_agg(a.attname::text ORDER BY a.attname) "
                    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                    "WHERE c.relname IN (:parent, :partition) AND a.attstattarget = 0 "
                    "GROUP BY 1"
                ),
                {"parent": TABLE.name, "partition": name},
            ).all()
        )
        sampled = set(
            conn.execute(
                text(
                    "SELECT attname FROM pg_stats WHERE schemaname = 'openai_usage' "
                    "AND tablename = :partition"
                ),
                {"partition": name},
            ).scalars()
        )
    metrics = sorted(column.name for column in TABLE.columns if str(column.type) == "BIGINT")
    assert len(metrics) == 17
    assert targets == {TABLE.name: metrics, name: metrics}
    assert not sampled & set(metrics)
    assert {"bucket_start", "project_id", "model"} <= sampled
    with engine.connect() as conn:
        dimension_targets = conn.execute(
            text(
                "SELECT c.relname, a.attname, a.attstattarget "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "WHERE c.relname IN (:parent, :partition) AND a.attnum > 0 "
                "AND NOT a.attisdropped AND a.atttypid <> 'bigint'::regtype"
            ),
            {"parent": TABLE.name, "partition": name},
        ).all()
    dimensions = [column.name for column in TABLE.columns if str(column.type) != "BIGINT"]
    assert len(dimension_targets) == 2 * len(dimensions) > 2 * 8
    assert {target for _, _, target in dimension_targets} == {10}
    with engine.connect() as conn:
        cost_groups = conn.execute(
            text(
                "SELECT stxstattarget FROM pg_statistic_ext "
                "WHERE stxname = 'st_completions_usage_daily_cost_group'"
            )
        ).scalar_one()
    assert cost_groups == 20  # its estimate wants 6,000 rows (migration 0025)
