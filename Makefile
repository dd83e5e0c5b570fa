# Quickstart: `make dev` runs the product, `make test` runs the tests. Both install everything
# they need into .venv first (from requirements.lock), so they work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The quickstart keeps Dagster's history beside the embedded database (see README).
DEV_DAGSTER_HOME := $(or $(DAGSTER_HOME),$(or $(USAGE_DATA_DIR),$(CURDIR)/.usage_data)/dagster_home)

.PHONY: dev test bench install lock lint check-defs db-dsn

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	mkdir -p "$(DEV_DAGSTER_HOME)"
	test -f "$(DEV_DAGSTER_HOME)/dagster.yaml" || cp deploy/dagster.quickstart.yaml "$(DEV_DAGSTER_HOME)/dagster.yaml"
	$(BIN)/usage-db start
	$(BIN)/usage-db migrate
	DAGSTER_HOME="$(DEV_DAGSTER_HOME)" $(BIN)/dg dev --host 127.0.0.1 --port 3000

test: $(STAMP)
	$(BIN)/ruff check usage_assets usage_assets_tests alembic benchmarks
	$(BIN)/ruff format --check usage_assets usage_assets_tests alembic benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

# The benchmark of README "Performance" (about half an hour on 2 CPUs); it prints a table.
# A quick look: make bench ARGS="--days 2 --backfill-days 31"
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(ARGS)

db-dsn: $(STAMP)
	@$(BIN)/usage-db dsn

# Regenerate requirements.lock after changing pyproject.toml's dependencies.
lock:
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml
