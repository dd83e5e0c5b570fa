"""A day is streamed page by page into its COPY: memory follows the page, not the day.

The simulator runs in its own process, so that only the ingest's own allocations are traced.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, text

from usage_assets.admin_api.transport import AdminAPIClient
from usage_assets.admin_api.usage import COMPLETIONS_USAGE_PATH, GROUP_BY_FIELDS
from usage_assets.defs.usage.ingest import ingest_days, usage_query_for_days
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.usage_days import LoadInfo

from . import processes
from .conftest import free_port

DAY = dt.date(2025, 10, 1)
STREAMS = 1_500
PER_PAGE = 1_000


@pytest.fixture(scope="module")
def busy_simulator() -> Iterator[str]:
    """A simulator with 1,500 groups active every hour, 1,000 results a page, in a subprocess."""
    port = free_port()
    with processes.running(
        [
            str(Path(sys.executable).parent / "usage-simulator"),
            "--port", str(port), "--streams", str(STREAMS), "--always-active",
            "--max-results-per-page", str(PER_PAGE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        process.stdout.readline()  # "simulated Admin API at ..."
        yield f"http://127.0.0.1:{port}/v1"


def page_sizes(base_url: str) -> tuple[list[int], int]:
    """Byte size of every page of the day, fetched directly, and the number of results."""
    query = usage_query_for_days(DAY, DAY + dt.timedelta(days=1), GROUP_BY_FIELDS)
    sizes, results, cursor = [], 0, None
    while True:
        params = query.to_params() + ([("page", cursor)] if cursor else [])
        response = requests.get(base_url + COMPLETIONS_USAGE_PATH, params=params, timeout=60)
        response.raise_for_status()
        sizes.append(len(response.content))
        page = response.json()
        results += sum(len(bucket["results"]) for bucket in page["data"])
        if not page["has_more"]:
            return sizes, results
        cursor = page["next_page"]


def test_a_day_is_ingested_in_memory_of_a_few_pages(engine: Engine, busy_simulator: str) -> None:
    sizes, results = page_sizes(busy_simulator)
    day_bytes, largest = sum(sizes), max(sizes)
    assert day_bytes > 20 * largest  # the day is far bigger than the bound asserted below

    client = AdminAPIClient(busy_simulator, None)
    info = LoadInfo(group_by=GROUP_BY_FIELDS, simulated=True, source_url="t", dagster_run_id=None)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        [summary] = ingest_days(
            client, engine, DAY, DAY + dt.timedelta(days=1), GROUP_BY_FIELDS, info
        )
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    assert summary.row_count == results > STREAMS * 12
    assert client.request_count == len(sizes)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM openai_usage.completions_usage_hourly"))
        assert stored.scalar() == results
    # The page's body (one buffer, reused from page to page), a view of each of its results and
    # one decoded result at a time, plus the COPY's buffers and small change: measured 2.8x
    # (4.4x when the page's text and its whole object tree were held at once). Holding the day
    # would take more than the day's JSON.
    assert peak < 3.5 * largest, f"peak {peak:,} bytes for pages of at most {largest:,}"


@pytest.fixture
def short_statement_timeout(engine: Engine) -> Iterator[None]:
    """Every new connection to the test database gets statement_timeout = 300ms."""
    name = engine.url.database
    with engine.begin() as conn:
        conn.execute(text(f"ALTER DATABASE \"{name}\" SET statement_timeout = '300ms'"))
    engine.dispose()
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET statement_timeout'))
        engine.dispose()


@pytest.mark.usefixtures("short_statement_timeout")
def test_slow_pages_do_not_trip_a_server_statement_timeout(engine: Engine) -> None:
    with engine.connect() as conn:  # the setting is live for new sessions
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "300ms"
    with SimulatedAdminAPI(max_results_per_page=40) as sim:
        sim.faults.add("slow", delay=0.0, times=1)
        sim.faults.add("slow", delay=0.8, times=2)  # the day's COPY waits 1.6 s for pages
        client = AdminAPIClient(sim.base_url, None)
        info = LoadInfo(
            group_by=("project_id",), simulated=True, source_url="t", dagster_run_id=None
        )
        [summary] = ingest_days(
            client, engine, DAY, DAY + dt.timedelta(days=1), ("project_id",), info
        )
        assert sim.usage_requests() > 3
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM openai_usage.completions_usage_hourly"))
        assert stored.scalar() == summary.row_count > 40
