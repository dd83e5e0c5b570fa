"""Payloads PostgreSQL cannot store: refused clearly and permanently, before anything is
committed, or (for fields the client does not know) kept in a form jsonb accepts; and names
that would break a Markdown table in the metadata.

Through the real assets, the simulator over loopback HTTP and a real PostgreSQL, plus unit
checks of the normalizer and the writers' safety net.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from usage_assets.admin_api.rows import DaySummary, normalize_result
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.names.assets import openai_projects
from usage_assets.defs.names.ingest import project_rows, user_rows
from usage_assets.defs.resources import PricingResource, UsageDatabase
from usage_assets.errors import PayloadError
from usage_assets.pricing.attribution import Gap, gaps_markdown
from usage_assets.simulator.organization import SyntheticOrganization
from usage_assets.simulator.server import SimulatedAdminAPI
from usage_assets.warehouse.models import (
    DIMENSIONS,
    OPTIONAL_METRICS,
    REQUIRED_METRICS,
    USAGE_COPY_COLUMNS,
    Project,
)
from usage_assets.warehouse.replace import replace_table
from usage_assets.warehouse.usage_days import LoadInfo, replace_day
from usage_assets_tests.test_ingest import DAY, admin_for, table_rows
from usage_assets_tests.test_ingest import materialize as materialize_usage
from usage_assets_tests.test_normalize import BUCKET, sample_result

from .conftest import day_reports

BUCKET_TIME = "2025-06-02T10:00:00+00:00"  # test_normalize.BUCKET
FIRST_BUCKET = "2025-11-20T00:00:00+00:00"  # the first hour of test_ingest.DAY
HOSTILE_NAME = "a|b <script>x</script>\nc"
#: HOSTILE_NAME as one Markdown table cell.
ESCAPED_NAME = "a\\|b &lt;script&gt;x&lt;/script&gt; c"
BIGINT_MAX = 2**63 - 1  # PostgreSQL's bigint
NUL_TEXT = "\\u0000"  # the six characters a NUL is kept as in the `result` JSON


def permanent_failure(result: dg.ExecuteInProcessResult) -> str:
    """The step's failure description, asserting it is the non-retryable Failure that
    `policies.permanent_errors_fail_fast` raises (a raw error would be left to the retry)."""
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a step failure"
    data = failures[0].step_failure_data
    assert data.user_failure_data is not None, data.error  # a dg.Failure, not a raw error
    description = data.user_failure_data.description or ""
    assert description.startswith("PayloadError: "), description
    return description


# --------------------------------------------------------------------------- the normalizer


@pytest.mark.parametrize("name", [*REQUIRED_METRICS, *OPTIONAL_METRICS])
def test_a_count_beyond_bigint_is_refused_naming_bucket_result_and_field(name: str) -> None:
    assert normalize_result(sample_result(**{name: BIGINT_MAX}), BUCKET, 0)  # the largest fits
    with pytest.raises(PayloadError) as excinfo:
        normalize_result(sample_result(**{name: BIGINT_MAX + 1}), BUCKET, 4)
    message = str(excinfo.value)
    assert BUCKET_TIME in message and "#4" in message and f"{name}=" in message
    assert "bigint" in message


@pytest.mark.parametrize("name", [d for d in DIMENSIONS if d != "batch"])
def test_a_nul_in_a_dimension_is_refused_naming_bucket_result_and_field(name: str) -> None:
    with pytest.raises(PayloadError) as excinfo:
        normalize_result(sample_result(**{name: "gpt\x00-4o"}), BUCKET, 2)
    message = str(excinfo.value)
    assert BUCKET_TIME in message and "#2" in message and f"{name}=" in message
    assert "NUL" in message


def test_a_nul_in_an_unknown_field_or_key_is_kept_as_text() -> None:
    result = sample_result(
        future_field="a\x00b",
        nested={"list": ["x\x00", 1], "k\x00ey": None},
        **{"odd\x00key": 5},
    )
    stored = json.loads(normalize_result(result, BUCKET, 0)[-1])
    assert stored["future_field"] == f"a{NUL_TEXT}b"
    assert stored["nested"] == {"list": [f"x{NUL_TEXT}", 1], f"k{NUL_TEXT}ey": None}
    assert stored[f"odd{NUL_TEXT}key"] == 5
    assert "\x00" not in json.dumps(stored)
    assert not set(stored) & set(sample_result())  # the known fields are in their columns


@pytest.mark.parametrize("name", [d for d in DIMENSIONS if d != "batch"])
def test_a_lone_surrogate_in_a_dimension_is_refused_naming_the_field(name: str) -> None:
    # JSON's "\ud800" escape on its own decodes to a string UTF-8 cannot encode.
    with pytest.raises(PayloadError) as excinfo:
        normalize_result(sample_result(**{name: json.loads('"gpt\\ud800"')}), BUCKET, 3)
    message = str(excinfo.value)
    assert BUCKET_TIME in message and "#3" in message and f"{name}=" in message
    assert "lone surrogate" in message


def test_a_lone_surrogate_in_an_unknown_field_is_kept_as_its_escape() -> None:
    result = sample_result(note=json.loads('"a\\udc80b"'), fine="caf\u00e9")
    encoded = normalize_result(result, BUCKET, 0)[-1]
    encoded.encode()  # storable: valid UTF-8
    stored = json.loads(encoded)
    assert stored["note"] == "a\\udc80b" and stored["fine"] == "caf\u00e9"


def test_an_escaped_backslash_before_u0000_is_not_mangled() -> None:
    # The JSON of this text contains `\\u0000`, which holds the NUL escape as a substring.
    result = sample_result(note="C:\\u0000\\dir", other="\\\\u0000")
    encoded = normalize_result(result, BUCKET, 0)[-1]
    assert json.loads(encoded) == {"note": "C:\\u0000\\dir", "other": "\\\\u0000"}


def test_nan_in_an_unknown_field_is_kept_as_text() -> None:
    result = sample_result(score=float("nan"), limit=float("inf"))
    stored = json.loads(normalize_result(result, BUCKET, 0)[-1])
    assert (stored["score"], stored["limit"]) == ("NaN", "Infinity")


# --------------------------------------------------------------------------- usage, end to end


@pytest.mark.parametrize(
    ("drift", "field"),
    [
        ({"input_tokens": BIGINT_MAX + 1}, "input_tokens"),
        ({"output_audio_tokens": 10**30}, "output_audio_tokens"),
        ({"model": "gpt-4o\x00mini"}, "model"),
        ({"project_id": "proj\x00"}, "project_id"),
    ],
)
def test_unstorable_usage_fails_the_run_permanently_and_keeps_the_day(
    engine: Engine, database_url: str, drift: dict[str, Any], field: str
) -> None:
    with SimulatedAdminAPI() as sim:
        assert materialize_usage(admin_for(sim), database_url).success
    good = table_rows(engine)
    assert good
    with SimulatedAdminAPI(org=SyntheticOrganization(extra_result_fields=drift)) as sim:
        result = materialize_usage(admin_for(sim), database_url)
    assert not result.success
    message = permanent_failure(result)
    assert FIRST_BUCKET in message and "result #0" in message and f"{field}=" in message
    assert "psycopg" not in message
    assert table_rows(engine) == good


def test_nul_in_unknown_usage_fields_lands_as_text(engine: Engine, database_url: str) -> None:
    extra = {"future_field": "a\x00b", "ke\x00y": "v", "literal": "a\\u0000b"}
    with SimulatedAdminAPI(org=SyntheticOrganization(extra_result_fields=extra)) as sim:
        result = materialize_usage(admin_for(sim), database_url)
    assert result.success
    with engine.connect() as conn:
        kept = conn.execute(
            text(
                "SELECT DISTINCT result->>'future_field', result->>:key, result->>'literal' "
                "FROM openai_usage.completions_usage_hourly"
            ),
            {"key": f"ke{NUL_TEXT}y"},
        ).all()
    assert kept == [(f"a{NUL_TEXT}b", "v", "a\\u0000b")]


def test_a_lone_surrogate_in_an_unknown_usage_field_lands_as_text(
    engine: Engine, database_url: str
) -> None:
    extra = {"future_field": json.loads('"x\\ud83dy"')}
    with SimulatedAdminAPI(org=SyntheticOrganization(extra_result_fields=extra)) as sim:
        result = materialize_usage(admin_for(sim), database_url)
    assert result.success
    with engine.connect() as conn:
        kept = conn.execute(
            text(
                "SELECT DISTINCT result->>'future_field' FROM openai_usage.completions_usage_hourly"
            )
        ).all()
    assert kept == [("x\\ud83dy",)]


def test_text_psycopg_cannot_encode_is_a_payload_error_naming_the_day(engine: Engine) -> None:
    """The safety net, for a row the normalizer did not check: a lone surrogate fails in the
    driver (UnicodeEncodeError), not in PostgreSQL."""
    day = dt.date(2025, 6, 2)
    info = LoadInfo(
        group_by=list(DIMENSIONS), simulated=True, source_url="test", dagster_run_id=None
    )
    replace_day(engine, DaySummary(day), [normalize_result(sample_result(), BUCKET, 0)], info)
    good = table_rows(engine)
    row = normalize_result(sample_result(model="other"), BUCKET, 1)
    at = USAGE_COPY_COLUMNS.index("project_id")
    bad = (*row[:at], "proj\ud800", *row[at + 1 :])
    with pytest.raises(PayloadError, match=r"usage day 2025-06-02 .*not valid Unicode"):
        replace_day(engine, DaySummary(day), [bad], info)
    assert table_rows(engine) == good


def test_a_value_postgres_refuses_is_a_payload_error_naming_the_day(engine: Engine) -> None:
    """The safety net behind the normalizer: a row it did not check (built by hand here)."""
    day = dt.date(2025, 6, 2)
    row = normalize_result(sample_result(), BUCKET, 0)
    info = LoadInfo(
        group_by=list(DIMENSIONS), simulated=True, source_url="test", dagster_run_id=None
    )
    replace_day(engine, DaySummary(day), [row], info)
    good = table_rows(engine)
    at = USAGE_COPY_COLUMNS.index("input_tokens")
    too_big = (*row[:at], BIGINT_MAX + 1, *row[at + 1 :])
    other = normalize_result(sample_result(model="other"), BUCKET, 1)
    with pytest.raises(PayloadError) as excinfo:
        replace_day(engine, DaySummary(day), [other, too_big], info)
    message = str(excinfo.value)
    assert "usage day 2025-06-02" in message and "completions_usage_hourly" in message
    assert "input_tokens" in message  # PostgreSQL's own context names the column
    assert table_rows(engine) == good


# --------------------------------------------------------------------------- billed costs


def materialize_costs(sim: SimulatedAdminAPI, database_url: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [costs_daily],
        partition_key=DAY,
        resources={
            "openai_admin": admin_for(sim),
            "usage_db": UsageDatabase(url=database_url),
            "pricing": PricingResource(),
        },
        raise_on_error=False,
    )


def cost_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT id, project_id, line_item, amount_usd FROM openai_usage.costs_daily")
            )
        ]


def test_unstorable_costs_fail_permanently_and_keep_the_day(
    engine: Engine, database_url: str
) -> None:
    overrides: dict[tuple[str, str | None, str | None], Any] = {}
    org = SyntheticOrganization(billed_amount_overrides=overrides)
    project = org.projects[1].id
    usd = {"value": "1.5", "currency": "usd"}
    with SimulatedAdminAPI(org=org) as sim:
        assert materialize_costs(sim, database_url).success
        good = cost_rows(engine)
        for key, amount, expected in [
            ((DAY, "proj\x00x", "gpt-4o, input"), usd, "project_id='proj\\x00x' contains a NUL"),
            ((DAY, project, "gpt-4o\x00, input"), usd, "line_item='gpt-4o\\x00, input' contains"),
            # Past validation, refused by PostgreSQL (numeric overflow): the safety net.
            (
                (DAY, project, "gpt-4o, input"),
                {"value": "1e200000", "currency": "usd"},
                f"billed costs of {DAY} (openai_usage.costs_daily)",
            ),
        ]:
            overrides.clear()
            overrides[key] = amount
            result = materialize_costs(sim, database_url)
            assert not result.success
            message = permanent_failure(result)
            assert expected in message and DAY in message, message
            assert cost_rows(engine) == good


def test_nul_in_an_unknown_cost_field_lands_as_text(engine: Engine, database_url: str) -> None:
    org = SyntheticOrganization(
        billed_amount_overrides={
            (DAY, "proj_odd", "gpt-4o, input"): {"value": "2", "currency": "usd", "n\x00": "a\x00"}
        }
    )
    with SimulatedAdminAPI(org=org) as sim:
        assert materialize_costs(sim, database_url).success
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT result FROM openai_usage.costs_daily WHERE project_id = 'proj_odd'")
        ).scalar_one()
    assert stored["amount"][f"n{NUL_TEXT}"] == f"a{NUL_TEXT}"


# --------------------------------------------------------------------------- names


def test_a_nul_in_an_id_is_refused_and_in_a_name_replaced() -> None:
    with pytest.raises(PayloadError, match=r"project #1: id='p\\x00' contains a NUL"):
        project_rows([{"id": "proj_a"}, {"id": "p\x00"}])
    [row] = project_rows([{"id": "proj_a", "name": "Acme\x00Co", "status": "act\x00ive"}])
    assert (row["name"], row["status"]) == ("Acme\ufffdCo", "act\ufffdive")
    [user] = user_rows([{"id": "u", "name": "A\x00", "email": "a\x00@x", "role": "owner"}])
    assert (user["name"], user["email"]) == ("A\ufffd", "a\ufffd@x")


def test_the_names_writer_turns_a_refused_value_into_a_payload_error(engine: Engine) -> None:
    replace_table(engine, Project, [{"id": "proj_a", "name": "A", "status": "active"}], "default")
    with pytest.raises(PayloadError, match=r"the names table openai_usage\.projects"):
        replace_table(
            engine, Project, [{"id": "proj\x00", "name": None, "status": None}], "default"
        )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, name FROM openai_usage.projects")).all() == [
            ("proj_a", "A")
        ]


def test_a_nul_in_a_project_name_is_stored_visibly(engine: Engine, database_url: str) -> None:
    org = SyntheticOrganization()
    org.projects[0] = dataclasses.replace(org.projects[0], name="Acme\x00Co")
    with SimulatedAdminAPI(org=org) as sim:
        result = dg.materialize(
            [openai_projects],
            resources={"openai_admin": admin_for(sim), "usage_db": UsageDatabase(url=database_url)},
            raise_on_error=False,
        )
    assert result.success
    with engine.connect() as conn:
        name = conn.execute(
            text("SELECT name FROM openai_usage.projects WHERE id = :id"),
            {"id": org.projects[0].id},
        ).scalar_one()
    assert name == "Acme\ufffdCo"


# --------------------------------------------------------------------------- Markdown metadata

_UNESCAPED_PIPE = re.compile(r"(?<!\\)(?:\\\\)*\|")


def assert_well_formed_table(markdown: str, rows: int) -> None:
    """Every line is a row of the header's width (pipes not preceded by an odd number of
    backslashes split cells), and no HTML tag survives."""
    lines = markdown.split("\n")
    assert len(lines) == 2 + rows, markdown
    widths = {len(_UNESCAPED_PIPE.findall(line)) for line in lines}
    assert len(widths) == 1, markdown
    assert "<" not in markdown and ">" not in markdown, markdown


def test_md_cell_escapes_pipes_html_newlines_and_backslashes() -> None:
    from usage_assets.markdown import md_cell

    assert md_cell(HOSTILE_NAME) == ESCAPED_NAME
    assert md_cell("a & b\r\nc") == "a &amp; b c"
    assert md_cell("ends with \\") == "ends with \\\\"
    assert md_cell("x\\|y") == "x\\\\\\|y"  # the pipe stays escaped, the backslash shown


def test_a_hostile_project_name_keeps_the_costs_table_whole(
    engine: Engine, database_url: str
) -> None:
    org = SyntheticOrganization()
    org.projects[1] = dataclasses.replace(org.projects[1], name=HOSTILE_NAME)
    with SimulatedAdminAPI(org=org) as sim:
        admin = admin_for(sim)
        resources = {
            "openai_admin": admin,
            "usage_db": UsageDatabase(url=database_url),
            "pricing": PricingResource(),
        }
        names = dg.materialize([openai_projects], resources=resources)
        costs = dg.materialize([costs_daily], partition_key=DAY, resources=resources)
    assert names.success and costs.success
    [billed] = day_reports(costs, "costs_daily")
    table = str(billed.metadata["top_projects_by_billed_usd"].value)
    assert ESCAPED_NAME in table
    assert_well_formed_table(table, rows=int(billed.metadata["projects"].value))  # type: ignore[arg-type]


def test_a_hostile_project_id_keeps_the_usage_table_whole(
    engine: Engine, database_url: str
) -> None:
    org = SyntheticOrganization(extra_result_fields={"project_id": HOSTILE_NAME})
    with SimulatedAdminAPI(org=org) as sim:
        result = materialize_usage(admin_for(sim), database_url)
    assert result.success
    [day] = day_reports(result, "completions_usage_hourly")
    table = str(day.metadata["top_projects_by_tokens"].value)
    assert ESCAPED_NAME in table
    assert_well_formed_table(table, rows=1)


def test_gaps_markdown_escapes_project_ids_and_line_items() -> None:
    gap = Gap(dt.date(2025, 6, 2), HOSTILE_NAME, "ft:gpt|x, <b>input</b>", Decimal(1), Decimal(2))
    table = gaps_markdown([gap])
    assert ESCAPED_NAME in table and "ft:gpt\\|x, &lt;b&gt;input&lt;/b&gt;" in table
    assert_well_formed_table(table, rows=1)
