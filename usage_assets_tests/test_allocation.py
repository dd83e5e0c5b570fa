"""The bill allocated over the usage behind it: exact sums, the largest-remainder rule, the
proportionality rules, unallocated bills, organizations, and the asset on simulated data."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from usage_assets.chargeback.allocation import allocate_costs, allocation_gaps
from usage_assets.defs.attribution.assets import (
    project_daily_cost_summary,
    project_daily_costs,
    usage_daily_costs,
)
from usage_assets.defs.billing.assets import costs_daily
from usage_assets.defs.chargeback.allocation import cost_allocation_daily
from usage_assets.defs.names.assets import NAMES_ASSETS
from usage_assets.defs.usage.assets import USAGE_ASSETS
from usage_assets.pricing.attribution import PricingInputs, price_usage
from usage_assets.settings import PROJECT_ROOT
from usage_assets.simulator.server import SimulatedAdminAPI

from .test_cost_assets import HAND_PRICES, check_results, load_hours, resources
from .test_pricing import result

DAY = dt.date(2025, 11, 20)
NEXT = DAY + dt.timedelta(days=1)
GPT = "gpt-4.1-2025-04-14"
EVERYTHING = [
    *USAGE_ASSETS,
    *NAMES_ASSETS,
    project_daily_costs,
    usage_daily_costs,
    project_daily_cost_summary,
    costs_daily,
    cost_allocation_daily,
]


def table_content(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT organization, usage_date, project_id, line_item, api_key_id, user_id, "
                    "model, usage_kind, allocated_usd, estimated_usd, quantity, quantity_unit, "
                    "allocation_basis, unallocated_reason FROM openai_usage.cost_allocation_daily "
                    "ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
                )
            )
        ]


def test_a_simulated_day_is_allocated_exactly(
    engine: Engine, database_url: str, simulator: SimulatedAdminAPI
) -> None:
    example = str(PROJECT_ROOT / "prices" / "overrides.example.yaml")
    run = dg.materialize(
        EVERYTHING,
        partition_key=DAY.isoformat(),
        resources=resources(simulator, database_url, overrides_file=example),
    )
    assert run.success
    check = check_results(run)["allocation_matches_bill"]
    assert check.passed, check.metadata["mismatches"].value
    with engine.connect() as conn:
        billed, allocated, line_items, unallocated = conn.execute(
            text(
                "WITH b AS (SELECT project_id, line_item, sum(amount_usd) AS usd "
                "           FROM openai_usage.costs_daily GROUP BY 1, 2), "
                "a AS (SELECT project_id, line_item, sum(allocated_usd) AS usd "
                "      FROM openai_usage.cost_allocation_daily GROUP BY 1, 2) "
                "SELECT (SELECT sum(usd) FROM b), (SELECT sum(usd) FROM a), "
                "       (SELECT count(*) FROM b JOIN a USING (line_item) "
                "        WHERE a.project_id IS NOT DISTINCT FROM b.project_id "
                "          AND a.usd = b.usd), "
                "       (SELECT count(*) FROM openai_usage.cost_allocation_daily "
                "        WHERE unallocated_reason IS NOT NULL)"
            )
        ).one()
        billed_line_items = conn.execute(
            text("SELECT count(DISTINCT (project_id, line_item)) FROM openai_usage.costs_daily")
        ).scalar_one()
        kinds = set(
            conn.execute(
                text("SELECT DISTINCT usage_kind FROM openai_usage.cost_allocation_daily")
            ).scalars()
        )
        keys = conn.execute(
            text(
                "SELECT count(DISTINCT api_key_id) FROM openai_usage.cost_allocation_daily "
                "WHERE api_key_id IS NOT NULL"
            )
        ).scalar_one()
        # Per billed amount (line item, key, user) only the largest share holds the sub-micro-
        # dollar rest.
        most_inexact_shares = conn.execute(
            text(
                "SELECT max(n) FROM (SELECT count(*) FILTER "
                "(WHERE allocated_usd <> round(allocated_usd, 6)) AS n "
                "FROM openai_usage.cost_allocation_daily "
                "GROUP BY project_id, line_item, api_key_id, user_id) x"
            )
        ).scalar_one()
    assert billed > 0 and billed == allocated
    # Every billed line item of every project has exactly its amount allocated.
    assert line_items == billed_line_items > 20
    # The simulator bills what it serves: every billed amount has usage behind it.
    assert unallocated == 0
    assert {"completions", "embeddings", "images", "vector_stores", "web_search_calls"} <= kinds
    assert keys >= 5
    assert most_inexact_shares == 1  # the simulator bills with 16 decimals
    with engine.connect() as conn:
        # The view: spend per project, key, user and model that adds up to the invoice, each
        # billed amount (day, project, line item, key, user) rounded to the micro-dollar: the
        # view rounds each share, and only one share per billed amount has more decimals.
        per_project = conn.execute(
            text(
                "SELECT v.project, v.usd = b.usd FROM (SELECT coalesce(project_id, '') AS project, "
                "  sum(billed_usd) AS usd FROM openai_usage.v_cost_allocation_daily GROUP BY 1) v "
                "FULL JOIN (SELECT project, sum(round(usd, 6)) AS usd FROM ("
                "  SELECT coalesce(project_id, '') AS project, sum(amount_usd) AS usd "
                "  FROM openai_usage.costs_daily "
                "  GROUP BY usage_date, project_id, line_item, api_key_id, user_id) g "
                "  GROUP BY 1) b USING (project)"
            )
        ).all()
        unnamed_keys = conn.execute(
            text(
                "SELECT count(*) FROM openai_usage.v_cost_allocation_daily "
                "WHERE api_key_id IS NOT NULL AND api_key_name IS NULL"
            )
        ).scalar_one()
    assert len(per_project) >= 5 and all(equal for _, equal in per_project)
    assert unnamed_keys == 0
    first = table_content(engine)

    # Re-running the partition gives the same table content, nothing doubled.
    again = dg.materialize(
        [cost_allocation_daily],
        partition_key=DAY.isoformat(),
        resources=resources(simulator, database_url, overrides_file=example),
    )
    assert again.success
    assert table_content(engine) == first


def bill(engine: Engine, rows: list[dict[str, Any]], group_by: list[str] | None = None) -> None:
    """Billed rows of DAY (default organization unless given)."""
    defaults = {
        "organization": "default", "usage_date": DAY, "project_id": "proj_alpha",
        "api_key_id": None, "user_id": None, "api_source": None, "quantity": None,
        "quantity_unit": None, "currency": "usd",
        "group_by": group_by or ["project_id", "line_item"],
    }  # fmt: skip
    with engine.begin() as conn:
        for row in rows:
            values = defaults | row
            model, _, kind = values["line_item"].rpartition(", ")
            values |= {"line_item_model": model or None, "line_item_kind": kind if model else None}
            conn.execute(
                text(
                    "INSERT INTO openai_usage.costs_daily (organization, usage_date, project_id, "
                    "line_item, line_item_model, line_item_kind, amount_usd, currency, result, "
                    "api_key_id, user_id, api_source, quantity, quantity_unit, group_by) VALUES "
                    "(:organization, :usage_date, :project_id, :line_item, :line_item_model, "
                    ":line_item_kind, :amount_usd, :currency, '{}', :api_key_id, :user_id, "
                    ":api_source, :quantity, :quantity_unit, :group_by)"
                ),
                values,
            )


def keyed(key: str, project: str = "proj_alpha", **metrics: int) -> dict[str, Any]:
    return result(GPT, project, **metrics) | {"api_key_id": key}


def priced(engine: Engine, tmp_path: Path, hours: dict[int, list[dict[str, Any]]]) -> None:
    """Load DAY's completions usage and price it with the hand prices (gpt-4.1: $2 input,
    $0.50 cached input, $8 output per million tokens)."""
    load_hours(engine, DAY, hours)
    overrides = tmp_path / "prices.yaml"
    overrides.write_text(HAND_PRICES)
    price_usage(engine, DAY, NEXT, PricingInputs(overrides))


def shares(engine: Engine, line_item: str | None = None) -> dict[Any, tuple[Any, ...]]:
    """(api_key_id, model) -> (allocated_usd, basis, reason, estimated_usd)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT api_key_id, model, allocated_usd, allocation_basis, unallocated_reason, "
                "estimated_usd FROM openai_usage.cost_allocation_daily "
                "WHERE CAST(:line_item AS text) IS NULL OR line_item = :line_item"
            ),
            {"line_item": line_item},
        )
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def test_a_token_kind_is_shared_by_that_kind_s_cost(engine: Engine, tmp_path: Path) -> None:
    # Key a only reads (input), key b only writes (output): the output line item goes to b.
    priced(engine, tmp_path, {
        10: [keyed("key_a", input_text_tokens=3_000_000), keyed("key_b", output_text_tokens=1_000)],
    })  # fmt: skip
    bill(engine, [
        {"line_item": f"{GPT}, input", "amount_usd": Decimal("5.999")},
        {"line_item": f"{GPT}, output", "amount_usd": Decimal("0.008")},
    ])  # fmt: skip
    allocate_costs(engine, DAY, NEXT)
    assert shares(engine, f"{GPT}, output") == {
        ("key_b", GPT): (Decimal("0.008"), "estimated cost of the token kind", None,
                         Decimal("0.008")),
    }  # fmt: skip
    assert shares(engine, f"{GPT}, input")[("key_a", GPT)][0] == Decimal("5.999")
    assert allocation_gaps(engine, DAY, NEXT) == []


