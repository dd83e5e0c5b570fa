"""End to end, in a real browser: the quickstart's Dagster UI launches a backfill, rows land.

The quickstart as `make dev` runs it (embedded PostgreSQL, `usage-db start` and `migrate`, then
`dg dev`; no admin key, so the built-in simulator serves the data), driven by headless Chromium
the way a user drives it: Catalog -> completions_usage_hourly -> Materialize -> type a range of
days -> Launch backfill. Then the rows in PostgreSQL must be exactly what the simulator serves.

Chromium is Debian's `chromium` package (`scripts/install-browser.sh`, which CI runs), driven by
Playwright through its executable path: no browser download.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from dotenv import dotenv_values
from playwright.sync_api import Locator, Page, expect, sync_playwright

from usage_assets import settings
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.warehouse import embedded as embedded_db

from . import processes
from .conftest import CONFIG_VARIABLES, free_port

pytestmark = pytest.mark.browser

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags Chromium's own connections (updates, sync, QUIC
#: probes) are refused by a closed network and slow everything down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ASSET = "completions_usage_hourly"
#: A few past days, well after the default USAGE_START_DATE.
DAYS = [dt.date(2025, 11, 18), dt.date(2025, 11, 19), dt.date(2025, 11, 20)]
UI_TIMEOUT = 120.0
ROWS_TIMEOUT = 180.0
#: The sensor's check run starts a process per check (eleven): minutes on a loaded machine.
CHECKS_TIMEOUT = 420.0
#: Per click or expectation in the UI (Playwright's `expect` defaults to 5 s: too short when
#: the dialog's partition data takes a while on a loaded machine).
STEP_TIMEOUT_MS = 30_000
#: `dg dev` ignores SIGTERM (and SIGINT) for good; how long it gets before SIGKILL.
TERMINATE_GRACE = 3.0

T = TypeVar("T")


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _run(*command: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=settings.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"`{' '.join(command)}` failed:\n{done.stdout}\n{done.stderr}"


def _poll(what: str, timeout: float, probe: Callable[[], T | None], interval: float = 1) -> T:
    """`probe()` until it returns something other than None; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@dataclass
class Quickstart:
    """The running quickstart: Dagster UI and embedded PostgreSQL."""

    url: str
    server: embedded_db.EmbeddedServer
    log: Path


