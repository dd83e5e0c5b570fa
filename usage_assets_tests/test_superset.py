"""End to end, in a real browser: the Superset dashboard shows the database's numbers.

Three simulated days are materialized into a test database (usage, costs, the bill, the
allocation, names) with two budgets; then `python -m usage_assets.bi.superset setup` (what `make
superset` runs: read-only login, Superset's metadata, admin user, dashboard import) and `serve` on
a free port, in a temporary data directory. Headless Chromium logs in as the admin and opens the
dashboard; every chart must show what SQL over the same database says: the Big Numbers and the
tables by their text, the two ECharts canvases by the data the page fetched for them. Then the
Project filter must narrow every chart to one project: each chart's query applies it (none
rejects it), and each shows what SQL says for that project alone. The per-project charts read
`v_cost_allocation_project_daily`, the others their own views (test_superset_bundle.py).

Superset runs from its own virtual environment, `.superset-venv` (`make superset-install`, a
prerequisite of `make test`); Chromium is Debian's (`scripts/install-browser.sh`), driven by
Playwright through its executable path, as in test_browser.py.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import psycopg
import pytest
from playwright.sync_api import Locator, Page, Response, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from usage_assets import settings
from usage_assets.bi import superset
from usage_assets.defs.attribution.assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.chargeback.allocation import cost_allocation_daily
from usage_assets.defs.chargeback.budgets import BUDGET_ASSETS
from usage_assets.defs.names.assets import NAMES_ASSETS
from usage_assets.defs.resources import BudgetsResource
from usage_assets.defs.usage.assets import USAGE_ASSETS
from usage_assets.simulator.server import SimulatedAdminAPI

from . import processes
from .conftest import CONFIG_VARIABLES, free_port, libpq
from .test_browser import CHROMIUM, CHROMIUM_ARGS
from .test_cost_assets import resources

pytestmark = pytest.mark.browser

FIRST, LAST = dt.date(2025, 11, 18), dt.date(2025, 11, 20)
PARTITIONED = [
    *USAGE_ASSETS,
    project_daily_costs,
    usage_daily_costs,
    project_daily_cost_summary,
    costs_daily,
    cost_allocation_daily,
]
S = "openai_usage"
#: The views behind the charts (test_superset_bundle.CHART_VIEWS says which chart reads which).
FINE = f"{S}.v_cost_allocation_daily"
PER_PROJECT = f"{S}.v_cost_allocation_project_daily"
PYTHON = Path(sys.executable)
#: `setup` on a fresh data directory: about a minute on a quiet 2-core machine, three at the
#: heaviest load seen (Superset's metadata migrations and `superset init` are most of it).
SETUP_TIMEOUT = 600.0
#: From `serve` to Superset answering /health (~10 s idle).
SERVE_TIMEOUT = 180.0
#: Per expectation in the browser: the dashboard's nine chart queries share one gunicorn worker.
STEP_TIMEOUT_MS = 90_000
#: No request leaves the machine (the front end's telemetry pixel would wait on DNS): every
#: host but loopback fails to resolve, in Chromium itself.
NO_OUTSIDE_HOSTS = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
CHARTS = {
    "Billed spend",
    "Estimated spend",
    "Spend by project and day",
    "Spend per project",
    "Top models",
    "Spend per API key",
    "Estimated vs billed per day",
    "Estimated vs billed per project",
    "Budget status",
}

T = TypeVar("T")


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(message: str) -> None:
    if _on_ci():
        pytest.fail(message)
    pytest.skip(message)


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _poll(what: str, timeout: float, probe: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


# --------------------------------------------------------------------------- the data


@pytest.fixture
def usage_data(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI, tmp_path: Path
) -> Engine:
    """Three simulated days, allocated, with names, and two budgets: one project far over, one
    API key in warning."""
    base = resources(simulator, database_url)
    assert dg.materialize(NAMES_ASSETS, resources=base).success
    run = (
        dg.Definitions(
            assets=PARTITIONED,
            jobs=[dg.define_asset_job("days", selection=PARTITIONED)],
            resources=base,
        )
        .resolve_job_def("days")
        .execute_in_process(
            tags={
                "dagster/asset_partition_range_start": FIRST.isoformat(),
                "dagster/asset_partition_range_end": LAST.isoformat(),
            },
            instance=dg.DagsterInstance.ephemeral(),
        )
    )
    assert run.success
    with engine.connect() as conn:
        project, project_usd = conn.execute(
            text(
                f"SELECT project_id, sum(allocated_usd) FROM {S}.cost_allocation_daily "
                "GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
            )
        ).one()
        key_project, key, key_usd = conn.execute(
            text(
                f"SELECT project_id, api_key_id, sum(allocated_usd) FROM {S}.cost_allocation_daily "
                "WHERE api_key_id IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1"
            )
        ).one()
    budget_file = tmp_path / "budgets.yaml"
    budget_file.write_text(
        "budgets:\n"
        f"  - project: {project}\n    monthly_usd: {project_usd / 2:.2f}\n"
        f"  - project: {key_project}\n    api_key: {key}\n"
        f"    monthly_usd: {key_usd / Decimal('0.9'):.2f}\n"
    )
    budget_resources = {**base, "budget_file": BudgetsResource(budgets_file=str(budget_file))}
    assert dg.materialize(BUDGET_ASSETS, resources=budget_resources).success
    return engine


# --------------------------------------------------------------------------- Superset


@dataclass
class SetupRun:
    """`python -m usage_assets.bi.superset setup`, started (it runs while the data loads)."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    data_dir: Path
    log: Path
    started: float