def test_largest_remainders_make_the_sum_exact(engine: Engine, tmp_path: Path) -> None:
    # Three keys with equal input: $0.00001 is 10 micro-dollars, 4 + 3 + 3.
    priced(engine, tmp_path, {
        10: [keyed(k, input_text_tokens=1_000) for k in ("key_a", "key_b", "key_c")],
    })  # fmt: skip
    bill(engine, [{"line_item": f"{GPT}, input", "amount_usd": Decimal("0.00001")}])
    allocate_costs(engine, DAY, NEXT)
    amounts = sorted(v[0] for v in shares(engine).values())
    assert amounts == [Decimal("0.000003"), Decimal("0.000003"), Decimal("0.000004")]


def test_sub_micro_dollars_go_to_the_largest_share(engine: Engine, tmp_path: Path) -> None:
    # 2:1 of $1.0000000005 (ten decimals): 0.666667 + 0.333333, the rest to the larger share.
    priced(engine, tmp_path, {
        10: [keyed("key_a", input_text_tokens=2_000), keyed("key_b", input_text_tokens=1_000)],
    })  # fmt: skip
    bill(engine, [{"line_item": f"{GPT}, input", "amount_usd": Decimal("1.0000000005")}])
    allocate_costs(engine, DAY, NEXT)
    got = {key: v[0] for (key, _), v in shares(engine).items()}
    assert got == {"key_a": Decimal("0.6666670005"), "key_b": Decimal("0.333333")}
    assert sum(got.values()) == Decimal("1.0000000005")


