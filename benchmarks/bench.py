"""Benchmark: a large organization's usage of every endpoint, its costs, and a year's backfill.

    make bench    # = .venv/bin/python benchmarks/bench.py [--groups 10000] [--days 30]

A throwaway embedded PostgreSQL and the simulator (in its own process, serving `--groups`
completions groups and `--endpoint-groups` groups of each other usage endpoint, all busy every
hour) on loopback. Each ingest runs in a fresh process, so its peak RSS is its own; a measured
ingest is run once before to warm the simulator's page cache (a benchmark of the client, not
of how fast the simulator builds pages). The backfill runs `usage_daily_job` through Dagster
on the default simulated organization, as 31-day range runs and as one run per partition.
Progress goes to stderr as it runs; the table at the end lists every figure and each target of
issue 13 as met or missed. Not a test: it measures, it does not assert.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from usage_assets.admin_api.endpoints import COMPLETIONS, USAGE_ENDPOINTS, UsageEndpoint
from usage_assets.admin_api.rows import split_by_day
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.admin_api.usage import iter_usage_buckets
from usage_assets.chargeback.allocation import allocate_costs
from usage_assets.defs.billing.ingest import fetch_cost_days, replace_cost_day
from usage_assets.defs.policies import MAX_DAYS_PER_RUN
from usage_assets.defs.usage.ingest import usage_query_for_days
from usage_assets.pricing.attribution import (
    PricingInputs,
    price_unit_usage,
    price_usage,
    summarize_costs,
)
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse import embedded as embedded_db
from usage_assets.warehouse.database import engine_for, migrate
from usage_assets.warehouse.models import SCHEMA, CompletionsUsageHourly
from usage_assets.warehouse.usage_days import usage_table

FIRST_DAY = dt.date(2025, 10, 1)
ONE_DAY = dt.timedelta(days=1)
HOURLY_TABLES = [usage_table(endpoint).fullname for endpoint in USAGE_ENDPOINTS]
#: What an ingest leaves besides the hourly rows; emptied with them between measures.
LOAD_TABLES = [f"{SCHEMA}.usage_loads", f"{SCHEMA}.usage_day_revisions"]

INGEST_CHILD = """
import datetime as dt, json, sys, time
from sqlalchemy import text
from usage_assets.admin_api.endpoints import ENDPOINTS_BY_NAME
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.defs.usage.ingest import ingest_days
from usage_assets.warehouse.database import engine_for
from usage_assets.warehouse.usage_days import LoadInfo
url, base, days = sys.argv[1], sys.argv[2], int(sys.argv[4])
first = dt.date.fromisoformat(sys.argv[3])
client = AdminAPIClient(base, None)
engine = engine_for(url)
with engine.connect() as conn:  # the pool's connection exists before the baseline is taken
    conn.execute(text("SELECT 1"))
def status_mb(field):  # this process's own memory (ru_maxrss would include the parent's)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
baseline = status_mb("VmRSS")
rows, seconds = {}, {}
for name in sys.argv[5].split(","):
    endpoint = ENDPOINTS_BY_NAME[name]
    info = LoadInfo(group_by=list(endpoint.group_by_fields), simulated=True, source_url="bench",
                    dagster_run_id=None)
    began = time.perf_counter()
    rows[name] = sum(d.row_count for d in ingest_days(
        client, engine, first, first + dt.timedelta(days=days), endpoint.group_by_fields, info,
        endpoint=endpoint))
    seconds[name] = time.perf_counter() - began
print(json.dumps({"rows": rows, "seconds": seconds, "requests": client.request_count,
                  "baseline_rss_mb": baseline, "peak_rss_mb": status_mb("VmHWM")}))
"""

#: The tables the cost attribution writes (what the BI queries read).
COST_TABLES = [
    f"{SCHEMA}.{name}"
    for name in (
        "completions_usage_daily", "unit_usage_daily", "project_daily_costs",
        "usage_daily_costs", "project_daily_cost_summary", "cost_allocation_daily",
    )
]  # fmt: skip

#: The BI question of issue 13: README "Spend per project for a month".
SPEND_PER_PROJECT = f"""
SELECT project_name, sum(billed_usd) AS billed_usd, sum(estimated_usd) AS estimated_usd,
       sum(unallocated_usd) AS unallocated_usd
