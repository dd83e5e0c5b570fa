# The usage_assets code location: a Dagster code server on port 4000, for a user-code deployment
# of the official Dagster Helm chart (which also runs each run's worker pod from this image) or
# any host that runs `dagster code-server`. See docs/deploy-kubernetes.md.
#
#   docker build -t registry.example.com/usage-assets:$(git rev-parse --short HEAD) .
#
# The repository layout is kept under /opt/usage_assets and the package installed editable:
# usage_assets.settings.PROJECT_ROOT is the parent of the package directory, where
# usage_assets.warehouse.database looks for alembic.ini and alembic/ (migrations) and prices/ (relative
# USAGE_PRICE_OVERRIDES paths).
#
# Checked statically by usage_assets_tests/test_production_instance.py; no Docker daemon was
# available where it was written, so this image has not been built there.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

WORKDIR /opt/usage_assets

# Exactly the pinned, tested set (every package is a wheel: no compiler needed), in its own
# layer so code changes do not reinstall it.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml README.md alembic.ini workspace.yaml ./
COPY alembic ./alembic
COPY prices ./prices
COPY usage_assets ./usage_assets
# Dependencies are already installed from the lock; this only links the package (and the
# `usage-db` command) to /opt/usage_assets.
RUN pip install --no-cache-dir --no-deps -e .

# Non-root. DAGSTER_HOME is writable for it: the Helm chart mounts dagster.yaml there, and a
# run worker keeps local compute logs under it.
RUN groupadd --system --gid 10001 usage \
    && useradd --system --uid 10001 --gid usage --create-home --home-dir /home/usage usage \
    && mkdir -p "$DAGSTER_HOME" \
    && chown -R usage:usage /opt/dagster
USER 10001:10001

EXPOSE 4000

# No ENTRYPOINT: the Helm chart replaces this command with its own `dagster code-server start`
# (codeServerArgs), and run workers with `dagster api execute_run`.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "usage_assets.definitions"]
