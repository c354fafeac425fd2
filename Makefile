# The README's commands. Everything runs from a virtualenv in .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The benchmark's MLServer 1.7 (scenario v2) runs from a virtualenv of its own, as its dependencies conflict with
# ours: the harness creates it with pip on first use (mlserver and mlserver-sklearn 1.7.1, uvloop<0.22, our
# scikit-learn). Point this at a ready one to skip that.
MLSERVER_VENV ?= .venv-mlserver
BENCH_ARGS ?=
export BENTOML_DO_NOT_TRACK := true

.PHONY: serve model test test-fast lint audit bench bench-v2 clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

## serve: install, train when the model store has no drybean_svc, then serve on http://localhost:3000
serve: model
	$(BIN)/bentoml serve

## model: train drybean_svc unless the model store already has one
model: $(VENV)/.installed
	@$(BIN)/bentoml models get drybean_svc:latest >/dev/null 2>&1 || $(BIN)/python train.py

## test: install and run the test suite
test: $(VENV)/.installed
	$(BIN)/python -m pytest

## test-fast: install and run the fast tier only, in under a minute (no MariaDB, server, Docker or browser)
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m fast

## lint: style and types
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy .

## audit: pip-audit over the dependencies, bandit over the code (exit 2: no vulnerability feed reachable)
audit: $(VENV)/.installed
	VENV=$(VENV) bash tests/audit.sh

## bench: the benchmark harness (needs wrk and MariaDB; see docs/development.md), results in tests/benchmarks/results/;
##        options in BENCH_ARGS, e.g. make bench BENCH_ARGS="--runs 1 --duration 5"
bench: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m tests.benchmarks.run --mlserver-venv $(MLSERVER_VENV) $(BENCH_ARGS)

## bench-v2: issue #20's V2 comparison alone: ours and MLServer 1.7 over REST JSON, REST binary and gRPC
bench-v2: override BENCH_ARGS += --scenarios v2
bench-v2: bench

clean:
	rm -rf $(VENV) $(MLSERVER_VENV) var .pytest_cache .ruff_cache .mypy_cache
