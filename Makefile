# Two commands do all set-up: `make demo` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python

export PATH := $(BIN):$(PATH)
export TIDINGS_WAREHOUSE ?= $(CURDIR)/dbt_project/warehouse/warehouse.duckdb
export DBT_PROFILES_DIR := $(CURDIR)/dbt_project
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# pytest-xdist workers for `make test`; each test file runs whole in one worker (module fixtures are built once).
TEST_WORKERS ?= 2

.PHONY: venv demo test dev lint format bench soak lock clean

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m orchestration.demo

test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

dev: venv
	mkdir -p $(DAGSTER_HOME)
	$(PY) -m orchestration.dev

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(PY) -m benchmarks.run

soak: venv
	TIDINGS_SOAK=$${TIDINGS_SOAK:-1} $(PY) -m pytest -q -m soak tests/reliability

# Re-resolve the lock after changing pyproject.toml dependencies.
lock:
	rm -rf /tmp/tidings-lock && $(PYTHON) -m venv /tmp/tidings-lock
	/tmp/tidings-lock/bin/pip install -q --upgrade pip && /tmp/tidings-lock/bin/pip install -q -e '.[dev]'
	/tmp/tidings-lock/bin/pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf $(VENV) dbt_project/target dbt_project/warehouse/*.duckdb* exports .dagster_home
