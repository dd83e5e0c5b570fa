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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, insert, select, text, update

from usage_assets.errors import ConfigurationError
from usage_assets.models import ModelAlias, ModelPrice

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


def _rates_of(model_price: Any) -> dict[str, Decimal | None]:
    rates: dict[str, Decimal | None] = {}
    for name in RATE_FIELDS:
        value = getattr(model_price, name, None)
        if value is not None and not isinstance(value, Decimal):
            value = getattr(value, "base", None)  # TieredPrices: the base (short-context) rate
        rates[name] = value
    return rates


def _periods(model: Any) -> list[tuple[dt.date, dt.date | None, dict[str, Decimal | None]]]:
    """The model's base prices as [from, to) periods, from genai-prices' start-date constraints."""
    from genai_prices.types import ConditionalPrice, StartDateConstraint

    prices = model.prices
    if not isinstance(prices, list):
        return [(SINCE_EVER, None, _rates_of(prices))]
    starts: list[tuple[dt.date, dict[str, Decimal | None]]] = []
    for conditional in prices:
        assert isinstance(conditional, ConditionalPrice)
        constraint = conditional.constraint
        if constraint is None:
            starts.append((SINCE_EVER, _rates_of(conditional.prices)))
        elif isinstance(constraint, StartDateConstraint):
            starts.append((constraint.start_date, _rates_of(conditional.prices)))
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
    """Prices from USAGE_PRICE_OVERRIDES (YAML list or CSV with a header row)."""
    if path is None:
        return []
    if not path.exists():
        raise ConfigurationError(f"USAGE_PRICE_OVERRIDES={path} does not exist")
    entries: list[tuple[str, Mapping[str, Any]]]
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            entries = [
                (f"{path}:{line}", {k: v for k, v in row.items() if v not in (None, "")})
                for line, row in enumerate(csv.DictReader(handle), start=2)
            ]
    elif path.suffix.lower() in (".yaml", ".yml"):
        try:
            document = yaml.safe_load(path.read_text()) or []
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path} is not valid YAML: {exc}") from None
        except ValueError as exc:  # YAML turned an impossible date into an error
            raise ConfigurationError(f"{path}: {exc}; dates are YYYY-MM-DD") from None
        if isinstance(document, dict):
            document = document.get("prices", [])
        if not isinstance(document, list) or not all(isinstance(e, dict) for e in document):
            raise ConfigurationError(f"{path}: expected a list of price entries (or 'prices:')")
        entries = [(f"{path} entry #{i}", e) for i, e in enumerate(document, start=1)]
    else:
        raise ConfigurationError(f"USAGE_PRICE_OVERRIDES={path}: use a .yaml, .yml or .csv file")
    rows = [parse_override(entry, where) for where, entry in entries]
    seen: dict[tuple[str, str, bool, dt.date], str] = {}
    for (where, _), row in zip(entries, rows, strict=True):
        if row.key in seen:
            raise ConfigurationError(f"{where} repeats the price of {seen[row.key]}")
        seen[row.key] = where
    return rows


# --------------------------------------------------------------------------- snapshot sync


@dataclass
class SyncReport:
    inserted: int = 0
    superseded: int = 0
    #: genai-prices rows that differ from the stored snapshot (kept until re-pricing).
    stale: list[str] = field(default_factory=list)


_SYNC_LOCK = 0x7072696365735F31  # "prices_1"


def sync_price_snapshot(
    conn: Connection, rows: Sequence[PriceRow], *, reprice: bool = False
) -> SyncReport:
    """Bring `model_prices` in line with `rows` (see the module docstring for the rules)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SYNC_LOCK})
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
    """Resolve each reported model name and store the mapping; returns {model: model_ref}."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    overrides = set(override_models)
    resolved = {model: resolve_model(model, overrides) for model in sorted(set(models))}
    if resolved:
        statement = pg_insert(ModelAlias).values(
            [
                {"model": model, "model_ref": ref, "resolved_by": how}
                for model, (ref, how) in resolved.items()
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
