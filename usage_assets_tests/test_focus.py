"""The FOCUS 1.2 export (`v_focus_1_2`, migration 0013) against FOCUS's own column rules: every
Mandatory column present with the spec's data type, nullability and allowed values on real
rows (allocated, unallocated, the default project, a bill without a quantity, two
organizations), charge and billing periods as UTC instants, costs that add up to
`cost_allocation_daily`, units in the spec's Unit Format, and `x_` custom columns.

The chargeback rows are inserted directly into a migrated PostgreSQL (the asset that fills
`cost_allocation_daily` is tested with its own module)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

S = "openai_usage"
VIEW = f"{S}.v_focus_1_2"
CSV_VIEW = f"{S}.v_focus_1_2_csv"
UTC = dt.UTC

# ----------------------------------------------------------------------------- the spec, as data

#: FOCUS 1.2, every column: (feature level, data type, allows nulls), copied from the "Content
#: constraints" table of each specification/columns/*.md of FinOps-Open-Cost-and-Usage-Spec/
#: FOCUS_Spec at tag v1.2 (commit 7296e3146fb931ee32b6496fa6e4200e7f4384f7).
SPEC: dict[str, tuple[str, str, bool]] = {
    "AvailabilityZone": ("Recommended", "String", True),
    "BilledCost": ("Mandatory", "Decimal", False),
    "BillingAccountId": ("Mandatory", "String", False),
    "BillingAccountName": ("Mandatory", "String", True),
    "BillingAccountType": ("Conditional", "String", False),
    "BillingCurrency": ("Mandatory", "String", False),
    "BillingPeriodEnd": ("Mandatory", "Date/Time", False),
    "BillingPeriodStart": ("Mandatory", "Date/Time", False),
    "CapacityReservationId": ("Conditional", "String", True),
    "CapacityReservationStatus": ("Conditional", "String", True),
    "ChargeCategory": ("Mandatory", "String", False),
    "ChargeClass": ("Mandatory", "String", True),
    "ChargeDescription": ("Mandatory", "String", True),
    "ChargeFrequency": ("Recommended", "String", False),
    "ChargePeriodEnd": ("Mandatory", "Date/Time", False),
    "ChargePeriodStart": ("Mandatory", "Date/Time", False),
    "CommitmentDiscountCategory": ("Conditional", "String", True),
    "CommitmentDiscountId": ("Conditional", "String", True),
    "CommitmentDiscountName": ("Conditional", "String", True),
    "CommitmentDiscountQuantity": ("Conditional", "Decimal", True),
    "CommitmentDiscountStatus": ("Conditional", "String", True),
    "CommitmentDiscountType": ("Conditional", "String", True),
    "CommitmentDiscountUnit": ("Conditional", "String", True),
    "ConsumedQuantity": ("Conditional", "Decimal", True),
    "ConsumedUnit": ("Conditional", "String", True),
    "ContractedCost": ("Mandatory", "Decimal", False),
    "ContractedUnitPrice": ("Conditional", "Decimal", True),
    "EffectiveCost": ("Mandatory", "Decimal", False),
    "InvoiceId": ("Recommended", "String", True),
    "InvoiceIssuerName": ("Mandatory", "String", False),
    "ListCost": ("Mandatory", "Decimal", False),
    "ListUnitPrice": ("Conditional", "Decimal", True),
    "PricingCategory": ("Conditional", "String", True),
    "PricingCurrency": ("Conditional", "String", True),
    "PricingCurrencyContractedUnitPrice": ("Conditional", "Decimal", True),
    "PricingCurrencyEffectiveCost": ("Conditional", "Decimal", True),
    "PricingCurrencyListUnitPrice": ("Conditional", "Decimal", True),
    "PricingQuantity": ("Mandatory", "Decimal", True),
    "PricingUnit": ("Mandatory", "String", True),
    "ProviderName": ("Mandatory", "String", False),
    "PublisherName": ("Mandatory", "String", False),
    "RegionId": ("Conditional", "String", True),
    "RegionName": ("Conditional", "String", True),
    "ResourceId": ("Conditional", "String", True),
    "ResourceName": ("Conditional", "String", True),
    "ResourceType": ("Conditional", "String", True),
    "ServiceCategory": ("Mandatory", "String", False),
    "ServiceName": ("Mandatory", "String", False),
    "ServiceSubcategory": ("Recommended", "String", False),
    "SkuId": ("Conditional", "String", True),
    "SkuMeter": ("Conditional", "String", True),
    "SkuPriceDetails": ("Conditional", "JSON", True),
    "SkuPriceId": ("Conditional", "String", True),
    "SubAccountId": ("Conditional", "String", True),
    "SubAccountName": ("Conditional", "String", True),
    "SubAccountType": ("Conditional", "String", True),
    "Tags": ("Conditional", "JSON", True),
}
#: The spec's data types as PostgreSQL types (information_schema.columns.data_type).
PG_TYPES = {
    "Decimal": "numeric",
    "String": "text",
    "Date/Time": "timestamp with time zone",
    "JSON": "jsonb",
}
#: The non-Mandatory columns that apply to OpenAI (docs/focus.md says why each one does, and
#: why the others do not).
APPLICABLE = {
    "ChargeFrequency", "ConsumedQuantity", "ConsumedUnit", "PricingCategory", "ResourceId",
    "ResourceName", "ResourceType", "ServiceSubcategory", "SkuId", "SkuMeter",
    "SkuPriceDetails", "SkuPriceId", "SubAccountId", "SubAccountName", "SubAccountType",
}  # fmt: skip

#: Allowed values (FOCUS 1.2 columns/*.md).
CHARGE_CATEGORIES = {"Usage", "Purchase", "Tax", "Credit", "Adjustment"}
CHARGE_FREQUENCIES = {"One-Time", "Recurring", "Usage-Based"}
PRICING_CATEGORIES = {"Standard", "Dynamic", "Committed", "Other"}
SERVICE_CATEGORIES = {
    "AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases",
    "Developer Tools", "Multicloud", "Identity", "Integration", "Internet of Things",
    "Management and Governance", "Media", "Migration", "Mobile", "Networking", "Security",
    "Storage", "Web", "Other",
}  # fmt: skip
#: ServiceSubcategory values whose parent is "AI and Machine Learning".
AI_SUBCATEGORIES = {
    "AI Platforms", "Bots", "Generative AI", "Machine Learning", "Natural Language Processing",
    "Other (AI and Machine Learning)",
}  # fmt: skip

#: Unit Format (attributes/unit_format.md): data size abbreviations, time units, and the three
#: shapes (optionally with a whole-number quantity first).
DATA_SIZES = (
    "b|Kb|Mb|Gb|Tb|Pb|Eb|Kib|Mib|Gib|Tib|Pib|Eib|B|KB|MB|GB|TB|PB|EB|KiB|MiB|GiB|TiB|PiB|EiB"
)
TIME_UNITS = "Year|Month|Day|Hour|Minute|Second"
NOUN = f"(?:{DATA_SIZES}|[A-Z][A-Za-z]*)"
UNIT_FORMAT = re.compile(
    rf"^(?:[0-9]+ )?(?:{NOUN}|{NOUN}-(?:{TIME_UNITS})s|{NOUN}/(?:{TIME_UNITS}))$"
)
DATETIME_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

# ----------------------------------------------------------------------------- the rows

COLUMNS = (
    "organization", "usage_date", "project_id", "line_item", "api_key_id", "user_id", "model",
    "usage_kind", "allocated_usd", "currency", "estimated_usd", "quantity", "quantity_unit",
    "allocation_basis", "unallocated_reason",
)  # fmt: skip


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "organization": "org-a",
        "usage_date": dt.date(2026, 11, 14),
        "project_id": "proj_shared",
        "line_item": "gpt-4o-2024-08-06, input",
        "api_key_id": "key_a",
        "user_id": "user_a",
        "model": "gpt-4o-2024-08-06",
        "usage_kind": "completions",
        "allocated_usd": Decimal("1.250000"),
        "currency": "usd",
        "estimated_usd": Decimal("1.24"),
        "quantity": Decimal("500000"),
        "quantity_unit": "tokens",
        "allocation_basis": "estimated cost of the token kind",
        "unallocated_reason": None,
    }
    unknown = set(values) - set(base)
    assert not unknown, unknown
    return base | values


#: Every kind of row the chargeback table holds.
ROWS = [
    row(),
    # Same day, project and line item, another key (no name in the names table) and user.
    row(api_key_id="key_unnamed", user_id="user_b", allocated_usd=Decimal("0.750000"),
        estimated_usd=Decimal("0.76"), quantity=Decimal("300000")),
    # The default project (NULL project_id), no key, no user.
    row(project_id=None, api_key_id=None, user_id=None, line_item="gpt-4o-mini, output",
        model="gpt-4o-mini", allocated_usd=Decimal("0.300000"), estimated_usd=Decimal("0.29"),
        quantity=Decimal("500000")),
    # Billed with no usage behind it: unallocated, unpriced.
    row(usage_date=dt.date(2026, 11, 30), api_key_id=None, user_id=None, model="gpt-4o",
        line_item="gpt-4o, cached input", allocated_usd=Decimal("0.040000"), estimated_usd=None,
        allocation_basis=None, unallocated_reason="no usage of the line item's family",
        quantity=Decimal("32000")),
    # A bill without a quantity: not a FOCUS Usage charge.
    row(usage_date=dt.date(2026, 12, 31), line_item="fine-tuning training", usage_kind="other",
        api_key_id=None, user_id=None, model=None, allocated_usd=Decimal("12.000000"),
        estimated_usd=None, quantity=None, quantity_unit=None, allocation_basis=None,
        unallocated_reason="no usage of the line item's family"),
    # The other units of the Costs API.
    row(line_item="dall-e-3, 1024x1024", usage_kind="images", model="dall-e-3",
        allocated_usd=Decimal("0.400000"), estimated_usd=Decimal("0.40"),
        quantity=Decimal("10"), quantity_unit="images", allocation_basis="usage quantity"),
    row(line_item="tts-1, characters", usage_kind="audio_speeches", model="tts-1",
        allocated_usd=Decimal("0.015000"), quantity=Decimal("1000"), quantity_unit="characters",
        estimated_usd=Decimal("0.015")),
    row(line_item="whisper-1, duration", usage_kind="audio_transcriptions", model="whisper-1",
        allocated_usd=Decimal("0.006000"), quantity=Decimal("60"),
        quantity_unit="duration_seconds", estimated_usd=Decimal("0.006")),
    row(line_item="vector store storage", usage_kind="vector_stores", api_key_id=None,
        user_id=None, model=None, allocated_usd=Decimal("0.100000"), quantity=Decimal("48"),
        quantity_unit="gibibyte_hours", estimated_usd=Decimal("0.1")),
    row(line_item="text-embedding-3-small, input", usage_kind="embeddings",
        model="text-embedding-3-small", allocated_usd=Decimal("0.020000"),
        quantity=Decimal("1000"), quantity_unit="1000_tokens", estimated_usd=Decimal("0.02")),
    row(line_item="web search tool calls, gpt-4o, medium", usage_kind="web_search_calls",
        allocated_usd=Decimal("0.035000"), quantity=Decimal("1"), quantity_unit="calls",
        estimated_usd=Decimal("0.035")),
    row(line_item="code interpreter sessions", usage_kind="code_interpreter_sessions",
        api_key_id=None, user_id=None, model=None, allocated_usd=Decimal("0.030000"),
        quantity=Decimal("1"), quantity_unit="sessions", estimated_usd=Decimal("0.03")),
    # A credit-like negative amount is still a (negative) usage charge.
    row(line_item="gpt-4o-2024-08-06, output", allocated_usd=Decimal("-0.500000"),
        estimated_usd=Decimal("-0.5"), quantity=Decimal("-50000")),
    # A second organization: the same project id and key id, its own names and default project.
    row(organization="org-b", allocated_usd=Decimal("2.000000"), estimated_usd=Decimal("2.1")),
    row(organization="org-b", project_id=None, api_key_id=None, user_id=None,
        allocated_usd=Decimal("0.500000"), estimated_usd=Decimal("0.5")),
]  # fmt: skip

NAMES = {
    "projects": [
        {"organization": "org-a", "id": "proj_shared", "name": "Search (A)"},
        {"organization": "org-b", "id": "proj_shared", "name": "Search (B)"},
    ],
    "api_keys": [
        {"organization": "org-a", "id": "key_a", "project_id": "proj_shared",
         "name": "search-backend", "redacted_value": "sk-...aaaa"},
        {"organization": "org-b", "id": "key_a", "project_id": "proj_shared",
         "name": "research-notebook", "redacted_value": "sk-...bbbb"},
        # A key whose name is empty: FOCUS wants NULL, not "".
        {"organization": "org-a", "id": "key_unnamed", "project_id": "proj_shared",
         "name": "", "redacted_value": "sk-...cccc"},
    ],
    "users": [
        {"organization": "org-a", "id": "user_a", "name": "Ada"},
        {"organization": "org-b", "id": "user_a", "name": "Grace"},
    ],
}  # fmt: skip


@pytest.fixture
def focus_rows(engine: Engine) -> Iterator[list[dict[str, Any]]]:
    """The rows above in the chargeback table (and the names tables), read back through the
    view, the session in a time zone far from UTC (the view must not depend on it)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {S}.cost_allocation_daily ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join(':' + c for c in COLUMNS)})"
            ),
            ROWS,
        )
        for table, rows in NAMES.items():
            columns = list(rows[0])
            conn.execute(
                text(
                    f"INSERT INTO {S}.{table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                ),
                rows,
            )
    with engine.connect() as conn:
        conn.execute(text("SET TimeZone = 'Pacific/Kiritimati'"))  # UTC+14
        yield [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {VIEW}"))]


def view_columns(engine: Engine, view: str = VIEW) -> list[tuple[str, str]]:
    schema, name = view.split(".")
    with engine.connect() as conn:
        return [
            (column, data_type)
            for column, data_type in conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = :s AND table_name = :v ORDER BY ordinal_position"
                ),
                {"s": schema, "v": name},
            )
        ]


