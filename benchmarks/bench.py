"""Benchmark: ingest and pricing of a large organization, and a year's backfill. Prints a table.

    make bench    # = .venv/bin/python benchmarks/bench.py [--groups 10000] [--days 30]

A throwaway embedded PostgreSQL and the simulator (in its own process, serving `--groups`
usage groups with usage every hour) on loopback. Each ingest runs in a fresh process so its
peak RSS is its own. The backfill runs the `usage_daily_job` through Dagster on the default
simulated organization, once as 31-day range runs and once as one run per partition. Not a
test: it measures, it does not assert.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import requests
from sqlalchemy import text
from sqlalchemy.orm import Session

from usage_assets.admin_api.rows import split_by_day
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.admin_api.usage import COMPLETIONS_USAGE_PATH, iter_usage_buckets
from usage_assets.defs.policies import MAX_DAYS_PER_RUN
from usage_assets.defs.usage.ingest import usage_query_for_days
from usage_assets.pricing.attribution import PricingInputs, price_usage
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse import embedded as embedded_db
from usage_assets.warehouse.database import engine_for, migrate
from usage_assets.warehouse.models import USAGE_COPY_COLUMNS, CompletionsUsageHourly

COPY_SQL = (
    f"COPY {CompletionsUsageHourly.__table__.fullname} ({', '.join(USAGE_COPY_COLUMNS)}) FROM STDIN"
)

FIRST_DAY = dt.date(2025, 10, 1)
GROUP_BY = ["project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source"]

INGEST_CHILD = """
import datetime as dt, json, sys, time
from sqlalchemy import text
from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.warehouse.database import engine_for
from usage_assets.defs.usage.ingest import ingest_days
from usage_assets.warehouse.usage_days import LoadInfo
url, base, days = sys.argv[1], sys.argv[2], int(sys.argv[4])
first = dt.date.fromisoformat(sys.argv[3])
group_by = json.loads(sys.argv[5])
client = AdminAPIClient(base, None)
engine = engine_for(url)
with engine.connect() as conn:  # the pool's connection exists before the baseline is taken
    conn.execute(text("SELECT 1"))
info = LoadInfo(group_by=group_by, simulated=True, source_url="bench", dagster_run_id=None)
def status_mb(field):  # this process's own memory (ru_maxrss would include the parent's)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
baseline = status_mb("VmRSS")
began = time.perf_counter()
rows = sum(d.row_count for d in ingest_days(client, engine, first,
           first + dt.timedelta(days=days), group_by, info))
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - began,
                  "requests": client.request_count, "baseline_rss_mb": baseline,
                  "peak_rss_mb": status_mb("VmHWM")}))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_simulator(groups: int) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "usage-simulator"),
            "--port", str(port), "--streams", str(groups), "--projects", "300",
            "--users", "3000", "--always-active",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    process.stdout.readline()  # "simulated Admin API at ..."
    return process, f"http://127.0.0.1:{port}/v1"


