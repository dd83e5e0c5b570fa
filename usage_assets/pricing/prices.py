"""Model prices: genai-prices (bundled, offline) plus the user's override file, snapshotted into
`openai_usage.model_prices` so a past day keeps the prices it was priced with.

The snapshot only grows by itself: a price that genai-prices does not have yet is added, but a
price that changed in a newer genai-prices release replaces the stored one only when re-pricing
is asked for (`reprice: true` in the cost asset's run config). Override rows always follow the
override file, which is the user's explicit statement of their prices.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.metadata
import importlib.resources
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, insert, select, text, update

from usage_assets.admin_api.endpoints import ENDPOINTS_BY_NAME, UsageEndpoint
from usage_assets.errors import ConfigurationError
from usage_assets.warehouse.models import UNIT_USAGE_KINDS, ModelAlias, ModelPrice, UnitPrice
from usage_assets.warehouse.replace import lock_partition

RATE_FIELDS: tuple[str, ...] = (
    "input_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "cache_write_12h_mtok",
    "input_audio_mtok",
    "cache_audio_read_mtok",
    "input_image_mtok",
    "cache_image_read_mtok",
    "output_mtok",
    "output_audio_mtok",
    "output_image_mtok",
)
#: Service tiers genai-prices prices as variants of the default rates.
VARIANT_TIERS = ("flex", "priority")
#: OpenAI's Batch API discount, used where genai-prices has no batch variant for a rate.
BATCH_DISCOUNT = Decimal("0.5")
SINCE_EVER = dt.date(1970, 1, 1)
OVERRIDE_SOURCE = "override"
PROVIDER = "openai"


def genai_prices_source() -> str:
    return f"genai-prices {importlib.metadata.version('genai-prices')}"


@dataclass(frozen=True)
class PriceRow:
    """USD per million tokens of each kind for one model, tier and batch flag over a period."""

    model_ref: str
    service_tier: str
    batch: bool
    effective_from: dt.date
    effective_to: dt.date | None
    rates: Mapping[str, Decimal | None]
    source: str
    rule: str | None = None

    @property
    def key(self) -> tuple[str, str, bool, dt.date]:
        return (self.model_ref, self.service_tier, self.batch, self.effective_from)

    def values(self) -> dict[str, Any]:
        return {
            "model_ref": self.model_ref,
            "service_tier": self.service_tier,
            "batch": self.batch,
            "effective_from": self.effective_from,
            "effective_to": self.effective_to,
            **{name: self.rates.get(name) for name in RATE_FIELDS},
            "source": self.source,
            "rule": self.rule,
        }

    def same_prices(self, other: Mapping[str, Any]) -> bool:
        mine = self.values()
        return all(_same(mine[name], other[name]) for name in ("effective_to", *RATE_FIELDS))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a == b
    return bool(a == b)


# --------------------------------------------------------------------------- genai-prices


def _snapshot() -> Any:
    from genai_prices import data_snapshot

    return data_snapshot.get_snapshot()


def _rates_of(model_price: Any, fields: Sequence[str] = RATE_FIELDS) -> dict[str, Decimal | None]:
    rates: dict[str, Decimal | None] = {}
    for name in fields:
        value = getattr(model_price, name, None)
        if value is not None and not isinstance(value, Decimal):
            value = getattr(value, "base", None)  # TieredPrices: the base (short-context) rate
        rates[name] = value
    return rates


def _periods(
    model: Any, fields: Sequence[str] = RATE_FIELDS
) -> list[tuple[dt.date, dt.date | None, dict[str, Decimal | None]]]:
    """The model's base prices as [from, to) periods, from genai-prices' start-date constraints."""
    from genai_prices.types import ConditionalPrice, StartDateConstraint

    prices = model.prices
    if not isinstance(prices, list):
        return [(SINCE_EVER, None, _rates_of(prices, fields))]
    starts: list[tuple[dt.date, dict[str, Decimal | None]]] = []
    for conditional in prices:
        assert isinstance(conditional, ConditionalPrice)
        constraint = conditional.constraint
        if constraint is None:
            starts.append((SINCE_EVER, _rates_of(conditional.prices, fields)))
        elif isinstance(constraint, StartDateConstraint):
            starts.append((constraint.start_date, _rates_of(conditional.prices, fields)))
        # Time-of-day prices (off-peak discounts) do not apply to OpenAI; skipped.
    starts.sort(key=lambda item: item[0])
    return [
        (start, starts[i + 1][0] if i + 1 < len(starts) else None, rates)
        for i, (start, rates) in enumerate(starts)
    ]


def _variants(model: Any) -> dict[tuple[str, bool], dict[str, Decimal | None]]:
    """Partial prices for the flex/priority tiers and for batch, keyed by (tier, batch)."""
    found: dict[tuple[str, bool], dict[str, Decimal | None]] = {}
    for variant in model.price_variants or ():
        when = variant.when
        partial: dict[str, Decimal | None] = {
            k: v for k, v in _rates_of(variant.prices).items() if v is not None
        }
        if when.get("service_tier") in VARIANT_TIERS and len(when) == 1:
            found[(when["service_tier"], False)] = partial
        elif when == {"processing": "batch"}:
            found[("default", True)] = partial
    return found


def genai_price_rows() -> list[PriceRow]:
    """Every OpenAI model genai-prices knows, per tier, batch flag and price period."""
    source = genai_prices_source()
    provider = next(p for p in _snapshot().providers if p.id == PROVIDER)
    rows: list[PriceRow] = []
    for model in provider.models:
        variants = _variants(model)
        for start, end, base in _periods(model):
            rows.append(PriceRow(model.id, "default", False, start, end, base, source, "base"))
            batch = variants.get(("default", True), {})
            rows.append(
                PriceRow(
                    model.id, "default", True, start, end,
                    {k: batch.get(k, v * BATCH_DISCOUNT if v is not None else None)
                     for k, v in base.items()},
                    source,
                    "batch variant" + ("" if batch.keys() >= {k for k, v in base.items() if v}
                                       else "; other rates at 50% (Batch API discount)"),
                )
            )  # fmt: skip
            for tier in VARIANT_TIERS:
                if (tier, False) in variants:
                    merged = {**base, **variants[(tier, False)]}
                    rows.append(
                        PriceRow(
                            model.id, tier, False, start, end, merged, source, f"{tier} variant"
                        )
                    )
    return rows


def resolve_model(model: str, override_models: Iterable[str] = ()) -> tuple[str | None, str]:
    """(model_ref, resolved_by) for a reported model name; dated snapshots resolve to the model."""
    if model in set(override_models):
        return model, OVERRIDE_SOURCE
    try:
        _, info = _snapshot().find_provider_model(model, None, PROVIDER, None)
    except LookupError:
        return None, "unresolved"
    return str(info.id), "genai-prices"


# --------------------------------------------------------------------------- override file


def _decimal(value: Any, where: str, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{where}: {name}={value!r} is not a price")
    try:
        parsed = Decimal(str(value))
    except InvalidOperation:
        raise ConfigurationError(f"{where}: {name}={value!r} is not a number") from None
    if parsed < 0 or not parsed.is_finite():
        raise ConfigurationError(f"{where}: {name}={value!r} must be a non-negative number")
    return parsed


def _date(value: Any, where: str, name: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigurationError(f"{where}: {name}={value!r} is not a YYYY-MM-DD date") from None


def _bool(value: Any, where: str) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise ConfigurationError(f"{where}: batch={value!r} must be true or false")


ALLOWED_OVERRIDE_KEYS = {
    "model", "service_tier", "batch", "effective_from", "effective_to", "note", *RATE_FIELDS,
}  # fmt: skip


def parse_override(entry: Mapping[str, Any], where: str) -> PriceRow:
    unknown = set(entry) - ALLOWED_OVERRIDE_KEYS
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(ALLOWED_OVERRIDE_KEYS)}"
        )
    model = entry.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError(f"{where}: 'model' is required")
    rates = {name: _decimal(entry.get(name), where, name) for name in RATE_FIELDS}
    if all(rate is None for rate in rates.values()):
        raise ConfigurationError(f"{where}: give at least one rate ({', '.join(RATE_FIELDS)})")
    start = _date(entry.get("effective_from"), where, "effective_from") or SINCE_EVER
    end = _date(entry.get("effective_to"), where, "effective_to")
    if end is not None and end <= start:
        raise ConfigurationError(f"{where}: effective_to must be after effective_from")
    tier = str(entry.get("service_tier") or "default")
    note = entry.get("note")
    return PriceRow(
        model.strip(), tier, _bool(entry.get("batch"), where), start, end, rates,
        OVERRIDE_SOURCE, str(note) if note else "override file",
    )  # fmt: skip


def load_overrides(path: Path | None) -> list[PriceRow]:
    """Model prices of USAGE_PRICE_OVERRIDES alone (YAML list or CSV with a header row), not the
    shipped ones. The whole file is validated, its `unit_prices:` too."""
    return _read_price_file(path)[0]


def load_override_unit_prices(path: Path | None) -> list[UnitPriceRow]:
    """Unit prices from USAGE_PRICE_OVERRIDES' `unit_prices:` (YAML only)."""
    return load_price_file(path)[1]


