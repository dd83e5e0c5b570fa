"""Dagster resources: the Admin API (real or simulated) and the usage database.

Secrets arrive through `EnvVar`, so the Dagster UI shows the variable's name, never its value.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from usage_assets import settings
from usage_assets.admin_api.transport import AdminAPIClient, Logger, RetrySettings
from usage_assets.chargeback.anomalies import AnomalyRule
from usage_assets.errors import ConfigurationError
from usage_assets.warehouse.database import (
    engine_for,
    prepare_schema,
    resolve_url,
    unreachable_database_fails_clearly,
)

SIMULATED_BANNER = (
    "SIMULATED DATA: OPENAI_ADMIN_KEY is not set, so usage comes from the built-in simulated "
    "Admin API (a synthetic demo organization), not from your OpenAI organization."
)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class AdminAPIConnection:
    client: AdminAPIClient
    simulated: bool

    @property
    def source_url(self) -> str:
        return "simulator" if self.simulated else self.client.base_url

    def metadata(self, *, include_request_count: bool) -> dict[str, dg.MetadataValue]:
        """Where the data came from, loudly when it is the simulator; and what it cost in calls,
        where that is true of what is reported (a range run's total is not any one day's)."""
        metadata: dict[str, dg.MetadataValue] = {
            "simulated": dg.MetadataValue.bool(self.simulated),
            "data_source": dg.MetadataValue.text(
                "SIMULATED demo organization (no OPENAI_ADMIN_KEY)"
                if self.simulated
                else self.source_url
            ),
        }
        if include_request_count:
            metadata["api_requests"] = dg.MetadataValue.int(self.client.request_count)
        return metadata


class OpenAIAdminResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Read access to the OpenAI Admin API; with no admin key, the built-in simulator."""

    admin_key: str | None = Field(
        default=None,
        repr=False,
        description="Admin API key (sk-admin-…), from OPENAI_ADMIN_KEY. Unset: simulated data.",
    )
    base_url: str | None = Field(
        default=None, description=f"OPENAI_BASE_URL; unset means {settings.DEFAULT_BASE_URL}."
    )
    organization: str | None = Field(default=None, description="OPENAI_ORGANIZATION header.")
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 120.0
    max_attempts: int = Field(default=8, description="HTTP attempts per page, retries included.")
    max_backoff_seconds: float = 60.0

    def _check(self) -> None:
        if self.admin_key or self.base_url is None:
            return
        host = urlsplit(self.base_url).hostname or ""
        if host not in LOOPBACK_HOSTS:
            raise ConfigurationError(
                f"OPENAI_ADMIN_KEY is not set, but OPENAI_BASE_URL points at {self.base_url}. "
                "Set OPENAI_ADMIN_KEY to an organization Admin API key, or unset OPENAI_BASE_URL "
                "to run on the built-in simulated Admin API."
            )

    @contextmanager
    def connect(self, log: Logger) -> Iterator[AdminAPIConnection]:
        """A client for one run; starts the in-process simulator when there is no key."""
        self._check()
        if self.admin_key or self.base_url:
            client = self._client(self.base_url or settings.DEFAULT_BASE_URL, log)
            try:
                yield AdminAPIConnection(client, simulated=False)
            finally:
                client.close()
            return
        from usage_assets.simulator.server import SimulatedAdminAPI

        log.warning(SIMULATED_BANNER)
        with SimulatedAdminAPI() as simulator:
            client = self._client(simulator.base_url, log)
            try:
                yield AdminAPIConnection(client, simulated=True)
            finally:
                client.close()

    def _client(self, base_url: str, log: Logger) -> AdminAPIClient:
        return AdminAPIClient(
            base_url,
            self.admin_key,
            organization=self.organization,
            connect_timeout_seconds=self.connect_timeout_seconds,
            read_timeout_seconds=self.read_timeout_seconds,
            retry=RetrySettings(
                max_attempts=self.max_attempts, max_backoff_seconds=self.max_backoff_seconds
            ),
            log=log,
        )


class UsageDatabase(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The PostgreSQL database holding the `openai_usage` schema."""

    url: str | None = Field(
        default=None,
        description="USAGE_DATABASE_URL; unset means the embedded PostgreSQL under USAGE_DATA_DIR.",
    )
    auto_migrate: bool = Field(
        default=True, description="USAGE_AUTO_MIGRATE: upgrade to the Alembic head before writing."
    )
    organization: str = Field(
        default=settings.DEFAULT_ORGANIZATION_LABEL,
        description="The organization this code location's rows belong to (OPENAI_ORGANIZATION, "
        "else USAGE_ORGANIZATION_LABEL): every day's replace is scoped to it.",
    )

    def engine(self) -> Engine:
        """The engine, with the schema checked (or migrated) to the code's revision."""
        engine = engine_for(resolve_url(self.url))
        source = (
            "USAGE_DATABASE_URL"
            if self.url or settings.database_url()
            else "the embedded PostgreSQL of USAGE_DATA_DIR on USAGE_EMBEDDED_PG_PORT"
        )
        with unreachable_database_fails_clearly(engine, source):
            prepare_schema(engine, auto_migrate=self.auto_migrate)
        return engine


def openai_admin_from_env() -> OpenAIAdminResource:
    """Bind each setting to its environment variable when set (the UI shows names, not values)."""
    settings.base_url()  # validate early: a malformed URL fails the code location load
    return OpenAIAdminResource(
        admin_key=dg.EnvVar("OPENAI_ADMIN_KEY") if settings.admin_key() else None,
        base_url=dg.EnvVar("OPENAI_BASE_URL") if settings.base_url() else None,
        organization=dg.EnvVar("OPENAI_ORGANIZATION") if settings.organization() else None,
    )


def usage_database_from_env() -> UsageDatabase:
    return UsageDatabase(
        url=dg.EnvVar("USAGE_DATABASE_URL") if settings.database_url() else None,
        auto_migrate=settings.auto_migrate(),
        organization=settings.organization_label(),
    )


class PricingResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where prices come from beyond genai-prices, and how close estimates must be to the bill."""

    overrides_file: str | None = Field(
        default=None,
        description="USAGE_PRICE_OVERRIDES: YAML or CSV of negotiated / missing prices.",
    )
    reconciliation_tolerance: float = Field(
        default=0.05,
        description="USAGE_COST_TOLERANCE: allowed relative gap between estimated and billed.",
    )

    def overrides_path(self) -> Path | None:
        return settings.overrides_path(self.overrides_file)


def pricing_from_env() -> PricingResource:
    return PricingResource(
        overrides_file=dg.EnvVar("USAGE_PRICE_OVERRIDES") if settings.price_overrides() else None,
        reconciliation_tolerance=settings.cost_tolerance(),
    )


class AnomalyResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How far a project's day may depart from its baseline before `spend_anomalies` warns."""

    sensitivity: float = Field(
        default=3.5,
        description="USAGE_ANOMALY_SENSITIVITY: robust score (MADs from the median) that flags.",
    )
    baseline_days: int = Field(
        default=28, description="USAGE_ANOMALY_BASELINE_DAYS: days before a day in its baseline."
    )
    min_usd: float = Field(
        default=1.0,
        description="USAGE_ANOMALY_MIN_USD: smallest change from the baseline, in USD, flagged.",
    )

    def rule(self) -> AnomalyRule:
        return AnomalyRule(
            sensitivity=self.sensitivity,
            baseline_days=self.baseline_days,
            min_usd=Decimal(str(self.min_usd)),
        )


def anomalies_from_env() -> AnomalyResource:
    return AnomalyResource(
        sensitivity=settings.anomaly_sensitivity(),
        baseline_days=settings.anomaly_baseline_days(),
        min_usd=float(settings.anomaly_min_usd()),
    )


class BudgetsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the monthly budgets come from (the `budgets` asset loads them)."""

    budgets_file: str | None = Field(
        default=None,
        description="USAGE_BUDGETS: YAML or CSV of monthly budgets per project, API key or user; "
        "unset: no budgets.",
    )

    def path(self) -> Path | None:
        return settings.overrides_path(self.budgets_file)


def budgets_from_env() -> BudgetsResource:
    return BudgetsResource(budgets_file=dg.EnvVar("USAGE_BUDGETS") if settings.budgets() else None)