FROM {SCHEMA}.v_cost_allocation_project_daily
WHERE usage_date >= :first AND usage_date < :end
GROUP BY 1
ORDER BY billed_usd DESC
"""
#: The same question over the finer view, as the dashboard's "Spend per project" chart asks it.
SPEND_PER_PROJECT_FINE = f"""
SELECT project_name, sum(billed_usd) AS billed_usd, sum(estimated_usd) AS estimated_usd
FROM {SCHEMA}.v_cost_allocation_daily
WHERE usage_date >= :first AND usage_date < :end
GROUP BY 1
ORDER BY billed_usd DESC
"""
#: README "Spend per project, API key and model for a month".
SPEND_PER_KEY_AND_MODEL = f"""
SELECT project_name, coalesce(api_key_name, api_key_id, '(no key)') AS api_key, model,
       sum(billed_usd) AS billed_usd, sum(estimated_usd) AS estimated_usd,
       sum(unallocated_usd) AS unallocated_usd
FROM {SCHEMA}.v_cost_allocation_daily
WHERE usage_date >= :first AND usage_date < :end
GROUP BY 1, 2, 3
ORDER BY billed_usd DESC
"""

BYTES_PER_ROW = """
SELECT coalesce(sum(pg_total_relation_size(relid)), 0)
FROM pg_partition_tree(CAST(:table AS regclass)) WHERE isleaf
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_simulator(groups: int, endpoint_groups: int) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "usage-simulator"),
            "--port", str(port), "--streams", str(groups), "--projects", "300",
            "--users", "3000", "--always-active", "--endpoint-streams", str(endpoint_groups),
            # Two days of every endpoint's pages (a large day is about 210 MiB of JSON).
            "--page-cache-mib", "600",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    process.stdout.readline()  # "simulated Admin API at ..."
    return process, f"http://127.0.0.1:{port}/v1"


@dataclass
class Ingest:
    """One ingest process: rows and seconds per endpoint, its requests and memory."""

    rows: dict[str, int]
    seconds: dict[str, float]
    requests: int
    baseline_rss_mb: float
    peak_rss_mb: float

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def ingest(url: str, base: str, first: dt.date, days: int) -> Ingest:
    """Every usage endpoint of [first, first + days), in a fresh process, one endpoint after
    the other (as the daily job's assets run)."""
    names = ",".join(endpoint.name for endpoint in USAGE_ENDPOINTS)
    done = subprocess.run(
        [sys.executable, "-c", INGEST_CHILD, url, base, first.isoformat(), str(days), names],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Ingest(**json.loads(done.stdout.strip().splitlines()[-1]))


#: Replaces of a day timed, after one that warms the simulator's pages: a partition is analyzed
#: again once 10% of it changed, so its cost comes every few replaces; the mean carries it.
REPLACES = 4


def replace_seconds(url: str, base: str, day: dt.date) -> tuple[float, dict[str, float]]:
    """The mean seconds of replacing `day` of every endpoint (its rows already stored), once
    autovacuum is done with what was loaded before (steady state, not a month's first vacuum
    running beside the replace on the second CPU), and each endpoint's mean."""
    ingest(url, base, day, 1)
    autovacuum_settled(url)
    runs = [ingest(url, base, day, 1) for _ in range(REPLACES)]
    per_endpoint = {
        name: statistics.mean(run.seconds[name] for run in runs) for name in runs[0].seconds
    }
    return statistics.mean(run.total_seconds for run in runs), per_endpoint


def per_endpoint_seconds(seconds: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items())


def autovacuum_settled(url: str, limit: float = 600) -> None:
    """Wait (at most `limit` seconds) until no autovacuum worker runs in the database."""
    deadline = time.monotonic() + limit
    with engine_for(url).connect() as conn:
        while time.monotonic() < deadline:
            busy = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE backend_type = 'autovacuum worker' AND datname = current_database()"
                )
            ).scalar_one()
            conn.rollback()
            if not busy:
                return
            time.sleep(1)
    progress(f"  (autovacuum still running after {limit:.0f} s)")