# ----------------------------------------------------------------------------- columns


def test_every_mandatory_and_applicable_column_is_present_with_the_spec_type(
    engine: Engine,
) -> None:
    columns = dict(view_columns(engine))
    mandatory = {c for c, (level, _, _) in SPEC.items() if level == "Mandatory"}
    assert len(mandatory) == 21  # the spec's count: a typo in SPEC would show here
    assert not mandatory - set(columns), "Mandatory columns missing"
    assert not APPLICABLE - set(columns), "applicable Conditional/Recommended columns missing"
    for column, (_, data_type, _) in SPEC.items():
        if column in columns:
            assert columns[column] == PG_TYPES[data_type], (column, columns[column], data_type)


def test_custom_columns_are_prefixed_and_come_after_the_focus_columns(engine: Engine) -> None:
    names = [name for name, _ in view_columns(engine)]
    custom = [name for name in names if name not in SPEC]
    assert custom, "the custom columns (x_UsageKind, ...) are part of the export"
    for name in custom:
        # Column Handling: a consistent `x_` prefix, then FOCUS's own naming (Pascal case,
        # alphanumeric).
        assert re.fullmatch(r"x_[A-Z][A-Za-z0-9]*", name), name
    first_custom = names.index(custom[0])
    assert all(name in SPEC for name in names[:first_custom])
    assert all(name not in SPEC for name in names[first_custom:])