@dataclass
class Superset:
    url: str
    log: Path
    admin_password: str = field(repr=False)


def _answers(url: str, process: subprocess.Popen[bytes], log: Path) -> bool | None:
    if process.poll() is not None:
        raise RuntimeError(f"`serve` exited with {process.returncode}:\n{_tail(log)}")
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return True if response.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def _drop_role(database_url: str, role: str) -> None:
    server = libpq(make_url(database_url).set(database="postgres").render_as_string(False))
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def superset_setup(database_url: str, tmp_path: Path) -> Iterator[SetupRun]:
    """Setup against the (migrated) test database, in a temporary data directory. It needs no
    usage rows, so it starts before they load; stopped, and its role dropped, afterwards."""
    if not (superset.VENV / "bin" / "gunicorn").exists():
        _missing(f"{superset.VENV} is missing: run `make superset-install`")
    data_dir = tmp_path / "usage_data"
    # A role of this test's own (roles belong to the server, which may be a shared one).
    role = f"usage_superset_test_{uuid.uuid4().hex[:8]}"
    env = {name: value for name, value in os.environ.items() if name not in CONFIG_VARIABLES}
    env |= {
        "USAGE_DATA_DIR": str(data_dir),
        "USAGE_DATABASE_URL": database_url,
        superset.ROLE_VARIABLE: role,
        # Set, and empty: a developer's .env cannot point the test at another database (the
        # settings load .env without overriding what the environment has).
        superset.URL_VARIABLE: "",
    }
    log = tmp_path / "superset-setup.log"
    started = time.monotonic()
    try:
        with open(log, "wb") as output:
            process = processes.spawn(
                [str(PYTHON), "-m", "usage_assets.bi.superset", "setup"],
                cwd=settings.PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            yield SetupRun(process, env, data_dir, log, started)
        finally:
            processes.stop(process)
    finally:
        _drop_role(database_url, role)


@pytest.fixture
def superset_server(superset_setup: SetupRun, usage_data: Engine) -> Iterator[Superset]:
    """Once setup is done (and the data loaded), `serve` on a free port; stopped afterwards."""
    setup = superset_setup
    remaining = SETUP_TIMEOUT - (time.monotonic() - setup.started)
    try:
        returncode = setup.process.wait(timeout=max(remaining, 1))
    except subprocess.TimeoutExpired:
        pytest.fail(f"setup took over {SETUP_TIMEOUT:.0f} s:\n{_tail(setup.log)}")
    assert returncode == 0, f"setup failed ({returncode}):\n{_tail(setup.log)}"
    print(f"superset setup (while the data loaded): {time.monotonic() - setup.started:.1f} s")

    started = time.monotonic()
    port = free_port()
    log = setup.log.with_name("superset-serve.log")
    with open(log, "wb") as output:
        process = processes.spawn(
            [str(PYTHON), "-m", "usage_assets.bi.superset", "serve", "--port", str(port)],
            cwd=settings.PROJECT_ROOT,
            env=setup.env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _poll("Superset to answer", SERVE_TIMEOUT, lambda: _answers(url, process, log))
        print(f"superset serve to /health: {time.monotonic() - started:.1f} s")
        password = superset.admin_password_file(setup.data_dir).read_text().strip()
        yield Superset(url=url, admin_password=password, log=log)
    finally:
        processes.stop(process)


@pytest.fixture
def page() -> Iterator[Page]:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: run scripts/install-browser.sh")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, NO_OUTSIDE_HOSTS]
        )
        try:
            # Tall enough for the whole dashboard: every chart renders without scrolling.
            context = browser.new_context(viewport={"width": 1600, "height": 2600})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


# --------------------------------------------------------------------------- what SQL says


def usd(value: Any) -> str:
    """A number as the dashboard's d3 format `$,.2f` shows it."""
    return f"${float(value):,.2f}"


def signed_usd(value: Any) -> str:
    """d3 `+$,.2f`: the sign first, then the dollar."""
    number = float(value)
    return f"{'-' if number < 0 else '+'}${abs(number):,.2f}"


def rows(engine: Engine, query: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(query), params).all()]