def largest_page_mb(base: str, day: dt.date) -> tuple[float, str]:
    """The largest first page of the day among the endpoints (completions', at this scale)."""
    sizes = []
    for endpoint in USAGE_ENDPOINTS:
        query = usage_query_for_days(day, day + ONE_DAY, endpoint.group_by_fields, endpoint)
        response = requests.get(base + endpoint.path, params=query.to_params(), timeout=600)
        response.raise_for_status()
        sizes.append((len(response.content) / 2**20, endpoint.name))
    return max(sizes)


def day_rows(base: str, day: dt.date, endpoint: UsageEndpoint) -> list[tuple[Any, ...]]:
    query = usage_query_for_days(day, day + ONE_DAY, endpoint.group_by_fields, endpoint)
    buckets = iter_usage_buckets(AdminAPIClient(base, None), query)
    return [row for _, rows in split_by_day(buckets, endpoint) for row in rows]


def empty_usage(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(HOURLY_TABLES + LOAD_TABLES)}"))


def raw_copy(engine: Engine, rows: dict[UsageEndpoint, list[tuple[Any, ...]]]) -> float:
    """The floor: COPY of rows already built into the same (empty) tables, nothing else."""
    empty_usage(engine)
    began = time.perf_counter()
    for endpoint, endpoint_rows in rows.items():
        sql = (
            f"COPY {usage_table(endpoint).fullname} ({', '.join(endpoint.copy_columns)}) FROM STDIN"
        )
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cursor, cursor.copy(sql) as copy:
                for row in endpoint_rows:
                    copy.write_row(row)
    return time.perf_counter() - began


def orm_loop(engine: Engine, rows: list[tuple[Any, ...]]) -> float:
    """The naive way: one ORM object per row, session.add_all, commit."""
    empty_usage(engine)
    began = time.perf_counter()
    with Session(engine) as session:
        objects = []
        for row in rows:
            values = dict(zip(COMPLETIONS.copy_columns, row, strict=True))
            values["result"] = json.loads(values["result"]) if values["result"] else None
            objects.append(CompletionsUsageHourly(**values))
        session.add_all(objects)
        session.commit()
    return time.perf_counter() - began


def stored_bytes(engine: Engine) -> dict[str, tuple[int, int]]:
    """(bytes on disk of the table's partitions with their indexes and TOAST, rows) per table."""
    sizes = {}
    with engine.connect() as conn:
        for table in HOURLY_TABLES:
            size = conn.execute(text(BYTES_PER_ROW), {"table": table}).scalar_one()
            rows = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            sizes[table] = (int(size), int(rows))
    return sizes


def load_costs(engine: Engine, base: str, first: dt.date, days: int) -> tuple[float, int]:
    """The bill of each day, a request per day as the daily job asks for it (a month of this
    organization's bill in one request takes the simulator minutes to build)."""
    client, rows = AdminAPIClient(base, None), 0
    began = time.perf_counter()
    for n in range(days):
        day = first + n * ONE_DAY
        rows += sum(
            replace_cost_day(engine, d) for d in fetch_cost_days(client, day, day + ONE_DAY)
        )
    return time.perf_counter() - began, rows


def attribution(engine: Engine, first: dt.date, days: int) -> dict[str, float]:
    """The cost assets in the daily job's order, each timed: the estimate of completions and of
    every other usage kind, the per-project summary, then the allocation of the bill."""
    end, inputs = first + days * ONE_DAY, PricingInputs(None)
    steps: dict[str, Callable[[], object]] = {
        "estimate, completions (project_daily_costs)": lambda: price_usage(
            engine, first, end, inputs
        ),
        "estimate, other usage (usage_daily_costs)": lambda: price_unit_usage(
            engine, first, end, inputs
        ),
        "summary (project_daily_cost_summary)": lambda: summarize_costs(engine, first, end),
        "allocation of the bill (cost_allocation_daily)": lambda: allocate_costs(
            engine, first, end
        ),
    }
    seconds = {}
    for name, step in steps.items():
        began = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - began
    return seconds


