# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo test dev lint format validate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# The sample CMMS export as a SQLite database, read by the example connection sample_sql
# (integration_platform/defs/connections/defs.yaml).
SAMPLE_DB := data/samples/cmms.sqlite
$(SAMPLE_DB): data/samples/sqlite_source.py $(wildcard data/samples/cmms/*.csv) | install
	$(BIN)/python data/samples/sqlite_source.py --out $@

demo: install $(DAGSTER_HOME)/dagster.yaml $(SAMPLE_DB)  ## run the main job on the embedded defaults
	$(BIN)/integration-platform demo

test: install  ## the whole test suite
	$(BIN)/pytest

dev: install $(DAGSTER_HOME)/dagster.yaml $(SAMPLE_DB)  ## Dagster UI + daemon on http://127.0.0.1:3000
	$(BIN)/integration-platform db upgrade
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

validate: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/dg check defs

clean:
	rm -rf $(DAGSTER_HOME) data/lake data/state $(SAMPLE_DB)