def test_a_credit_is_allocated_with_its_sign(engine: Engine, tmp_path: Path) -> None:
    priced(engine, tmp_path, {
        10: [keyed("key_a", input_text_tokens=1_000), keyed("key_b", input_text_tokens=2_000)],
    })  # fmt: skip
    bill(engine, [{"line_item": f"{GPT}, input", "amount_usd": Decimal("-0.100001")}])
    allocate_costs(engine, DAY, NEXT)
    got = {key: v[0] for (key, _), v in shares(engine).items()}
    assert got == {"key_a": Decimal("-0.033334"), "key_b": Decimal("-0.066667")}


def test_a_bill_without_usage_is_kept_unallocated_with_its_reason(
    engine: Engine, tmp_path: Path
) -> None:
    priced(engine, tmp_path, {10: [keyed("key_a", input_text_tokens=1_000)]})
    bill(engine, [
        {"line_item": f"{GPT}, input", "amount_usd": Decimal("0.002")},
        {"line_item": "gpt-4o, input", "amount_usd": Decimal("1.5"), "project_id": "proj_gone"},
        {"line_item": "priority support", "amount_usd": Decimal("20")},
        {"line_item": "web search tool calls", "amount_usd": Decimal("0.01")},
    ])  # fmt: skip
    allocate_costs(engine, DAY, NEXT)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT project_id, line_item, usage_kind, model, allocated_usd, "
                "unallocated_reason FROM openai_usage.cost_allocation_daily "
                "WHERE unallocated_reason IS NOT NULL ORDER BY allocated_usd"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("proj_alpha", "web search tool calls", "web_search_calls", None, Decimal("0.01"),
         "no web_search_calls usage of the project on the day"),
        ("proj_gone", "gpt-4o, input", "completions", "gpt-4o", Decimal("1.5"),
         "no completions usage of the project on the day"),
        ("proj_alpha", "priority support", "other", None, Decimal("20"),
         "the line item names no usage kind"),
    ]  # fmt: skip
    assert shares(engine, f"{GPT}, input")[("key_a", GPT)][0] == Decimal("0.002")
    assert allocation_gaps(engine, DAY, NEXT) == []