def _graphql(url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body: dict[str, Any] = json.load(response)
    return body.get("data") or {}


LOCATIONS_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""


def _code_location_loaded(url: str, process: subprocess.Popen[bytes], log: Path) -> bool | None:
    """True once the UI answers and the code location is loaded; None while it is not yet."""
    if process.poll() is not None:
        raise RuntimeError(f"`dg dev` exited with {process.returncode}:\n{_tail(log)}")
    try:
        workspace = _graphql(url, LOCATIONS_QUERY).get("workspaceOrError") or {}
    except (urllib.error.URLError, OSError, ValueError):
        return None
    for entry in workspace.get("locationEntries") or []:
        if entry["loadStatus"] != "LOADED":
            continue
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            raise RuntimeError(f"code location {entry['name']} failed: {loaded['message']}")
        return True
    return None


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[Quickstart]:
    """`make dev` in a temporary data directory, on free ports, with the simulator."""
    dotenv = settings.PROJECT_ROOT / ".env"
    overridden = sorted(set(dotenv_values(dotenv)) & set(CONFIG_VARIABLES))
    if overridden:
        # `dg dev` loads the repository's .env over the environment it is given: the run would
        # use the developer's key or database instead of the simulator and a throwaway server.
        message = f"{dotenv} sets {', '.join(overridden)}, which `dg dev` would use"
        if _on_ci():
            pytest.fail(message)
        pytest.skip(message)

    data_dir = tmp_path / "usage_data"
    dagster_home = data_dir / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(
        settings.PROJECT_ROOT / "deploy" / "dagster.quickstart.yaml", dagster_home / "dagster.yaml"
    )
    # Dagster's sockets and workspace files; a short path (socket paths are limited to ~100
    # characters), removed afterwards since a killed `dg dev` cannot clean up after itself.
    scratch = Path(tempfile.mkdtemp(prefix="usage-e2e-"))
    server = embedded_db.EmbeddedServer(data_dir, free_port())
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name not in CONFIG_VARIABLES}
    env |= {
        "USAGE_DATA_DIR": str(data_dir),
        "USAGE_EMBEDDED_PG_PORT": str(server.port),
        "DAGSTER_HOME": str(dagster_home),
        "TMPDIR": str(scratch),
    }
    log = tmp_path / "dg-dev.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        _run("usage-db", "start", env=env)
        _run("usage-db", "migrate", env=env)
        with open(log, "wb") as output:
            # `dg dev` ignores SIGTERM and SIGINT itself; processes.stop() ends with SIGKILL for
            # its whole group and every descendant (webserver, daemon, code servers, runs).
            process = processes.spawn(
                [str(BIN / "dg"), "dev", "--host", "127.0.0.1", "--port", str(port)],
                cwd=settings.PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        started = process
        _poll(
            "the Dagster UI and its code location",
            UI_TIMEOUT,
            lambda: _code_location_loaded(url, started, log),
        )
        yield Quickstart(url=url, server=server, log=log)
    finally:
        try:
            if process is not None:
                processes.stop(process, grace=TERMINATE_GRACE)
        finally:
            try:
                _run("usage-db", "stop", env=env)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def page() -> Iterator[Page]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run scripts/install-browser.sh"
        if _on_ci():
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def _expected_rows(day: dt.date) -> int:
    """How many grouped results the simulator serves for one UTC day."""
    organization = SyntheticOrganization()
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    return sum(len(organization.hour_results(start + hour * 3600)) for hour in range(24))


def _loaded_days(dsn: str) -> dict[dt.date, tuple[int, bool]] | None:
    """usage_loads' (row_count, simulated) per day once every day of DAYS is loaded."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        loads = {
            day: (rows, simulated)
            for day, rows, simulated in conn.execute(
                "SELECT usage_date, row_count, simulated FROM openai_usage.usage_loads"
            ).fetchall()
        }
    return loads if set(DAYS) <= set(loads) else None


def _rows_per_day(dsn: str) -> dict[dt.date, int]:
    with psycopg.connect(dsn) as conn:
        return dict(
            conn.execute(
                "SELECT (bucket_start AT TIME ZONE 'UTC')::date, count(*)::int "
                "FROM openai_usage.completions_usage_hourly GROUP BY 1"
            ).fetchall()
        )


CHECKS_QUERY = """
{ assetNodes { assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name
        executionForLatestMaterialization { status evaluation { success severity
            metadataEntries { label ... on TextMetadataEntry { text } } } } } } } } }
"""


def _latest_check_executions(url: str) -> dict[str, dict[str, Any]]:
    """Each asset check's latest execution the UI shows, by "asset/check" (executed ones only)."""
    found: dict[str, dict[str, Any]] = {}
    for node in _graphql(url, CHECKS_QUERY).get("assetNodes") or []:
        for check in (node.get("assetChecksOrError") or {}).get("checks") or []:
            execution = check.get("executionForLatestMaterialization")
            if execution:
                found[f"{'/'.join(node['assetKey']['path'])}/{check['name']}"] = execution
    return found


def _yesterday_landed_resolved(url: str) -> dict[str, dict[str, Any]] | None:
    """The checks once the yesterday_landed sensor's first evaluation (at startup) is done."""
    executions = _latest_check_executions(url)
    key = f"{ASSET}/yesterday_landed"
    if key in executions and executions[key]["status"] != "IN_PROGRESS":
        return executions
    return None