def where(project: str | None) -> str:
    """The Project filter in SQL: every row, or the rows of one project (by name)."""
    return "WHERE true" if project is None else "WHERE project_name = :project"


def expected_tables(engine: Engine, project: str | None = None) -> dict[str, list[list[str]]]:
    """Each table chart's rows as text, from SQL over the views the datasets use (`project`:
    as the Project filter narrows them to that project)."""
    w = where(project)
    per_project = rows(
        engine,
        f"SELECT project_name, sum(billed_usd) FROM {PER_PROJECT} {w} GROUP BY 1 ORDER BY 2 DESC",
        project=project,
    )
    models = rows(
        engine,
        "SELECT COALESCE(model, '(' || replace(usage_kind, '_', ' ') || ')'), sum(billed_usd) "
        f"FROM {FINE} {w} GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
        project=project,
    )
    keys = rows(
        engine,
        "SELECT project_name, COALESCE(api_key_name, api_key_id, '(no key)'), api_key_redacted, "
        f"sum(billed_usd) FROM {FINE} {w} GROUP BY 1, 2, 3 ORDER BY 4 DESC",
        project=project,
    )
    gaps = rows(
        engine,
        "SELECT project_name, sum(estimated_usd), sum(billed_usd), "
        "sum(estimated_usd) - sum(billed_usd), "
        "(sum(estimated_usd) - sum(billed_usd)) / NULLIF(sum(billed_usd), 0) "
        f"FROM {S}.v_estimated_vs_billed {w} GROUP BY 1 ORDER BY 3 DESC",
        project=project,
    )
    budgets = rows(
        engine,
        "SELECT to_char(month, 'YYYY-MM'), concat_ws(' / ', COALESCE(project_name, project_id), "
        "COALESCE(api_key_name, api_key_id), COALESCE(user_name, user_email, user_id)), "
        "monthly_usd, spend_to_date_usd, percent_used, forecast_usd, forecast_percent, status "
        f"FROM {S}.v_budget_status {w} ORDER BY month DESC, percent_used DESC, 2",
        project=project,
    )
    total = float(sum(v for _, v in per_project))
    return {
        "Spend per project": [[name, usd(v), f"{float(v) / total:.3%}"] for name, v in per_project],
        "Top models": [[name, usd(v)] for name, v in models],
        "Spend per API key": [[p, k, r or "N/A", usd(v)] for p, k, r, v in keys],
        "Estimated vs billed per project": [
            [name, usd(e), usd(b), signed_usd(d), f"{float(r):+.2%}"] for name, e, b, d, r in gaps
        ],
        "Budget status": [
            [m, scope, usd(b), usd(spent), f"{float(used):,.2f}", usd(f), f"{float(fp):,.2f}", st]
            for m, scope, b, spent, used, f, fp, st in budgets
        ],
    }  # fmt: skip