def ingest(url: str, base: str, first: dt.date, days: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", INGEST_CHILD, url, base, first.isoformat(), str(days),
         json.dumps(GROUP_BY)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def largest_page_mb(base: str, day: dt.date) -> float:
    query = usage_query_for_days(day, day + dt.timedelta(days=1), GROUP_BY)
    response = requests.get(base + COMPLETIONS_USAGE_PATH, params=query.to_params(), timeout=600)
    return len(response.content) / 2**20


def day_rows(base: str, day: dt.date) -> list[tuple[Any, ...]]:
    query = usage_query_for_days(day, day + dt.timedelta(days=1), GROUP_BY)
    buckets = iter_usage_buckets(AdminAPIClient(base, None), query)
    return [row for _, rows in split_by_day(buckets) for row in rows]


def orm_loop(url: str, rows: list[tuple[Any, ...]]) -> float:
    """The naive way: one ORM object per row, session.add_all, commit."""
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE openai_usage.completions_usage_hourly"))
    began = time.perf_counter()
    with Session(engine) as session:
        objects = []
        for row in rows:
            values = dict(zip(USAGE_COPY_COLUMNS, row, strict=True))
            values["result"] = json.loads(values["result"]) if values["result"] else None
            objects.append(CompletionsUsageHourly(**values))
        session.add_all(objects)
        session.commit()
    return time.perf_counter() - began


def raw_copy(url: str, rows: list[tuple[Any, ...]]) -> float:
    """The floor: COPY of rows already built, nothing else."""
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE openai_usage.completions_usage_hourly"))
    began = time.perf_counter()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - began


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


class Results(list[tuple[str, str]]):
    """The table's rows, each shown as soon as it is measured."""

    def append(self, row: tuple[str, str]) -> None:
        progress(f"  {row[0]}: {row[1]}")
        super().append(row)

    def __iadd__(self, rows: Any) -> Results:  # type: ignore[override,misc]
        for row in rows:
            self.append(row)
        return self


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--orm-rows", type=int, default=50_000, help="rows for the naive ORM loop (it is slow)"
    )
    parser.add_argument(
        "--backfill-days", type=int, default=365, help="days of the Dagster backfill; 0 skips it"
    )
    args = parser.parse_args()
    results = Results()
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_db.EmbeddedServer(Path(tmp), free_port())
        embedded_db.ensure_running(server)
        simulator, base = start_simulator(args.groups)
        try:
            url = server.url()
            migrate(url)
            progress(f"one day of {args.groups:,} groups: fetch, parse, validate, write")
            page_mb = largest_page_mb(base, FIRST_DAY)
            one = ingest(url, base, FIRST_DAY, 1)
            rate = one["rows"] / one["seconds"]
            data_mb = one["peak_rss_mb"] - one["baseline_rss_mb"]
            results += [
                ("rows in one day", f"{one['rows']:,}"),
                ("ingest, one day (fetch, parse, validate, write)", f"{one['seconds']:.1f} s"),
                ("ingest rate", f"{rate:,.0f} rows/s"),
                ("ingest peak RSS", f"{one['peak_rss_mb']:.0f} MiB"),
                (
                    "  of which interpreter, libraries, connection",
                    f"{one['baseline_rss_mb']:.0f} MiB",
                ),
                ("  of which data (peak minus that baseline)", f"{data_mb:.0f} MiB"),
                ("largest page JSON", f"{page_mb:.1f} MiB"),
                ("data RSS / largest page", f"{data_mb / page_mb:.1f}x"),
            ]
            progress("raw COPY and the naive ORM loop, for comparison")
            rows = day_rows(base, FIRST_DAY)
            copy_seconds = raw_copy(url, rows)
            copy_rate = len(rows) / copy_seconds
            orm_rows = rows[: args.orm_rows]
            orm_rate = len(orm_rows) / orm_loop(url, orm_rows)
            results += [
                ("raw COPY of pre-built rows", f"{copy_rate:,.0f} rows/s"),
                (f"naive ORM add_all ({len(orm_rows):,} rows)", f"{orm_rate:,.0f} rows/s"),
                ("ingest vs ORM", f"{rate / orm_rate:.1f}x faster"),
                ("ingest vs raw COPY", f"{copy_rate / rate:.1f}x slower"),
            ]
            with engine_for(url).begin() as conn:
                conn.execute(text("TRUNCATE openai_usage.completions_usage_hourly"))
            progress(f"{args.days} days in one run")
            many = ingest(url, base, FIRST_DAY, args.days)
            results.append(
                (f"ingest, {args.days} days in one run",
                 f"{many['seconds']:.0f} s, {many['rows'] / many['seconds']:,.0f} rows/s, "
                 f"{many['requests']} requests, peak RSS {many['peak_rss_mb']:.0f} MiB")
            )  # fmt: skip
            engine = engine_for(url)
            for days in (1, args.days):
                progress(f"cost attribution, {days} day(s)")
                began = time.perf_counter()
                price_usage(engine, FIRST_DAY, FIRST_DAY + dt.timedelta(days=days),
                            PricingInputs(None))  # fmt: skip
                results.append(
                    (f"cost attribution, {days} day(s)", f"{time.perf_counter() - began:.1f} s")
                )
            simulator.terminate()
            if args.backfill_days:
                progress(f"Dagster backfill of {args.backfill_days} days, range runs")
                ranged = backfill(server, Path(tmp), args.backfill_days, MAX_DAYS_PER_RUN)
                progress(f"Dagster backfill of {args.backfill_days} days, one run per partition")
                single = backfill(server, Path(tmp), args.backfill_days, 1)
                for label, run in (("range runs", ranged), ("one run per partition", single)):
                    results.append(
                        (f"backfill {args.backfill_days} days, {label}",
                         f"{run['seconds']:.0f} s, {run['runs']} runs, "
                         f"{run['requests']} HTTP requests ({run['usage_requests']} usage)")
                    )  # fmt: skip
                results += [
                    ("backfill speed-up", f"{single['seconds'] / ranged['seconds']:.1f}x"),
                    ("both backfills wrote the same rows",
                     "yes" if ranged["content"] == single["content"] else "NO"),
                ]  # fmt: skip
        finally:
            simulator.terminate()
            embedded_db.stop(server)
    width = max(len(name) for name, _ in results)
    print(f"\nusage_assets benchmark: {args.groups:,} groups x 24 hours, {os.cpu_count()} CPUs")
    for name, value in results:
        print(f"{name:<{width}}  {value}")
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"(this benchmark process itself peaked at {own_rss} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