def test_the_csv_view_has_the_same_columns_with_text_date_times(engine: Engine) -> None:
    typed = view_columns(engine)
    as_csv = view_columns(engine, CSV_VIEW)
    assert [name for name, _ in as_csv] == [name for name, _ in typed]
    for (name, data_type), (_, csv_type) in zip(typed, as_csv, strict=True):
        as_text = data_type in ("timestamp with time zone", "boolean")  # 'true' / 'false'
        expected = "text" if as_text else data_type
        assert csv_type == expected, name


# ----------------------------------------------------------------------------- rows


def test_the_rows_cover_every_case(focus_rows: list[dict[str, Any]]) -> None:
    """One FOCUS row per chargeback row, and the rows below exercise each rule's both sides."""
    assert len(focus_rows) == len(ROWS)
    assert {r["ChargeCategory"] for r in focus_rows} == {"Usage", "Adjustment"}
    assert any(r["x_UnallocatedReason"] for r in focus_rows)
    assert any(r["x_ProjectId"] is None for r in focus_rows)
    assert any(r["ResourceId"] is None for r in focus_rows)
    assert any(r["ResourceId"] is not None for r in focus_rows)


def test_columns_the_spec_declares_not_null_are_never_null(
    focus_rows: list[dict[str, Any]],
) -> None:
    not_null = [c for c, (_, _, nulls) in SPEC.items() if not nulls and c in focus_rows[0]]
    assert {"BilledCost", "ListCost", "ChargePeriodStart", "ServiceName"} <= set(not_null)
    for r in focus_rows:
        for column in not_null:
            assert r[column] is not None, (column, r)