TOP_LEVEL_KEYS = ("prices", "unit_prices")


def _yaml_document(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from None
    except ValueError as exc:  # YAML turned an impossible date into an error
        raise ConfigurationError(f"{path}: {exc}; dates are YYYY-MM-DD") from None


def _entries(path: Path, document: Any, key: str) -> list[tuple[str, Mapping[str, Any]]]:
    if not isinstance(document, list) or not all(isinstance(e, dict) for e in document):
        raise ConfigurationError(f"{path}: expected a list of price entries (or '{key}:')")
    return [(f"{path} {key} entry #{i}", e) for i, e in enumerate(document, start=1)]


#: Token prices shipped where genai-prices has none; they join the override rows.
BUNDLED_MODEL_PRICES = "pricing/model_prices.yaml"


def bundled_model_price_rows() -> list[PriceRow]:
    """The package's token prices for what genai-prices lacks (usage_assets/pricing/
    model_prices.yaml): override rows that the user's file can replace."""
    resource = importlib.resources.files("usage_assets").joinpath(BUNDLED_MODEL_PRICES)
    document = yaml.safe_load(resource.read_text())
    where = f"usage_assets/{BUNDLED_MODEL_PRICES}"
    return [
        parse_override(entry, f"{where} entry #{i}")
        for i, entry in enumerate(document["prices"], start=1)
    ]


def load_price_file(path: Path | None) -> tuple[list[PriceRow], list[UnitPriceRow]]:
    """(model prices, unit prices) of a price file (a YAML list of model prices, a YAML mapping
    with `prices:` and/or `unit_prices:`, or a CSV of model prices), the model prices together
    with the shipped ones (`bundled_model_price_rows`) the file does not replace."""
    rows, units = _read_price_file(path)
    replaced = {row.key for row in rows}
    shipped = [row for row in bundled_model_price_rows() if row.key not in replaced]
    return [*rows, *shipped], units


def _read_price_file(path: Path | None) -> tuple[list[PriceRow], list[UnitPriceRow]]:
    if path is None:
        return [], []
    if not path.exists():
        raise ConfigurationError(f"USAGE_PRICE_OVERRIDES={path} does not exist")
    entries: list[tuple[str, Mapping[str, Any]]]
    unit_entries: list[tuple[str, Mapping[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            entries = [
                (f"{path}:{line}", {k: v for k, v in row.items() if v not in (None, "")})
                for line, row in enumerate(csv.DictReader(handle), start=2)
            ]
    elif path.suffix.lower() in (".yaml", ".yml"):
        document = _yaml_document(path)
        if isinstance(document, dict):
            unknown = set(document) - set(TOP_LEVEL_KEYS)
            if unknown:
                raise ConfigurationError(
                    f"{path}: unknown top-level keys {sorted(unknown)}; allowed: "
                    f"{list(TOP_LEVEL_KEYS)}"
                )
            entries = _entries(path, document.get("prices") or [], "prices")
            unit_entries = _entries(path, document.get("unit_prices") or [], "unit_prices")
        else:
            entries = _entries(path, document, "prices")
    else:
        raise ConfigurationError(f"USAGE_PRICE_OVERRIDES={path}: use a .yaml, .yml or .csv file")
    rows = [parse_override(entry, where) for where, entry in entries]
    seen: dict[tuple[str, str, bool, dt.date], str] = {}
    for (where, _), row in zip(entries, rows, strict=True):
        if row.key in seen:
            raise ConfigurationError(f"{where} repeats the price of {seen[row.key]}")
        seen[row.key] = where
    return rows, _unit_rows(unit_entries, OVERRIDE_SOURCE)


# --------------------------------------------------------------------------- snapshot sync


@dataclass
class SyncReport:
    inserted: int = 0
    superseded: int = 0
    #: genai-prices rows that differ from the stored snapshot (kept until re-pricing).
    stale: list[str] = field(default_factory=list)


def sync_price_snapshot(
    conn: Connection, rows: Sequence[PriceRow], *, reprice: bool = False
) -> SyncReport:
    """Bring `model_prices` in line with `rows` (see the module docstring for the rules)."""
    lock_partition(conn, ModelPrice.__table__)  # type: ignore[arg-type]
    report = SyncReport()
    table = ModelPrice.__table__
    stored_rows = conn.execute(select(table).where(table.c.superseded_at.is_(None))).mappings()
    active: dict[tuple[Any, ...], Mapping[str, Any]] = {
        (
            r["model_ref"],
            r["service_tier"],
            r["batch"],
            r["effective_from"],
            r["source"] == OVERRIDE_SOURCE,
        ): dict(r)
        for r in stored_rows
    }
    now = dt.datetime.now(dt.UTC)
    wanted_overrides = {row.key for row in rows if row.source == OVERRIDE_SOURCE}
    to_insert: list[dict[str, Any]] = []
    to_supersede: list[int] = []
    for (*key, was_override), kept in active.items():
        if was_override and tuple(key) not in wanted_overrides:
            to_supersede.append(kept["price_id"])  # removed from the override file
    for row in rows:
        is_override = row.source == OVERRIDE_SOURCE
        stored = active.get((*row.key, is_override))
        if stored is None:
            to_insert.append(row.values())
            continue
        if row.same_prices(stored):
            continue
        if is_override or reprice:
            to_supersede.append(stored["price_id"])
            to_insert.append(row.values())
        else:
            report.stale.append(f"{row.model_ref} ({row.service_tier}, batch={row.batch})")
    if to_supersede:
        conn.execute(
            update(ModelPrice)
            .where(ModelPrice.price_id.in_(to_supersede))
            .values(superseded_at=now)
        )
    if to_insert:
        conn.execute(insert(ModelPrice), to_insert)
    report.inserted, report.superseded = len(to_insert), len(to_supersede)
    return report


def sync_model_aliases(
    conn: Connection, models: Iterable[str], override_models: Iterable[str]
) -> dict[str, str | None]:
    """Resolve each reported model name and store the mapping; returns {model: model_ref}.

    Only new or changed mappings are written (in model order): an upsert locks the rows it
    meets, so two transactions pricing different days at once (`in_day_chunks`) would
    otherwise wait for each other's commit on every alias."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    overrides = set(override_models)
    resolved = {model: resolve_model(model, overrides) for model in sorted(set(models))}
    stored = {
        model: (ref, how)
        for model, ref, how in conn.execute(
            select(ModelAlias.model, ModelAlias.model_ref, ModelAlias.resolved_by).where(
                ModelAlias.model.in_(list(resolved))
            )
        )
    }
    changed = {model: found for model, found in resolved.items() if stored.get(model) != found}
    if changed:
        statement = pg_insert(ModelAlias).values(
            [
                {"model": model, "model_ref": ref, "resolved_by": how}
                for model, (ref, how) in changed.items()
            ]
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[ModelAlias.model],
                set_={
                    "model_ref": statement.excluded.model_ref,
                    "resolved_by": statement.excluded.resolved_by,
                    "updated_at": text("now()"),
                },
            )
        )
    return {model: ref for model, (ref, _) in resolved.items()}


# --------------------------------------------------------------------------- unit prices


@dataclass(frozen=True)
class UnitKind:
    """How a usage kind other than completions is priced: the metric summed per day (`per` of
    its units make one priced `unit`), and the dimensions a price may match on (`detail`)."""

    name: str
    unit: str
    metric: str
    per: int = 1
    detail: tuple[str, ...] = ()

    @property
    def endpoint(self) -> UsageEndpoint:
        return ENDPOINTS_BY_NAME[self.name]

    @property
    def has_model(self) -> bool:
        return "model" in self.endpoint.dimension_names


#: Every usage kind but completions (priced per token by `model_prices`), in endpoint order.
UNIT_KINDS: dict[str, UnitKind] = {
    kind.name: kind
    for kind in (
        UnitKind("embeddings", "tokens", "input_tokens"),
        UnitKind("moderations", "tokens", "input_tokens"),
        UnitKind("images", "images", "images", detail=("size", "source")),
        UnitKind("audio_speeches", "characters", "characters"),
        UnitKind("audio_transcriptions", "minutes", "seconds", per=60),
        # GiB-days, from v_vector_store_storage_daily (usage_bytes is a gauge).
        UnitKind("vector_stores", "gib_days", "gib_days"),
        UnitKind("code_interpreter_sessions", "sessions", "num_sessions"),
        UnitKind("file_search_calls", "calls", "num_requests"),
        UnitKind("web_search_calls", "calls", "num_requests", detail=("context_level",)),
    )
}
assert tuple(UNIT_KINDS) == UNIT_USAGE_KINDS
for _kind in UNIT_KINDS.values():
    assert set(_kind.detail) <= set(_kind.endpoint.dimension_names), _kind.name
    assert _kind.metric in (*_kind.endpoint.metric_names, "gib_days"), _kind.name

BUNDLED_SOURCE = "bundled"
BUNDLED_UNIT_PRICES = "pricing/unit_prices.yaml"
FREE_RULE = "free"
RATE_KEYS = {"usd_per_unit": Decimal(1), "usd_per_1k": Decimal(1000), "usd_per_1m": Decimal(10**6)}
ALLOWED_UNIT_KEYS = {
    "usage_kind", "model", "unit", *RATE_KEYS, "free_per_day", "effective_from", "effective_to",
    "note",
}  # fmt: skip


@dataclass(frozen=True)
class UnitPriceRow:
    """USD per unit of one usage kind, for a model (NULL: any; 'x*': a prefix) and dimension
    values (`match`), over a period."""

    usage_kind: str
    model: str | None
    match: Mapping[str, str]
    unit: str
    usd_per_unit: Decimal
    effective_from: dt.date = SINCE_EVER
    effective_to: dt.date | None = None
    free_per_day: Decimal | None = None
    source: str = BUNDLED_SOURCE
    rule: str | None = None
    note: str | None = None

    @property
    def key(self) -> tuple[str, str | None, tuple[tuple[str, str], ...], dt.date]:
        return (self.usage_kind, self.model, tuple(sorted(self.match.items())),
                self.effective_from)  # fmt: skip

    def values(self) -> dict[str, Any]:
        return {
            "usage_kind": self.usage_kind,
            "model": self.model,
            "match": dict(self.match),
            "unit": self.unit,
            "usd_per_unit": self.usd_per_unit,
            "free_per_day": self.free_per_day,
            "effective_from": self.effective_from,
            "effective_to": self.effective_to,
            "source": self.source,
            "rule": self.rule,
            "note": self.note,
        }

    def same_prices(self, other: Mapping[str, Any]) -> bool:
        mine = self.values()
        return all(
            _same(mine[name], other[name])
            for name in ("unit", "usd_per_unit", "free_per_day", "effective_to")
        )


def parse_unit_price(entry: Mapping[str, Any], where: str, source: str) -> UnitPriceRow:
    kind_name = entry.get("usage_kind")
    if kind_name not in UNIT_KINDS:
        raise ConfigurationError(
            f"{where}: usage_kind={kind_name!r}; one of {', '.join(UNIT_KINDS)} (completions "
            "are priced per token under 'prices:')"
        )
    kind = UNIT_KINDS[str(kind_name)]
    unknown = set(entry) - ALLOWED_UNIT_KEYS - set(kind.detail)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown keys {sorted(unknown)}; allowed for {kind.name}: "
            f"{sorted(ALLOWED_UNIT_KEYS | set(kind.detail))}"
        )
    model = entry.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ConfigurationError(f"{where}: model={model!r} must be a model name")
    if model is not None and not kind.has_model:
        raise ConfigurationError(f"{where}: {kind.name} usage has no model")
    unit = str(entry.get("unit") or kind.unit)
    if unit != kind.unit:
        raise ConfigurationError(f"{where}: {kind.name} is priced per {kind.unit}, not {unit!r}")
    given = [name for name in RATE_KEYS if entry.get(name) not in (None, "")]
    if len(given) != 1:
        raise ConfigurationError(f"{where}: give exactly one of {', '.join(RATE_KEYS)}")
    rate = _decimal(entry[given[0]], where, given[0])
    assert rate is not None
    usd_per_unit = rate / RATE_KEYS[given[0]]
    free = _decimal(entry.get("free_per_day"), where, "free_per_day")
    start = _date(entry.get("effective_from"), where, "effective_from") or SINCE_EVER
    end = _date(entry.get("effective_to"), where, "effective_to")
    if end is not None and end <= start:
        raise ConfigurationError(f"{where}: effective_to must be after effective_from")
    match = {name: str(entry[name]) for name in kind.detail if entry.get(name) not in (None, "")}
    note = entry.get("note")
    rule = FREE_RULE if usd_per_unit == 0 else f"{given[0]} {rate}"
    return UnitPriceRow(
        kind.name, model.strip() if model else None, match, unit, usd_per_unit, start, end, free,
        source, rule, str(note) if note else None,
    )  # fmt: skip


def _unit_rows(entries: Sequence[tuple[str, Mapping[str, Any]]], source: str) -> list[UnitPriceRow]:
    rows = [parse_unit_price(entry, where, source) for where, entry in entries]
    seen: dict[tuple[Any, ...], str] = {}
    for (where, _), row in zip(entries, rows, strict=True):
        if row.key in seen:
            raise ConfigurationError(f"{where} repeats the unit price of {seen[row.key]}")
        seen[row.key] = where
    return rows


def bundled_unit_price_rows() -> list[UnitPriceRow]:
    """The package's list prices (usage_assets/pricing/unit_prices.yaml); every row names its
    source in `note`."""
    resource = importlib.resources.files("usage_assets").joinpath(BUNDLED_UNIT_PRICES)
    document = yaml.safe_load(resource.read_text())
    where = f"usage_assets/{BUNDLED_UNIT_PRICES}"
    return _unit_rows(
        [(f"{where} entry #{i}", e) for i, e in enumerate(document["unit_prices"], start=1)],
        BUNDLED_SOURCE,
    )


#: genai-prices rate fields that price a usage kind other than completions:
#: (field, usage kind, divisor to USD per unit of the kind).
GENAI_UNIT_FIELDS: tuple[tuple[str, str, Decimal], ...] = (
    ("input_mchars", "audio_speeches", Decimal(10**6)),
    ("audio_hours", "audio_transcriptions", Decimal(60)),
    ("web_searches_kcount", "web_search_calls", Decimal(1000)),
)


def genai_unit_price_rows() -> list[UnitPriceRow]:
    """Unit prices genai-prices has: embeddings (an embedding model's input rate), speech per
    character, transcription per audio hour, web searches per 1,000 calls."""
    source = genai_prices_source()
    provider = next(p for p in _snapshot().providers if p.id == PROVIDER)
    fields = ("input_mtok", *(name for name, _, _ in GENAI_UNIT_FIELDS))
    rows: list[UnitPriceRow] = []
    for model in provider.models:
        for start, end, rates in _periods(model, fields):
            found = [(name, kind, divisor) for name, kind, divisor in GENAI_UNIT_FIELDS
                     if rates.get(name) is not None]  # fmt: skip
            if "embedding" in model.id and rates.get("input_mtok") is not None:
                found.append(("input_mtok", "embeddings", Decimal(10**6)))
            for name, kind, divisor in found:
                rate = rates[name]
                assert rate is not None
                rows.append(
                    UnitPriceRow(
                        kind, str(model.id), {}, UNIT_KINDS[kind].unit, rate / divisor, start,
                        end, None, source, f"genai-prices {name} {rate}",
                        "https://github.com/pydantic/genai-prices",
                    )
                )  # fmt: skip
    return rows


def _source_class(source: str) -> str:
    return source if source in (OVERRIDE_SOURCE, BUNDLED_SOURCE) else "genai-prices"


def sync_unit_price_snapshot(
    conn: Connection, rows: Sequence[UnitPriceRow], *, reprice: bool = False
) -> SyncReport:
    """Bring `unit_prices` in line with `rows`, by the rules of `sync_price_snapshot`: override
    rows follow the file (removed ones retire); genai-prices and bundled rows are added, and a
    changed one replaces the stored one only when re-pricing."""
    lock_partition(conn, UnitPrice.__table__)  # type: ignore[arg-type]
    report = SyncReport()
    table = UnitPrice.__table__
    stored_rows = conn.execute(select(table).where(table.c.superseded_at.is_(None))).mappings()
    active: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for r in stored_rows:
        key = (r["usage_kind"], r["model"], tuple(sorted(r["match"].items())),
               r["effective_from"])  # fmt: skip
        active[(*key, _source_class(r["source"]))] = dict(r)
    wanted = {(*row.key, _source_class(row.source)) for row in rows}
    to_insert: list[dict[str, Any]] = []
    to_supersede: list[int] = [
        kept["unit_price_id"]
        for key, kept in active.items()
        if key[-1] == OVERRIDE_SOURCE and key not in wanted  # removed from the override file
    ]
    for row in rows:
        source_class = _source_class(row.source)
        stored = active.get((*row.key, source_class))
        if stored is None:
            to_insert.append(row.values())
        elif row.same_prices(stored):
            continue
        elif source_class == OVERRIDE_SOURCE or reprice:
            to_supersede.append(stored["unit_price_id"])
            to_insert.append(row.values())
        else:
            report.stale.append(f"{row.usage_kind} {row.model or '(any model)'} ({row.source})")
    if to_supersede:
        conn.execute(
            update(UnitPrice)
            .where(UnitPrice.unit_price_id.in_(to_supersede))
            .values(superseded_at=dt.datetime.now(dt.UTC))
        )
    if to_insert:
        conn.execute(insert(UnitPrice), to_insert)
    report.inserted, report.superseded = len(to_insert), len(to_supersede)
    return report