# --------------------------------------------------------------------------- the browser


#: One attempt to sign in; the whole of it may take STEP_TIMEOUT_MS.
LOGIN_ATTEMPT_MS = 20_000


def _log_in(page: Page, server: Superset) -> None:
    """Sign in as the admin. The login page is a React app: on a busy machine it can render
    (again) after the fields were filled, empty them and drop the click, so the fields are
    checked before the click and the sign-in is tried again until the deadline."""
    deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
    page.goto(f"{server.url}/login/")
    while True:
        try:
            username, password = page.get_by_label("Username"), page.get_by_label("Password")
            username.fill(superset.ADMIN)
            password.fill(server.admin_password)
            expect(username).to_have_value(superset.ADMIN, timeout=LOGIN_ATTEMPT_MS)
            expect(password).to_have_value(server.admin_password, timeout=LOGIN_ATTEMPT_MS)
            page.get_by_role("button", name="Sign in").click(timeout=LOGIN_ATTEMPT_MS)
            page.wait_for_url(lambda url: "/login" not in url, timeout=LOGIN_ATTEMPT_MS)
            return
        except (PlaywrightTimeoutError, AssertionError):
            if time.monotonic() > deadline or "/login" not in page.url:
                raise


def _table_text(chart: Locator) -> tuple[list[list[str]], list[list[str]]]:
    """A table chart's body rows and footer rows as cell texts (the plugin draws header, body
    and totals as separate <table>s)."""
    body, foot = chart.evaluate(
        """c => [
            [...c.querySelectorAll('tbody tr')].map(r => [...r.querySelectorAll('td')]
                .map(d => d.innerText.trim())).filter(r => r.length > 0),
            [...c.querySelectorAll('tfoot tr')].map(r => [...r.querySelectorAll('td, th')]
                .map(d => d.innerText.trim())),
        ]"""
    )
    minus = str.maketrans({"\u2212": "-"})
    return (
        [[cell.translate(minus) for cell in row] for row in body],
        [[cell.translate(minus) for cell in row] for row in foot],
    )


def _chart(page: Page, name: str) -> Locator:
    return page.locator(f'[data-test="chart-grid-component"][data-test-chart-name="{name}"]')


