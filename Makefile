# The one front door for routine work. Every target creates the virtualenv if needed.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
ARGS   ?=

.PHONY: run test lint fmt bench clean

$(BIN)/monitoring-exporter: pyproject.toml
	@python3 -c 'import venv, ensurepip' 2>/dev/null || bash .ci/system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

## run: the service with an embedded PostgreSQL and the demo data set on :9810
run: $(BIN)/monitoring-exporter
	$(BIN)/monitoring-exporter serve --demo $(ARGS)

## test: the whole test suite against a real PostgreSQL (127.0.0.1:5432, else embedded)
test: $(BIN)/monitoring-exporter
	@bash .ci/system-deps
	$(BIN)/python -m pytest $(ARGS)

## lint: ruff, formatting and mypy --strict
lint: $(BIN)/monitoring-exporter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(BIN)/monitoring-exporter
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: every benchmark in bench/, figures as ratios against same-run baselines
bench: $(BIN)/monitoring-exporter
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/results