def test_no_empty_strings_stand_in_for_null(focus_rows: list[dict[str, Any]]) -> None:
    """Null Handling: NULL, never "" or a blank placeholder."""
    for r in focus_rows:
        for column, value in r.items():
            assert not (isinstance(value, str) and not value.strip()), (column, r)


def test_the_conditional_nullability_rules_hold(focus_rows: list[dict[str, Any]]) -> None:
    for r in focus_rows:
        usage = r["ChargeCategory"] == "Usage"
        assert r["ChargeClass"] in (None, "Correction")
        correction = r["ChargeClass"] == "Correction"
        if usage and not correction:
            # PricingQuantity, SkuId, SkuPriceId, PricingCategory: MUST NOT be null for Usage;
            # ConsumedQuantity: likewise (no commitment discounts here).
            for column in ("PricingQuantity", "ConsumedQuantity", "SkuId", "SkuPriceId",
                           "PricingCategory"):  # fmt: skip
                assert r[column] is not None, (column, r)
        if not usage:
            assert r["ConsumedQuantity"] is None, r
        # Unit columns go with their quantity.
        assert (r["PricingUnit"] is None) == (r["PricingQuantity"] is None), r
        assert (r["ConsumedUnit"] is None) == (r["ConsumedQuantity"] is None), r
        # Sub account: name and type exactly when there is an id.
        assert (r["SubAccountName"] is None) == (r["SubAccountId"] is None), r
        assert (r["SubAccountType"] is None) == (r["SubAccountId"] is None), r
        # Resource: a type exactly when there is an id; a name only with an id, never the id.
        assert (r["ResourceType"] is None) == (r["ResourceId"] is None), r
        if r["ResourceId"] is None:
            assert r["ResourceName"] is None, r
        assert r["ResourceName"] != r["ResourceId"] or r["ResourceName"] is None, r
        # SKU: meter only with an id; price details only with a price id.
        if r["SkuId"] is None:
            assert r["SkuMeter"] is None, r
        if r["SkuPriceId"] is None:
            assert r["SkuPriceDetails"] is None, r