def test_billing_by_key_keeps_each_key_s_amount(engine: Engine, tmp_path: Path) -> None:
    priced(engine, tmp_path, {
        10: [keyed("key_a", input_text_tokens=1_000), keyed("key_b", input_text_tokens=9_000)],
    })  # fmt: skip
    grouping = ["project_id", "line_item", "api_key_id"]
    bill(engine, [
        {"line_item": f"{GPT}, input", "amount_usd": Decimal("0.7"), "api_key_id": "key_a"},
        {"line_item": f"{GPT}, input", "amount_usd": Decimal("0.3"), "api_key_id": "key_b"},
        {"line_item": f"{GPT}, input", "amount_usd": Decimal("0.1"), "api_key_id": "key_z"},
    ], grouping)  # fmt: skip
    allocate_costs(engine, DAY, NEXT)
    got = {key: (v[0], v[2]) for (key, _), v in shares(engine).items()}
    # The bill says which key spent what; the usage proportions do not override it.
    assert got == {
        "key_a": (Decimal("0.7"), None),
        "key_b": (Decimal("0.3"), None),
        "key_z": (Decimal("0.1"), "no completions usage of the billed API key or user on the day"),
    }


def test_unpriced_usage_takes_its_share_by_quantity(engine: Engine) -> None:
    # No price for this model: shares by tokens (1:3).
    load_hours(engine, DAY, {
        10: [result("acme-unknown", "proj_alpha", input_text_tokens=1_000) | {"api_key_id": "a"},
             result("acme-unknown", "proj_alpha", input_text_tokens=3_000) | {"api_key_id": "b"}],
    })  # fmt: skip
    price_usage(engine, DAY, NEXT, PricingInputs(None))
    bill(engine, [{"line_item": "acme-unknown, input", "amount_usd": Decimal("4")}])
    allocate_costs(engine, DAY, NEXT)
    got = {key: (v[0], v[1]) for (key, _), v in shares(engine).items()}
    assert got == {"a": (Decimal("1"), "usage quantity"), "b": (Decimal("3"), "usage quantity")}


