"""Command-line helpers: `usage-db` (embedded server, DSN, migrations, re-pricing stored cost
rows) and `usage-simulator`."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

from usage_assets import settings
from usage_assets.errors import UsageAssetsError
from usage_assets.warehouse import embedded as embedded_db
from usage_assets.warehouse.database import migrate, resolve_url, safe_url


def _dsn() -> str:
    """The libpq DSN of the usage database (BI tools, psql): the embedded server's with its
    password (the one way to get in), USAGE_DATABASE_URL's masked (the user has it already)."""
    if settings.database_url():
        return safe_url(resolve_url()).replace("postgresql+psycopg://", "postgresql://")
    server = embedded_db.default_server()
    return server.dsn()


def _embedded_summary(server: embedded_db.EmbeddedServer) -> str:
    """Where the embedded server is, password masked (`usage-db dsn` prints it)."""
    return (
        f"{server.safe_dsn()} (data: {server.pgdata}; password in {server.password_file}, "
        "`usage-db dsn` prints the full DSN)"
    )


def db_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="usage-db",
        description="Manage the usage database: the embedded PostgreSQL and its migrations.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="start the embedded PostgreSQL (if it is not running)")
    commands.add_parser("stop", help="stop the embedded PostgreSQL")
    commands.add_parser("status", help="say whether the embedded PostgreSQL runs, and where")
    commands.add_parser("dsn", help="print the DSN for psql and BI tools")
    commands.add_parser("migrate", help="upgrade the openai_usage schema to the latest revision")
    recompute = commands.add_parser(
        "recompute-costs",
        help="re-price stored cost rows with the current pricing rules (one transaction a day)",
        description=(
            "Recompute project_daily_costs and project_daily_cost_summary for every UTC day "
            "that has usage (or cost rows) in the range, from the stored usage and the stored "
            "price snapshot, with USAGE_PRICE_OVERRIDES. Run it once after upgrading to "
            "migration 0004 (cache writes were counted twice before). Every organization in "
            "the database is recomputed (re-pricing reads stored usage only), unless "
            "--organization names one."
        ),
    )
    recompute.add_argument(
        "--from", dest="first", type=dt.date.fromisoformat, default=dt.date.min,
        help="first UTC day, YYYY-MM-DD (default: the first day with usage)",
    )  # fmt: skip
    recompute.add_argument(
        "--to", dest="last", type=dt.date.fromisoformat, default=None,
        help="last UTC day, inclusive, YYYY-MM-DD (default: the last day with usage)",
    )  # fmt: skip
    recompute.add_argument(
        "--organization", default=None,
        help="recompute this organization's cost rows only (default: every organization with "
        "usage or cost rows; the others' rows are never touched when one is named)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "recompute-costs" and args.last is not None and args.last < args.first:
        parser.error("--to is before --from")
    try:
        if args.command == "start":
            server = embedded_db.ensure_running()
            print(f"embedded PostgreSQL running: {_embedded_summary(server)}")
        elif args.command == "stop":
            print("stopped" if embedded_db.stop() else "not running")
        elif args.command == "status":
            server = embedded_db.default_server()
            state = "running" if embedded_db.is_running(server) else "stopped"
            print(f"embedded PostgreSQL {state}: {_embedded_summary(server)}")
            if settings.database_url():
                print(f"USAGE_DATABASE_URL is set, so usage_assets uses {_dsn()}")
        elif args.command == "dsn":
            if not settings.database_url():
                embedded_db.ensure_running()
            print(_dsn())
        elif args.command == "migrate":
            url = resolve_url()
            migrate(url)
            print(f"openai_usage schema is at the latest revision on {safe_url(url)}")
        elif args.command == "recompute-costs":
            _recompute_costs(args.first, args.last, args.organization)
    except UsageAssetsError as exc:
        print(f"usage-db: {exc}", file=sys.stderr)
        return 2
    return 0


def _recompute_costs(first: dt.date, last: dt.date | None, organization: str | None) -> None:
    from usage_assets.pricing.attribution import PricingInputs, money, recompute_costs
    from usage_assets.warehouse.database import engine_for, prepare_schema

    url = resolve_url()
    engine = engine_for(url)
    prepare_schema(engine, auto_migrate=settings.auto_migrate())
    overrides = settings.price_overrides_path()
    end = dt.date.max if last is None else last + dt.timedelta(days=1)
    done = recompute_costs(engine, first, end, PricingInputs(overrides), organization=organization)
    if not done.days:
        scope = f" of organization {organization}" if organization else ""
        print(f"no usage or cost rows{scope} to recompute on {safe_url(url)}")
        return
    print(
        f"recomputed {len(done.days)} days ({done.days[0]} .. {done.days[-1]}) of "
        f"{', '.join(done.organizations)} on {safe_url(url)}: estimated cost "
        f"{money(done.cost_before_usd)} -> {money(done.cost_after_usd)}"
    )


def simulator_main(argv: list[str] | None = None) -> int:
    from usage_assets.simulator.organization import SyntheticOrganization, parse_anomaly
    from usage_assets.simulator.server import SimulatedAdminAPI, iter_faults

    parser = argparse.ArgumentParser(
        prog="usage-simulator",
        description="Serve the simulated OpenAI Admin API on 127.0.0.1 until interrupted.",
    )
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--seed", type=int, default=SyntheticOrganization.seed)
    parser.add_argument(
        "--streams",
        type=int,
        default=SyntheticOrganization.stream_count,
        help="usage groups in the organization (10000 for a large org)",
    )
    parser.add_argument(
        "--endpoint-streams",
        type=int,
        default=None,
        help="usage groups of each other usage endpoint (embeddings, images, ...; default: "
        "a few each)",
    )
    parser.add_argument("--projects", type=int, default=SyntheticOrganization.project_count)
    parser.add_argument("--users", type=int, default=SyntheticOrganization.user_count)
    parser.add_argument(
        "--always-active",
        action="store_true",
        help="every usage group has usage every hour (benchmarks)",
    )
    parser.add_argument("--max-results-per-page", type=int, default=10_000)
    parser.add_argument(
        "--page-cache-mib",
        type=int,
        default=0,
        help="serve a repeated request from memory, keeping up to this many MiB (benchmarks)",
    )
    parser.add_argument(
        "--required-key", default=None, help="answer 401 unless this bearer key is sent"
    )
    parser.add_argument(
        "--faults",
        default="[]",
        help='JSON list of faults, e.g. \'[{"kind": "status", "status": 429}]\'',
    )
    parser.add_argument(
        "--anomaly",
        action="append",
        default=[],
        metavar="DAY:PROJECT[:API_KEY_ID]=FACTOR",
        help="plant a spend anomaly: multiply a project's (or one key's) usage and bill that "
        "UTC day, e.g. '2025-06-10:Docs Q&A=6' (a spike) or '2025-06-11:Docs Q&A=0' (a stop); "
        "repeatable",
    )
    args = parser.parse_args(argv)
    try:
        org = SyntheticOrganization(
            seed=args.seed,
            stream_count=args.streams,
            project_count=args.projects,
            user_count=args.users,
            always_active=args.always_active,
            endpoint_stream_count=args.endpoint_streams,
            anomalies=dict(parse_anomaly(spec) for spec in args.anomaly),
        )
    except ValueError as exc:
        parser.error(str(exc))
    simulator = SimulatedAdminAPI(
        org=org,
        port=args.port,
        required_key=args.required_key,
        max_results_per_page=args.max_results_per_page,
        page_cache_mib=args.page_cache_mib,
    )
    for fault in iter_faults(args.faults):
        simulator.faults.add(**fault.__dict__)
    with simulator:
        print(f"simulated Admin API at {simulator.base_url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def backfill_main(argv: list[str] | None = None) -> int:
    """Materialize a range of days without the UI, in chunks of up to 31 days, with progress."""
    import datetime as dt

    import dagster as dg

    from usage_assets.defs.policies import MAX_DAYS_PER_RUN

    parser = argparse.ArgumentParser(
        prog="usage-backfill",
        description=(
            "Fetch, price and reconcile a range of UTC days (inclusive) in this process: usage, "
            "estimated costs and billed costs. Runs are recorded in $DAGSTER_HOME when set."
        ),
    )
    parser.add_argument("first", type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument("last", type=dt.date.fromisoformat, help="last day, YYYY-MM-DD")
    parser.add_argument("--days-per-run", type=int, default=MAX_DAYS_PER_RUN)
    args = parser.parse_args(argv)
    if args.last < args.first:
        parser.error("last is before first")
    if not 1 <= args.days_per_run <= MAX_DAYS_PER_RUN:
        parser.error(f"--days-per-run must be between 1 and {MAX_DAYS_PER_RUN}")
    from usage_assets.definitions import defs

    job = defs().resolve_job_def("usage_daily_job")
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    chunks = []
    start = args.first
    while start <= args.last:
        end = min(start + dt.timedelta(days=args.days_per_run - 1), args.last)
        chunks.append((start, end))
        start = end + dt.timedelta(days=1)
    for number, (start, end) in enumerate(chunks, start=1):
        print(f"[{number}/{len(chunks)}] {start} .. {end} ...", flush=True)
        began = time.monotonic()
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": start.isoformat(),
                "dagster/asset_partition_range_end": end.isoformat(),
            },
            raise_on_error=False,
        )
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            reason = failures[0].message if failures else "see the run's logs"
            print(f"[{number}/{len(chunks)}] failed: {reason}", file=sys.stderr)
            return 1
        print(f"[{number}/{len(chunks)}] done in {time.monotonic() - began:.1f}s", flush=True)
    return 0