def test_values_are_among_the_spec_allowed_values(focus_rows: list[dict[str, Any]]) -> None:
    for r in focus_rows:
        assert r["ChargeCategory"] in CHARGE_CATEGORIES
        assert r["ChargeFrequency"] in CHARGE_FREQUENCIES
        assert r["ChargeFrequency"] != "Usage-Based" or r["ChargeCategory"] != "Purchase"
        assert r["PricingCategory"] is None or r["PricingCategory"] in PRICING_CATEGORIES
        assert r["ServiceCategory"] in SERVICE_CATEGORIES
        # The subcategory's parent is the row's category.
        assert r["ServiceCategory"] == "AI and Machine Learning"
        assert r["ServiceSubcategory"] in AI_SUBCATEGORIES
        # Currency Format: ISO 4217 alphabetic code.
        assert re.fullmatch(r"[A-Z]{3}", r["BillingCurrency"]), r["BillingCurrency"]
        assert r["BillingCurrency"] == "USD"
        assert r["ProviderName"] == r["PublisherName"] == r["InvoiceIssuerName"] == "OpenAI"
    # One ServiceName, one ServiceCategory (and one subcategory).
    services: dict[str, set[tuple[str, str]]] = {}
    for r in focus_rows:
        services.setdefault(r["ServiceName"], set()).add(
            (r["ServiceCategory"], r["ServiceSubcategory"])
        )
    assert all(len(categories) == 1 for categories in services.values()), services


