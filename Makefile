# Quickstart: `make dev` runs the product, `make test` runs the tests. Both install everything
# they need into .venv first (from requirements.lock), so they work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Superset (`make superset`) has a virtual environment of its own: its pins differ from Dagster's.
SUPERSET_VENV := .superset-venv
SUPERSET_STAMP := $(SUPERSET_VENV)/.installed
SUPERSET_REQUIREMENTS := deploy/superset/requirements.txt
# uv installs Superset's 150 pinned packages in seconds (pip: 1.5-2 minutes). It reads its own
# index settings (UV_INDEX_URL, uv.toml), not pip.conf.
SUPERSET_UV := uv==0.13.9
# The quickstart keeps Dagster's history beside the embedded database (see README).
DEV_DAGSTER_HOME := $(or $(DAGSTER_HOME),$(or $(USAGE_DATA_DIR),$(CURDIR)/.usage_data)/dagster_home)

.PHONY: dev test bench install lock lint check-defs db-dsn superset superset-install

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Rebuilt from scratch whenever the pins change, so it holds exactly what the file says.
$(SUPERSET_STAMP): $(SUPERSET_REQUIREMENTS)
	rm -rf $(SUPERSET_VENV)
	$(PYTHON) -m venv $(SUPERSET_VENV)
	$(SUPERSET_VENV)/bin/pip install --quiet --disable-pip-version-check "$(SUPERSET_UV)"
	$(SUPERSET_VENV)/bin/uv pip install --quiet --python $(SUPERSET_VENV)/bin/python \
		-r $(SUPERSET_REQUIREMENTS)
	touch $(SUPERSET_STAMP)

superset-install: $(SUPERSET_STAMP)

# The dashboard (README "A dashboard in Superset"): starts and migrates the usage database,
# makes the read-only login, sets Superset up, imports the dashboard, then serves
# http://127.0.0.1:8088 (SUPERSET_PORT=... for another port) until Ctrl-C.
superset: $(STAMP) $(SUPERSET_STAMP)
	$(BIN)/python -m usage_assets.bi.superset setup
	$(BIN)/python -m usage_assets.bi.superset serve --port $(or $(SUPERSET_PORT),8088)

dev: $(STAMP)
	mkdir -p "$(DEV_DAGSTER_HOME)"
	test -f "$(DEV_DAGSTER_HOME)/dagster.yaml" || cp deploy/dagster.quickstart.yaml "$(DEV_DAGSTER_HOME)/dagster.yaml"
	$(BIN)/usage-db start
	$(BIN)/usage-db migrate
	DAGSTER_HOME="$(DEV_DAGSTER_HOME)" $(BIN)/dg dev --host 127.0.0.1 --port 3000

# Superset's venv too: the suite's browser test drives the dashboard (test_superset.py).
test: $(STAMP) $(SUPERSET_STAMP)
	$(BIN)/ruff check usage_assets usage_assets_tests alembic benchmarks
	$(BIN)/ruff format --check usage_assets usage_assets_tests alembic benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

# The benchmark of README "Performance" (about 20 minutes on 2 CPUs); it prints a table.
# A quick look: make bench ARGS="--days 2 --backfill-days 0"
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(ARGS)

db-dsn: $(STAMP)
	@$(BIN)/usage-db dsn

# Regenerate requirements.lock after changing pyproject.toml's dependencies.
lock:
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml
