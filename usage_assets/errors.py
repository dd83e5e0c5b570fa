"""Errors that name the problem, and the redaction that keeps the admin key out of them."""

from __future__ import annotations

import datetime as dt
import re

# OpenAI admin keys look like `sk-admin-…`; project keys `sk-proj-…`. Anything key-shaped is
# masked even when we do not know the exact secret (e.g. an upstream message echoing it).
_KEY_SHAPED = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


def redact(text: str, *secrets: str | None) -> str:
    """Remove every given secret, and anything shaped like an OpenAI key, from `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return _KEY_SHAPED.sub("sk-[REDACTED]", text)


class UsageAssetsError(Exception):
    """Base class: every error this package raises on purpose."""


class ConfigurationError(UsageAssetsError):
    """A setting is missing or malformed; nothing was fetched or written."""


class QueryValidationError(UsageAssetsError):
    """A usage query would be rejected by the API; caught before any request is sent."""


class AdminAPIError(UsageAssetsError):
    """The Admin API answered with an error that retrying cannot fix (4xx), or kept failing."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class PayloadError(UsageAssetsError):
    """The Admin API answered 200 with a body that does not match the documented contract."""


class IncompleteDayError(PayloadError):
    """A UTC day came back without all the hourly buckets it must have (see
    `ingest.ingest_days`): possibly a transient glitch, so the day is asked for again before
    giving up; permanent like every PayloadError once it is raised to the step."""

    def __init__(self, message: str, *, day: dt.date):
        super().__init__(message)
        self.day = day


class SchemaNotReadyError(UsageAssetsError):
    """The database is not migrated to the revision this code expects."""


class DatabaseUnavailableError(UsageAssetsError):
    """The usage database refused or did not answer the connection (wrong host or port, server
    down, bad credentials): a step retry minutes later would only delay the message."""


class DoubledRowsError(UsageAssetsError):
    """A computation produced two rows of one grain (a bug, not bad input); its transaction
    rolled back, so the rows stored before stay."""
