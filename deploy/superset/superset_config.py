"""Superset's configuration for the usage_assets dashboard (`make superset`).

Superset reads this file through SUPERSET_CONFIG_PATH (usage_assets/bi/superset.py sets it). It
runs in its own virtual environment (.superset-venv): nothing here imports usage_assets.

Everything Superset keeps lives in `$USAGE_DATA_DIR/superset/` (default `.usage_data/superset/`
in the repository, beside the embedded PostgreSQL): its metadata database (SQLite) and its
SECRET_KEY, generated on first use and never committed. Losing the key makes the stored
database password unreadable; `make superset` then has to start over (delete the directory).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_REPOSITORY = Path(__file__).resolve().parents[2]
_USAGE_DATA_DIR = Path(os.environ.get("USAGE_DATA_DIR") or _REPOSITORY / ".usage_data")
SUPERSET_DATA_DIR = _USAGE_DATA_DIR.expanduser().resolve() / "superset"
SUPERSET_DATA_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)


def _secret_key(path: Path) -> str:
    """The key in `path`, made once (mode 0600). Published with link(), which fails if the file
    exists: two first starts agree on one key, and no one reads a half-written file."""
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if not key:
        raise RuntimeError(f"{path} is empty; delete it (and {path.parent}) to start over")
    return key


SECRET_KEY = _secret_key(SUPERSET_DATA_DIR / "secret_key")
SQLALCHEMY_DATABASE_URI = f"sqlite:///{SUPERSET_DATA_DIR / 'superset.db'}?check_same_thread=false"
DATA_DIR = str(SUPERSET_DATA_DIR)

# The usage database is PostgreSQL; only the read-only role's URL is ever stored here.
PREVENT_UNSAFE_DB_CONNECTIONS = True
# A local tool on loopback: no rate-limit store to run (the default in-memory one warns).
RATELIMIT_ENABLED = False
RATELIMIT_STORAGE_URI = "memory://"
# No feature flag: the dashboard (deploy/superset/dashboard, a version 1.0.0 export bundle) is
# imported with ImportAssetsCommand, always available in Superset 6.
FEATURE_FLAGS: dict[str, bool] = {}
SUPERSET_WEBSERVER_TIMEOUT = 120
SQLLAB_TIMEOUT = 120