def bi_query(engine: Engine, sql: str, first: dt.date, end: dt.date) -> tuple[list[float], int]:
    """Seconds of three runs of a BI query (the first one cold for the planner), and its rows."""
    runs, rows = [], 0
    for _ in range(3):
        with engine.connect() as conn:
            began = time.perf_counter()
            rows = len(conn.execute(text(sql), {"first": first, "end": end}).all())
            runs.append(time.perf_counter() - began)
    return runs, rows


BACKFILL_FIRST = dt.date(2025, 1, 1)
CONTENT_HASH = """
SELECT (SELECT md5(string_agg(u::text, '|' ORDER BY u::text)) FROM (
            SELECT bucket_start, project_id, user_id, api_key_id, model, batch, service_tier,
                   api_source, input_tokens, output_tokens, num_model_requests
            FROM openai_usage.completions_usage_hourly) AS u)
    || (SELECT md5(string_agg(c::text, '|' ORDER BY c::text)) FROM (
            SELECT usage_date, project_id, model, batch, service_tier, input_tokens,
                   output_tokens, cost_usd
            FROM openai_usage.project_daily_costs) AS c)
"""


def backfill(
    server: embedded_db.EmbeddedServer, tmp: Path, days: int, per_run: int
) -> dict[str, Any]:
    """A backfill of `days` days in Dagster runs of `per_run` days, each run in a process of its
    own (as Dagster's run launcher starts them), on a fresh database and DAGSTER_HOME, against an
    in-process simulator of the default organization."""
    name = f"backfill_{per_run}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.url(database=name)
    migrate(url)
    home = tmp / f"dagster_home_{per_run}"
    home.mkdir()
    last = BACKFILL_FIRST + dt.timedelta(days=days - 1)
    with SimulatedAdminAPI(required_key="sk-admin-bench") as sim:
        env = os.environ | {
            "USAGE_DATABASE_URL": url, "DAGSTER_HOME": str(home), "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_ADMIN_KEY": "sk-admin-bench", "USAGE_START_DATE": BACKFILL_FIRST.isoformat(),
            "USAGE_STEP_RETRIES": "0",
        }  # fmt: skip
        began = time.perf_counter()
        first = BACKFILL_FIRST
        while first <= last:  # one process per run, as Dagster's run launcher does
            end = min(first + dt.timedelta(days=per_run - 1), last)
            subprocess.run(
                [str(Path(sys.executable).parent / "usage-backfill"), first.isoformat(),
                 end.isoformat(), "--days-per-run", str(per_run)],
                env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            first = end + dt.timedelta(days=1)
        seconds = time.perf_counter() - began
        requests_made, usage_requests = len(sim.requests), sim.usage_requests()
    with engine_for(url).connect() as conn:
        content = conn.execute(text(CONTENT_HASH)).scalar()
    return {
        "seconds": seconds,
        "runs": -(-days // per_run),
        "requests": requests_made,
        "usage_requests": usage_requests,
        "content": content,
    }


STARTED = time.perf_counter()


def progress(message: str) -> None:
    """What the benchmark is doing now, with the time since it started (it runs for many
    minutes; the table at the end repeats every figure)."""
    elapsed = int(time.perf_counter() - STARTED)
    print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


@dataclass
class Report:
    """The figures, each shown as soon as it is measured, and the targets of issue 13."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    targets: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        progress(f"  {name}: {value}")
        self.rows.append((name, value))

    def target(self, name: str, value: float, shown: str, limit: float, unit: str) -> None:
        met = value <= limit
        progress(f"  TARGET {name}: {shown} (target <= {limit:g}{unit}: {_met(met)})")
        self.targets.append((name, shown, f"<= {limit:g}{unit}", met))

    def print(self, header: str) -> None:
        print(f"\n{header}")
        width = max(len(name) for name, _ in self.rows)
        for name, value in self.rows:
            print(f"{name:<{width}}  {value}")
        if self.targets:
            print("\n| measure | result | target | |\n|---|---|---|---|")
            for name, shown, limit, met in self.targets:
                print(f"| {name} | {shown} | {limit} | {_met(met)} |")


def _met(met: bool) -> str:
    return "met" if met else "MISSED"


def per_endpoint(run: Ingest) -> str:
    return ", ".join(f"{name} {run.rows[name]:,} in {run.seconds[name]:.1f} s" for name in run.rows)


@dataclass(frozen=True)
class Scale:
    """What the projection to a larger organization starts from: one large day's rows, the
    ingest rate, the requests of the day and the bytes a stored row takes."""

    day_rows: int
    ingest_rate: float
    day_requests: int
    bytes_per_row: float


def measure_ingest(
    args: argparse.Namespace, engine: Engine, url: str, base: str, report: Report
) -> Scale:
    day = FIRST_DAY
    progress(f"one large day of every endpoint: warming the simulator's pages ({day})")
    page_mb, page_of = largest_page_mb(base, day)
    ingest(url, base, day, 1)  # builds the pages once; the measured runs get them from memory
    progress("one large day into empty tables: fetch, parse, validate, write (best of 2)")
    # Timed as the floor below is (the faster of two runs), so that a busy moment of the
    # machine in one of them does not count against one side only; memory: the larger peak.
    runs = []
    for _ in range(2):
        empty_usage(engine)
        runs.append(ingest(url, base, day, 1))
    one = min(runs, key=lambda run: run.total_seconds)
    heaviest = max(runs, key=lambda run: run.peak_rss_mb - run.baseline_rss_mb)
    data_mb = heaviest.peak_rss_mb - heaviest.baseline_rss_mb
    report.add("rows in one day (every usage endpoint)", f"{one.total_rows:,}")
    report.add("  per endpoint", per_endpoint(one))
    report.add(
        "ingest, one day (best of 2)",
        f"{one.total_seconds:.1f} s, {one.total_rows / one.total_seconds:,.0f} rows/s, "
        f"{one.requests} requests (the other run: {max(r.total_seconds for r in runs):.1f} s)",
    )
    report.add(
        "ingest peak RSS",
        f"{heaviest.peak_rss_mb:.0f} MiB: {heaviest.baseline_rss_mb:.0f} MiB interpreter, "
        f"libraries and connection + {data_mb:.0f} MiB of data (the larger of the 2 runs)",
    )
    report.add("largest page", f"{page_mb:.1f} MiB ({page_of})")

    progress("the same rows, already built, by raw COPY (the floor) and by the naive ORM loop")
    rows = {endpoint: day_rows(base, day, endpoint) for endpoint in USAGE_ENDPOINTS}
    copy_seconds = min(raw_copy(engine, rows) for _ in range(2))
    orm_rows = rows[COMPLETIONS][: args.orm_rows]
    orm_rate = len(orm_rows) / orm_loop(engine, orm_rows)
    copied = sum(len(r) for r in rows.values())
    report.add(
        "raw COPY of the same rows (best of 2)",
        f"{copy_seconds:.1f} s, {copied / copy_seconds:,.0f} rows/s",
    )
    report.add(
        f"naive ORM add_all ({len(orm_rows):,} completions rows)",
        f"{orm_rate:,.0f} rows/s: ingest is "
        f"{one.total_rows / one.total_seconds / orm_rate:.1f}x faster",
    )
    del rows, orm_rows

    empty_usage(engine)
    ingest(url, base, day, 1)
    progress(f"replacing the day when the tables hold it alone ({REPLACES} times, timed)")
    replace_one, replace_one_by = replace_seconds(url, base, day)
    report.add("replace, the day alone (mean per endpoint)", per_endpoint_seconds(replace_one_by))
    report.target(
        "ingest time vs raw COPY of the same rows, large day",
        one.total_seconds / copy_seconds,
        f"{one.total_seconds / copy_seconds:.2f}x "
        f"({one.total_seconds:.1f} s vs {copy_seconds:.1f} s)",
        1.5,
        "x",
    )
    report.target(
        "peak memory of the data (above the process baseline) vs the largest page",
        data_mb / page_mb,
        f"{data_mb / page_mb:.2f}x ({data_mb:.0f} MiB vs {page_mb:.1f} MiB)",
        2,
        "x",
    )

    empty_usage(engine)
    progress(
        f"{args.days} large days of every endpoint in one run (pages built as they are asked for)"
    )
    many = ingest(url, base, day, args.days)
    report.add(
        f"ingest, {args.days} days in one run",
        f"{many.total_rows:,} rows in {many.total_seconds:.0f} s, "
        f"{many.total_rows / many.total_seconds:,.0f} rows/s, {many.requests} requests, "
        f"peak RSS {many.peak_rss_mb:.0f} MiB",
    )
    sizes = stored_bytes(engine)
    size, stored = sum(s for s, _ in sizes.values()), sum(r for _, r in sizes.values())
    completions_size, completions_rows = sizes[usage_table(COMPLETIONS).fullname]
    report.add("on disk, every hourly table", f"{size / 2**30:.2f} GiB for {stored:,} rows")
    report.add(
        "  completions_usage_hourly", f"{completions_size / completions_rows:.0f} bytes a row"
    )
    report.target(
        "bytes on disk per hourly row (table + indexes)",
        size / stored / 1000,
        f"{size / stored / 1000:.2f} KB ({size / stored:.0f} bytes)",
        0.5,
        " KB",
    )

    progress(f"replacing the day when the tables hold {args.days} days ({REPLACES} times, timed)")
    replace_many, replace_many_by = replace_seconds(url, base, day)
    report.add(
        f"replace, beside {args.days} days (mean per endpoint)",
        per_endpoint_seconds(replace_many_by),
    )
    ratio = replace_many / replace_one
    report.target(
        f"replacing one day when the table holds {args.days}x more days",
        ratio,
        f"{ratio:.2f}x ({replace_many:.1f} s vs {replace_one:.1f} s, mean of {REPLACES})",
        1.2,
        "x",
    )
    return Scale(one.total_rows, one.total_rows / one.total_seconds, one.requests, size / stored)


def measure_costs(
    args: argparse.Namespace, engine: Engine, url: str, base: str, report: Report
) -> None:
    progress(f"billed costs of {args.days} days (Costs API)")
    seconds, cost_rows = load_costs(engine, base, FIRST_DAY, args.days)
    report.add(f"billed costs, {args.days} days", f"{cost_rows:,} rows in {seconds:.0f} s")
    waited = time.perf_counter()
    autovacuum_settled(url)
    report.add("waited for autovacuum of the loaded month", f"{time.perf_counter() - waited:.0f} s")
    for days in (1, args.days):
        progress(f"cost attribution of every usage kind, {days} day(s)")
        steps = attribution(engine, FIRST_DAY, days)
        for name, step_seconds in steps.items():
            report.add(f"  {days} day(s): {name}", f"{step_seconds:.1f} s")
        total = sum(steps.values())
        report.add(f"cost attribution, {days} large day(s)", f"{total:.1f} s")
    report.target(
        f"cost attribution (estimate + allocation), {args.days} large days, all endpoints",
        total,
        f"{total:.1f} s",
        15,
        " s",
    )
    with engine.connect() as conn:
        allocated = conn.execute(
            text(f"SELECT count(*) FROM {SCHEMA}.cost_allocation_daily")
        ).scalar_one()
    report.add("cost_allocation_daily rows", f"{allocated:,}")
    end = FIRST_DAY + args.days * ONE_DAY
    progress("BI queries over the month")
    # Right after the run, the month's allocation rows were just written: the first reader
    # sets their hint bits (writing the pages again), and autovacuum may start beside it.
    fresh, _ = bi_query(engine, SPEND_PER_PROJECT, FIRST_DAY, end)
    report.add(
        "BI: spend per project, right after the run (3 runs)",
        ", ".join(f"{run:.2f} s" for run in fresh),
    )
    # The target's: as a BI tool meets the tables between two daily runs, once autovacuum went
    # over the rows the attribution replaced. Done here rather than waited for (autovacuum
    # starts within its naptime, and a check between two of its workers saw none running).
    settled = time.perf_counter()
    autovacuum_settled(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM (ANALYZE) {', '.join(COST_TABLES)}"))
    report.add(
        "VACUUM (ANALYZE) of the cost tables, as autovacuum leaves them",
        f"{time.perf_counter() - settled:.1f} s",
    )
    runs, rows = bi_query(engine, SPEND_PER_PROJECT, FIRST_DAY, end)
    report.add(
        "BI: spend per project, one month (3 runs)",
        ", ".join(f"{r:.2f} s" for r in runs) + f" ({rows} projects)",
    )
    fine, fine_rows = bi_query(engine, SPEND_PER_PROJECT_FINE, FIRST_DAY, end)
    report.add(
        "BI: the same over v_cost_allocation_daily (3 runs)",
        ", ".join(f"{r:.2f} s" for r in fine) + f" ({fine_rows} projects)",
    )
    detail, detail_rows = bi_query(engine, SPEND_PER_KEY_AND_MODEL, FIRST_DAY, end)
    report.add(
        "BI: spend per project, key and model, one month (3 runs)",
        ", ".join(f"{r:.2f} s" for r in detail) + f" ({detail_rows:,} rows)",
    )
    report.target(
        "BI query 'spend per project for one month'",
        max(runs),
        f"{max(runs):.2f} s (slowest of 3; median {statistics.median(runs):.2f} s)",
        1,
        " s",
    )


def measure_backfill(
    args: argparse.Namespace, server: embedded_db.EmbeddedServer, tmp: Path, report: Report
) -> None:
    progress(f"Dagster backfill of {args.backfill_days} days, range runs")
    ranged = backfill(server, tmp, args.backfill_days, MAX_DAYS_PER_RUN)
    progress(f"Dagster backfill of {args.backfill_days} days, one run per partition")
    single = backfill(server, tmp, args.backfill_days, 1)
    for label, run in (("range runs", ranged), ("one run per partition", single)):
        report.add(
            f"backfill {args.backfill_days} days, {label}",
            f"{run['seconds']:.0f} s, {run['runs']} runs, {run['requests']} HTTP requests "
            f"({run['usage_requests']} usage)",
        )
    report.add("backfill speed-up", f"{single['seconds'] / ranged['seconds']:.1f}x")
    report.add(
        "both backfills wrote the same rows",
        "yes" if ranged["content"] == single["content"] else "NO",
    )


def project(measured: Scale, report: Report, scale: int = 10) -> None:
    """What an organization `scale` times this one would need (README "Beyond one machine")."""
    rows_a_day = measured.day_rows * scale
    report.add(
        f"{scale}x this organization: hourly rows",
        f"{rows_a_day:,} a day, {rows_a_day * 365 / 1e9:.2f} billion a year",
    )
    report.add(
        f"{scale}x: on disk",
        f"{rows_a_day * measured.bytes_per_row / 2**30:.1f} GiB a day, "
        f"{rows_a_day * 365 * measured.bytes_per_row / 2**40:.2f} TiB a year",
    )
    report.add(
        f"{scale}x: one day's ingest, one process",
        f"{rows_a_day / measured.ingest_rate / 60:.1f} min, "
        f"about {measured.day_requests * scale:,} requests",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000, help="completions usage groups")
    parser.add_argument(
        "--endpoint-groups", type=int, default=1_000, help="usage groups of each other endpoint"
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--orm-rows", type=int, default=20_000, help="rows for the naive ORM loop (it is slow)"
    )
    parser.add_argument(
        "--backfill-days",
        type=int,
        default=62,
        help="days of the Dagster backfill (a run per partition: about 6.5 s a day); 0 skips it",
    )
    parser.add_argument(
        "--parts",
        default="usage,backfill",
        help="what to measure: usage (ingest, storage, costs, BI) and/or backfill",
    )
    args = parser.parse_args(argv)
    report = Report()
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_db.EmbeddedServer(Path(tmp), free_port())
        embedded_db.ensure_running(server)
        simulator, base = start_simulator(args.groups, args.endpoint_groups)
        try:
            url = server.url()
            migrate(url)
            engine = engine_for(url)
            if "usage" in args.parts:
                measured = measure_ingest(args, engine, url, base, report)
                measure_costs(args, engine, url, base, report)
                project(measured, report)
            simulator.terminate()
            if args.backfill_days and "backfill" in args.parts:
                measure_backfill(args, server, Path(tmp), report)
        finally:
            simulator.terminate()
            simulator.wait()
            embedded_db.stop(server)
    report.print(
        f"usage_assets benchmark: {args.groups:,} completions groups and {args.endpoint_groups:,} "
        f"of each other endpoint, x 24 hours x {args.days} days, {os.cpu_count()} CPUs"
    )
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"(this benchmark process itself peaked at {own_rss} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