def test_other_organizations_neither_take_nor_lose_shares(engine: Engine, tmp_path: Path) -> None:
    priced(engine, tmp_path, {10: [keyed("key_a", input_text_tokens=1_000)]})
    with engine.begin() as conn:
        # Another organization's cost row, but no usage of its own.
        conn.execute(
            text(
                "INSERT INTO openai_usage.project_daily_costs (organization, usage_date, "
                "project_id, model, batch, service_tier, input_tokens, output_tokens, "
                "num_model_requests, input_text_uncached_tokens, input_text_cached_tokens, "
                "input_cache_write_tokens, input_cache_write_30m_tokens, "
                "input_cache_write_12h_tokens, input_audio_uncached_tokens, "
                "input_audio_cached_tokens, input_image_uncached_tokens, "
                "input_image_cached_tokens, output_text_tokens, output_audio_tokens, "
                "output_image_tokens, breakdown_fallback) "
                "VALUES ('org_b', :day, 'proj_alpha', :model, false, 'default', "
                "1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, false)"
            ),
            {"day": DAY, "model": GPT},
        )
    bill(engine, [{"line_item": f"{GPT}, input", "amount_usd": Decimal("0.002")}])
    bill(engine, [
        {"line_item": f"{GPT}, input", "amount_usd": Decimal("9"), "organization": "org_b"},
    ])  # fmt: skip
    allocate_costs(engine, DAY, NEXT, organization="org_b")
    allocate_costs(engine, DAY, NEXT)
    allocate_costs(engine, DAY, NEXT, organization="org_b")  # and again: nothing doubles
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT organization, api_key_id, allocated_usd, unallocated_reason "
                "FROM openai_usage.cost_allocation_daily ORDER BY 1"
            )
        ).all()
    # org_b has no usage rows of its own: its bill stays its own, unallocated.
    assert [tuple(r) for r in rows] == [
        ("default", "key_a", Decimal("0.002"), None),
        ("org_b", None, Decimal("9"), "no completions usage of the project on the day"),
    ]
    assert allocation_gaps(engine, DAY, NEXT, organization="org_b") == []


def test_the_check_names_a_line_item_that_does_not_add_up(engine: Engine, tmp_path: Path) -> None:
    from usage_assets.defs.chargeback.allocation import allocation_check

    priced(engine, tmp_path, {10: [keyed("key_a", input_text_tokens=1_000)]})
    bill(engine, [{"line_item": f"{GPT}, input", "amount_usd": Decimal("0.002")}])
    allocate_costs(engine, DAY, NEXT)
    assert allocation_check(engine, DAY, NEXT, "default").passed
    with engine.begin() as conn:  # a bill corrected after the allocation ran
        conn.execute(text("UPDATE openai_usage.costs_daily SET amount_usd = 0.0021"))
    stale = allocation_check(engine, DAY, NEXT, "default")
    assert not stale.passed
    assert stale.metadata["line_items_not_matching"].value == 1
    assert f"{GPT}, input" in str(stale.metadata["mismatches"].value)


@pytest.mark.parametrize("amount", ["0", "0.000001"])
def test_tiny_and_zero_bills(engine: Engine, tmp_path: Path, amount: str) -> None:
    priced(engine, tmp_path, {
        10: [keyed("key_a", input_text_tokens=1_000), keyed("key_b", input_text_tokens=1_000)],
    })  # fmt: skip
    bill(engine, [{"line_item": f"{GPT}, input", "amount_usd": Decimal(amount)}])
    allocate_costs(engine, DAY, NEXT)
    assert sum(v[0] for v in shares(engine).values()) == Decimal(amount)
    assert allocation_gaps(engine, DAY, NEXT) == []


def test_a_doubled_grain_is_refused_and_the_stored_day_stays(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table has no unique index on its grain (migration 0024): the allocation checks each
    day it writes, inside the day's transaction, NULLs equal."""
    from usage_assets.chargeback import allocation
    from usage_assets.errors import DoubledRowsError

    priced(engine, tmp_path, {10: [keyed("key_a", input_text_tokens=1_000)]})
    bill(engine, [{"line_item": f"{GPT}, input", "amount_usd": Decimal("0.002")}])
    allocate_costs(engine, DAY, NEXT)
    stored = table_content(engine)
    assert stored
    doubled = (
        "INSERT INTO openai_usage.cost_allocation_daily (organization, usage_date, project_id, "
        "line_item, api_key_id, user_id, model, usage_kind, allocated_usd) "
        "SELECT :organization, :first, 'proj_a', 'gpt-x, input', NULL, NULL, 'gpt-x', "
        "'completions', 1 FROM generate_series(1, 2)"
    )
    monkeypatch.setattr(allocation, "ALLOCATE_SQL", doubled)
    with pytest.raises(DoubledRowsError) as refused:
        allocate_costs(engine, DAY, NEXT)
    assert "2 rows of one grain" in str(refused.value)
    assert "project_id='proj_a'" in str(refused.value) and "api_key_id=None" in str(refused.value)
    assert table_content(engine) == stored