def test_charge_and_billing_periods_are_utc_days_within_their_month(
    focus_rows: list[dict[str, Any]],
) -> None:
    """Date/Time Format: UTC instants. ChargePeriod = the usage day [00:00, next 00:00) UTC,
    BillingPeriod = its calendar month; read in a UTC+14 session, the instants are the same."""
    by_day = {(r["organization"], r["usage_date"]) for r in ROWS}
    assert len({d for _, d in by_day}) >= 3  # mid-month, a month's last day, a year's last day
    seen = set()
    for r in focus_rows:
        start, end = r["ChargePeriodStart"], r["ChargePeriodEnd"]
        for value in (start, end, r["BillingPeriodStart"], r["BillingPeriodEnd"]):
            assert isinstance(value, dt.datetime) and value.utcoffset() is not None
            assert value.astimezone(UTC).time() == dt.time(0, 0)
        day = start.astimezone(UTC).date()
        seen.add(day)
        assert end - start == dt.timedelta(days=1)
        month_start = dt.datetime(day.year, day.month, 1, tzinfo=UTC)
        next_month = dt.datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=UTC)
        assert r["BillingPeriodStart"] == month_start
        assert r["BillingPeriodEnd"] == next_month
        assert r["BillingPeriodStart"] <= start < end <= r["BillingPeriodEnd"]
    assert seen == {d for _, d in by_day}


def test_the_csv_view_writes_date_times_in_the_focus_format(
    engine: Engine, focus_rows: list[dict[str, Any]]
) -> None:
    with engine.connect() as conn:
        conn.execute(text("SET TimeZone = 'America/Los_Angeles'"))
        rows = [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {CSV_VIEW}"))]
    typed = {r["ChargePeriodStart"].astimezone(UTC).date() for r in focus_rows}
    written = set()
    for r in rows:
        for column in ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart",
                       "BillingPeriodEnd"):  # fmt: skip
            assert DATETIME_FORMAT.fullmatch(r[column]), (column, r[column])
        written.add(dt.date.fromisoformat(r["ChargePeriodStart"][:10]))
    assert written == typed
    assert len(rows) == len(focus_rows)


def test_costs_add_up_to_the_chargeback_table_per_organization(
    engine: Engine, focus_rows: list[dict[str, Any]]
) -> None:
    with engine.connect() as conn:
        expected = dict(
            conn.execute(
                text(
                    f"SELECT organization, sum(allocated_usd) FROM {S}.cost_allocation_daily "
                    "GROUP BY 1"
                )
            ).all()
        )
    billed: dict[str, Decimal] = {}
    for r in focus_rows:
        billed[r["BillingAccountId"]] = (
            billed.get(r["BillingAccountId"], Decimal(0)) + r["BilledCost"]
        )
        # No commitments or amortization, no negotiated price apart from what was billed.
        assert r["EffectiveCost"] == r["BilledCost"] == r["ContractedCost"]
    assert billed == expected
    assert set(billed) == {"org-a", "org-b"}
    # ListCost: the list-price estimate; with none, the billed share (never NULL).
    by_cost = {(r["organization"], r["allocated_usd"], r["line_item"]): r for r in ROWS}
    for r in focus_rows:
        source = by_cost[(r["BillingAccountId"], r["BilledCost"], r["ChargeDescription"])]
        estimate = source["estimated_usd"]
        assert r["ListCost"] == (estimate if estimate is not None else source["allocated_usd"])
        assert r["x_ListCostSource"] == (
            "List price estimate" if estimate is not None else "Billed cost"
        )


def test_units_follow_the_unit_format(engine: Engine, focus_rows: list[dict[str, Any]]) -> None:
    units = {r["x_UsageKind"]: r["PricingUnit"] for r in focus_rows if r["PricingUnit"]}
    assert units == {
        "completions": "Tokens",
        "embeddings": "1000 Tokens",
        "images": "Images",
        "audio_speeches": "Characters",
        "audio_transcriptions": "Seconds",
        "vector_stores": "GiB-Hours",
        "web_search_calls": "Calls",
        "code_interpreter_sessions": "Sessions",
    }
    for r in focus_rows:
        for column in ("PricingUnit", "ConsumedUnit"):
            assert r[column] is None or UNIT_FORMAT.fullmatch(r[column]), (column, r[column])
    # Units the test rows do not have, and one nobody knows yet (a new count-based noun).
    with engine.connect() as conn:
        mapped = dict(
            conn.execute(
                text(f"SELECT u, {S}.focus_unit(u) FROM unnest(CAST(:units AS text[])) u"),
                {
                    "units": [
                        "gigabyte_days",
                        "duration_minutes",
                        " Requests ",
                        "api_widgets",
                        "1000000_tokens",
                    ]
                },
            ).all()
        )
    assert mapped == {
        "gigabyte_days": "GB-Days",
        "duration_minutes": "Minutes",
        " Requests ": "Requests",
        "api_widgets": "ApiWidgets",
        "1000000_tokens": "1000000 Tokens",
    }
    assert all(UNIT_FORMAT.fullmatch(unit) for unit in mapped.values())


def test_a_bill_without_a_quantity_is_an_adjustment(focus_rows: list[dict[str, Any]]) -> None:
    [r] = [r for r in focus_rows if r["ChargeDescription"] == "fine-tuning training"]
    assert r["ChargeCategory"] == "Adjustment"
    assert r["PricingQuantity"] is r["ConsumedQuantity"] is r["PricingCategory"] is None
    assert r["ServiceName"] == "OpenAI API"
    assert r["ServiceSubcategory"] == "Other (AI and Machine Learning)"
    assert r["BilledCost"] == Decimal("12")
    usage = [r for r in focus_rows if r["ChargeCategory"] == "Usage"]
    assert len(usage) == len(ROWS) - 1


def test_projects_keys_and_users_are_named_from_their_own_organization(
    focus_rows: list[dict[str, Any]],
) -> None:
    subaccounts = {
        (r["BillingAccountId"], r["SubAccountId"], r["SubAccountName"]) for r in focus_rows
    }
    assert subaccounts == {
        ("org-a", "proj_shared", "Search (A)"),
        ("org-a", "org-a/default-project", "Default project"),
        ("org-b", "proj_shared", "Search (B)"),
        ("org-b", "org-b/default-project", "Default project"),
    }
    assert {r["SubAccountType"] for r in focus_rows} == {"Project"}
    keys = {
        (r["BillingAccountId"], r["ResourceId"], r["ResourceName"], r["x_ApiKeyRedactedValue"])
        for r in focus_rows
        if r["ResourceId"]
    }
    assert keys == {
        ("org-a", "key_a", "search-backend", "sk-...aaaa"),
        ("org-a", "key_unnamed", None, "sk-...cccc"),
        ("org-b", "key_a", "research-notebook", "sk-...bbbb"),
    }
    assert {r["ResourceType"] for r in focus_rows if r["ResourceId"]} == {"API Key"}
    users = {(r["BillingAccountId"], r["x_UserId"], r["x_UserName"]) for r in focus_rows}
    assert ("org-a", "user_a", "Ada") in users and ("org-b", "user_a", "Grace") in users
    assert ("org-a", "user_b", None) in users  # not in the names table


def test_sku_and_service_per_line_item(focus_rows: list[dict[str, Any]]) -> None:
    by_line_item = {r["ChargeDescription"]: r for r in focus_rows}
    cached = by_line_item["gpt-4o, cached input"]
    assert cached["SkuId"] == cached["SkuPriceId"] == "completions: gpt-4o, cached input"
    assert cached["SkuMeter"] == "Tokens (cached input)"
    assert cached["ServiceName"] == "OpenAI Responses and Chat Completions"
    assert cached["x_UnallocatedReason"] and cached["x_AllocationBasis"] is None
    assert by_line_item["vector store storage"]["ServiceName"] == "OpenAI Vector Stores"
    # The same line item is the same SKU in both organizations.
    skus = {r["SkuId"] for r in focus_rows if r["ChargeDescription"] == "gpt-4o-2024-08-06, input"}
    assert skus == {"completions: gpt-4o-2024-08-06, input"}


def test_the_readonly_role_reads_both_views(engine: Engine, focus_rows: list[Any]) -> None:
    with engine.connect() as conn:
        conn.execute(text("SET ROLE usage_readonly"))
        assert len(conn.execute(text(f"SELECT * FROM {VIEW}")).all()) == len(ROWS)
        assert len(conn.execute(text(f"SELECT * FROM {CSV_VIEW}")).all()) == len(ROWS)
        conn.execute(text("RESET ROLE"))


def test_x_simulated_is_the_day_of_its_loads(engine: Engine, focus_rows: list[Any]) -> None:
    """x_Simulated (migration 0015): true for the rows of an organization's day that some
    usage load from the simulator recorded, whatever the other organization's loads of that
    day; 'true' / 'false' in the CSV view."""
    day = dt.date(2026, 11, 14)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {S}.usage_loads (organization, endpoint, usage_date, row_count, "
                "bucket_count, group_by, simulated, source_url) VALUES "
                "(:org, :endpoint, :day, 1, 1, '{project_id}', :simulated, 'test')"
            ),
            [
                {"org": "org-a", "endpoint": "images", "day": day, "simulated": True},
                {"org": "org-a", "endpoint": "completions", "day": day, "simulated": False},
                {"org": "org-b", "endpoint": "completions", "day": day, "simulated": False},
            ],
        )
        typed = [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {VIEW}"))]
        as_csv = [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {CSV_VIEW}"))]
    expected = [
        r["BillingAccountId"] == "org-a" and r["ChargePeriodStart"].astimezone(UTC).date() == day
        for r in typed
    ]
    assert [r["x_Simulated"] for r in typed] == expected
    assert any(expected) and not all(expected)
    assert sorted(r["x_Simulated"] for r in as_csv) == sorted(
        "true" if simulated else "false" for simulated in expected
    )