def _launch_backfill_from_the_ui(page: Page, url: str) -> None:
    # A fresh DAGSTER_HOME greets the first visitor with a community sign-up dialog. It opens
    # a moment after the page, over whatever is open then, so wait for it and Skip it first;
    # the UI asks the server whether to show it, and so do we.
    welcome_expected = _graphql(url, "{ shouldShowNux }").get("shouldShowNux") is True
    page.goto(f"{url}/assets")
    if welcome_expected:
        welcome = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
        welcome.get_by_role("button", name="Skip").click()
        expect(welcome).to_be_hidden(timeout=STEP_TIMEOUT_MS)

    page.get_by_role("link", name=ASSET).first.click()
    page.wait_for_url(f"**/assets/{ASSET}*")

    page.get_by_role("button", name="Materialize").first.click()
    dialog: Locator = page.get_by_role("dialog").filter(has_text=f"materialize {ASSET}")
    expect(dialog).to_be_visible(timeout=STEP_TIMEOUT_MS)
    # The dialog offers the last 90 days first; the days we want are older.
    show_all = dialog.get_by_text("Show all partitions")
    partitions = dialog.get_by_role("textbox")
    expect(partitions).to_be_visible(timeout=STEP_TIMEOUT_MS)
    if show_all.is_visible():
        show_all.click()
    partitions.click()
    partitions.press_sequentially(f"[{DAYS[0]}...{DAYS[-1]}]")
    partitions.press("Enter")  # the field applies what was typed on Enter (or blur)
    expect(dialog.get_by_text(f"{len(DAYS)} partitions", exact=True)).to_be_visible(
        timeout=STEP_TIMEOUT_MS
    )

    dialog.get_by_role("button", name="Launch backfill").click()
    expect(page.get_by_text("Created backfill").first).to_be_visible(timeout=STEP_TIMEOUT_MS)


def test_backfill_launched_in_the_browser_lands_in_postgres(
    page: Page, quickstart: Quickstart, tmp_path: Path
) -> None:
    started = time.monotonic()
    try:
        _launch_backfill_from_the_ui(page, quickstart.url)
        loads = _poll(
            f"usage_loads to have {DAYS[0]}..{DAYS[-1]}",
            ROWS_TIMEOUT,
            lambda: _loaded_days(quickstart.server.dsn()),
            interval=2,
        )
        rows = _rows_per_day(quickstart.server.dsn())
        expected = {day: _expected_rows(day) for day in DAYS}
        # Exactly the typed range: not the days around it. (Other days may load by themselves:
        # schedules and sensors of the code location run in `dg dev` too.)
        outside = {DAYS[0] - dt.timedelta(days=1), DAYS[-1] + dt.timedelta(days=1)}
        assert not outside & set(loads), f"the backfill loaded days outside the range: {loads}"
        assert {day: rows.get(day) for day in DAYS} == expected
        assert {day: loads[day] for day in DAYS} == {day: (n, True) for day, n in expected.items()}
        # The first screen is healthy: a new instance's yesterday_landed passes and says why
        # (nothing could have landed yesterday yet); no check the UI shows has failed.
        checks = _poll(
            "the yesterday_landed sensor's first evaluation",
            CHECKS_TIMEOUT,
            lambda: _yesterday_landed_resolved(quickstart.url),
            interval=2,
        )
        freshness = checks[f"{ASSET}/yesterday_landed"]
        states = {e["label"]: e.get("text") for e in freshness["evaluation"]["metadataEntries"]}
        assert freshness["status"] == "SUCCEEDED", freshness
        assert states["state"] == "not due: new instance" and "backfill" in states["why"]
        failed = {
            key: e for key, e in checks.items() if e["status"] not in ("SUCCEEDED", "IN_PROGRESS")
        }
        assert not failed, f"checks failed on the first screen: {failed}"
    except Exception as failure:
        screenshot = tmp_path / "browser-failure.png"
        try:
            page.screenshot(path=str(screenshot), full_page=True)
        except Exception as error:  # the browser itself may be what failed
            screenshot = Path(f"(no screenshot: {error})")
        pytest.fail(
            f"{type(failure).__name__}: {failure}\nscreenshot: {screenshot}\n"
            f"page: {page.url}\n`dg dev` log ({quickstart.log}), last lines:\n"
            f"{_tail(quickstart.log)}"
        )
    print(f"UI backfill to rows in PostgreSQL: {time.monotonic() - started:.1f} s")