def test_dashboard_shows_the_databases_numbers(
    superset_server: Superset, usage_data: Engine, page: Page, tmp_path: Path
) -> None:
    # `page` last: Playwright's event loop must not be running while Dagster materializes.
    engine = usage_data
    [(billed, fine_billed, bill, estimated)] = rows(
        engine,
        f"SELECT (SELECT sum(billed_usd) FROM {PER_PROJECT}), "
        f"(SELECT sum(billed_usd) FROM {FINE}), "
        # The view shows micro-dollars: each billed amount's shares sum to it rounded to 6
        # decimals (README "BI tools"), so the bill here is rounded the same way.
        f"(SELECT sum(round(usd, 6)) FROM (SELECT sum(amount_usd) AS usd FROM {S}.costs_daily "
        "  GROUP BY organization, usage_date, project_id, line_item, api_key_id, user_id) b), "
        f"(SELECT sum(estimated_usd) FROM {S}.v_estimated_vs_billed)",
    )
    # The allocation is the bill, to the micro-dollar, summed per project or at its own grain.
    assert billed == fine_billed == bill > 0
    tables = expected_tables(engine)
    assert len(tables["Budget status"]) >= 2 and len(tables["Spend per API key"]) > 7

    data: dict[int, dict[str, Any]] = {}  # each chart's latest data
    answers: list[tuple[int, dict[str, Any]]] = []  # every chart data answer, in order

    def on_response(response: Response) -> None:
        request = response.request
        if request.method == "POST" and "/api/v1/chart/data" in response.url:
            form_data = (request.post_data_json or {}).get("form_data") or {}
            if "slice_id" in form_data and response.ok:
                data[int(form_data["slice_id"])] = response.json()
                answers.append((int(form_data["slice_id"]), data[int(form_data["slice_id"])]))

    page.on("response", on_response)
    started = time.monotonic()
    try:
        _log_in(page, superset_server)
        page.goto(f"{superset_server.url}{superset.DASHBOARD_PATH}")
        expect(page.get_by_text("OpenAI usage and spend").first).to_be_visible(
            timeout=STEP_TIMEOUT_MS
        )
        charts = page.locator('[data-test="chart-grid-component"]')
        expect(charts).to_have_count(len(CHARTS), timeout=STEP_TIMEOUT_MS)
        ids = {
            charts.nth(i).get_attribute("data-test-chart-name"): int(
                charts.nth(i).get_attribute("data-test-chart-id") or 0
            )
            for i in range(len(CHARTS))
        }
        assert set(ids) == CHARTS

        # The Big Numbers.
        total = _chart(page, "Billed spend").locator(".header-line")
        expect(total).to_have_text(usd(billed), timeout=STEP_TIMEOUT_MS)
        expect(_chart(page, "Estimated spend").locator(".header-line")).to_have_text(
            usd(estimated), timeout=STEP_TIMEOUT_MS
        )
        # The tables, row by row, in the dashboard's order.
        for name, expected in tables.items():
            chart = _chart(page, name)
            expect(chart.locator("tbody tr td").first).to_be_visible(timeout=STEP_TIMEOUT_MS)
            body, foot = _table_text(chart)
            assert body == expected, f"{name}: the browser shows {body}, SQL says {expected}"
            if name == "Spend per project":
                assert foot == [["Summary", usd(billed), ""]], foot
        # The canvases: drawn, from the data the page fetched, which is SQL's.
        for name in ("Spend by project and day", "Estimated vs billed per day"):
            expect(_chart(page, name).locator("canvas").first).to_be_visible(
                timeout=STEP_TIMEOUT_MS
            )
        series = [ids["Spend by project and day"], ids["Estimated vs billed per day"]]
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        while not set(series) <= set(data):  # the responses are read as the page is served
            assert time.monotonic() < deadline, f"no chart data for {series} (have {set(data)})"
            page.wait_for_timeout(200)
        _compare_time_series(engine, data[series[0]], data[series[1]])

        # The Project filter narrows every chart: the biggest project alone.
        top, top_usd, _ = tables["Spend per project"][0]
        [(top_estimated,)] = rows(
            engine,
            f"SELECT sum(estimated_usd) FROM {S}.v_estimated_vs_billed {where(top)}",
            project=top,
        )
        before = len(answers)
        project = page.locator('[data-test="filter-bar"]').get_by_role("combobox")
        project.click()
        project.fill(top)
        project.press("Enter")
        page.get_by_role("button", name="Apply filters").click()
        # Every chart asks again, and its query applies the filter: none rejects it.
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        while not set(ids.values()) <= {slice_id for slice_id, _ in answers[before:]}:
            asked = {slice_id for slice_id, _ in answers[before:]}
            assert time.monotonic() < deadline, f"no filtered data for {set(ids.values()) - asked}"
            page.wait_for_timeout(200)
        names = {slice_id: name for name, slice_id in ids.items()}
        for slice_id, answer in answers[before:]:
            for query in answer["result"]:
                applied = {f.get("column") for f in query["applied_filters"]}
                rejected = {f.get("column") for f in query["rejected_filters"]}
                assert "project_name" in applied, (names[slice_id], query["applied_filters"])
                assert "project_name" not in rejected, (names[slice_id], rejected)
        # ... and shows the project's numbers.
        expect(total).to_have_text(top_usd, timeout=STEP_TIMEOUT_MS)
        expect(_chart(page, "Estimated spend").locator(".header-line")).to_have_text(
            usd(top_estimated), timeout=STEP_TIMEOUT_MS
        )
        for name, expected in expected_tables(engine, project=top).items():
            body = _wait_for_rows(page, _chart(page, name), expected)
            assert body == expected, (
                f"{name} ({top}): the browser shows {body}, SQL says {expected}"
            )
        chart = _chart(page, "Spend per project")
        assert _table_text(chart) == ([[top, top_usd, "100.000%"]], [["Summary", top_usd, ""]])
        _compare_time_series(engine, data[series[0]], data[series[1]], project=top)
    except Exception as failure:
        screenshot = tmp_path / "superset-failure.png"
        try:
            page.screenshot(path=str(screenshot), full_page=True)
        except Exception as error:  # the browser itself may be what failed
            screenshot = Path(f"(no screenshot: {error})")
        pytest.fail(
            f"{type(failure).__name__}: {failure}\nscreenshot: {screenshot}\npage: {page.url}\n"
            f"Superset's log ({superset_server.log}), last lines:\n{_tail(superset_server.log)}"
        )
    print(f"superset dashboard, login to every chart checked: {time.monotonic() - started:.1f} s")


