# The one front door for routine work. Every target creates the virtualenv if needed.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
ARGS   ?=

.PHONY: run test peers lint fmt bench clean

# The virtualenv, once the interpreter is known to be able to make one.
$(VENV)/pyvenv.cfg:
	@bash .ci/check-python $(PYTHON)
	@echo "==> creating $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -m venv $(VENV)

# What the service needs: the package and the embedded PostgreSQL (pgserver).
$(VENV)/.installed-embedded: pyproject.toml | $(VENV)/pyvenv.cfg
	@echo "==> installing monitoring-exporter and the embedded PostgreSQL into $(VENV) (once; about a minute)"
	@bash .ci/install $(VENV) embedded
	@touch $@

# The same plus the test and lint tools (a superset of the above).
$(VENV)/.installed-test: pyproject.toml | $(VENV)/pyvenv.cfg
	@echo "==> installing monitoring-exporter with its test tools into $(VENV) (once; about a minute)"
	@bash .ci/install $(VENV) test
	@touch $@ $(VENV)/.installed-embedded

# Kept for scripts that ask for the console script: the full development install.
$(BIN)/monitoring-exporter: $(VENV)/.installed-test
	@touch $@

## run: the service with an embedded PostgreSQL and the demo data set on :9810
run: $(VENV)/.installed-embedded
	@$(BIN)/monitoring-exporter serve --demo $(ARGS)

## peers: fetch the programs the tests talk to into .cache/peers (no root, nothing installed)
peers:
	@PYTHON=$(PYTHON) bash .ci/peers

## test: the whole suite against a real PostgreSQL (127.0.0.1:5432, else embedded)
test: $(VENV)/.installed-test
	@PYTHON=$(BIN)/python bash .ci/peers
	$(BIN)/python -m pytest $(ARGS)

## lint: ruff, formatting and mypy --strict
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: every benchmark in bench/, figures as ratios against same-run baselines
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/results