def _wait_for_rows(page: Page, chart: Locator, expected: list[list[str]]) -> list[list[str]]:
    """The table's body rows once they are `expected`, or as they are at the deadline (a
    filtered table may keep its row count, so its rows are read until they change)."""
    deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
    while True:
        body, _ = _table_text(chart)
        if body == expected or time.monotonic() > deadline:
            return body
        page.wait_for_timeout(200)


def _day(epoch_ms: float) -> dt.date:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).date()


def _compare_time_series(
    engine: Engine,
    spend_by_day: dict[str, Any],
    estimated_vs_billed: dict[str, Any],
    project: str | None = None,
) -> None:
    """The two ECharts series, value by value (floats in JSON, numeric in PostgreSQL); with
    `project`, as the Project filter narrows them."""
    w = where(project)
    expected = {
        (day, name): float(v)
        for day, name, v in rows(
            engine,
            f"SELECT usage_date, project_name, sum(billed_usd) FROM {PER_PROJECT} {w} "
            "GROUP BY 1, 2",
            project=project,
        )
    }
    shown = {
        (_day(row["usage_date"]), name): value
        for row in spend_by_day["result"][0]["data"]
        for name, value in row.items()
        if name != "usage_date" and value is not None
    }
    assert shown.keys() == expected.keys()
    assert all(shown[k] == pytest.approx(v, rel=1e-9) for k, v in expected.items()), shown

    expected_days = {
        day: (float(e), float(b))
        for day, e, b in rows(
            engine,
            "SELECT usage_date, sum(estimated_usd), sum(billed_usd) "
            f"FROM {S}.v_estimated_vs_billed {w} GROUP BY 1",
            project=project,
        )
    }
    shown_days = {
        _day(row["usage_date"]): (row["estimated_usd"], row["billed_usd"])
        for row in estimated_vs_billed["result"][0]["data"]
    }
    assert shown_days.keys() == expected_days.keys() == {FIRST, FIRST + dt.timedelta(1), LAST}
    for day, (e, b) in expected_days.items():
        assert shown_days[day] == (pytest.approx(e, rel=1e-9), pytest.approx(b, rel=1e-9))
