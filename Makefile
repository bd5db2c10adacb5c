# Gemba: the two commands a new user needs are `make demo` and `make test`.
# Both create the virtual environment and install the packages they need;
# the Kafka broker is fetched through Maven and started by gemba itself.

SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)

.PHONY: install demo test lint unit integration bench broker-start broker-stop broker-status clean

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "Gemba needs Python 3.11 or newer; install it or run make PYTHON=/path/to/python3.11" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## The main job: broker, worker, simulated history, then a live stream.
demo: install
	$(BIN)/gemba demo

## Everything CI checks: lint, types, layer contracts, then all tests (real broker included).
test: lint
	bash .ci/install-chromium
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest tests/unit tests/deploy

integration: install
	$(BIN)/pytest -m integration

bench: install
	$(BIN)/python bench/bench_producer.py
	$(BIN)/python bench/bench_simulator.py
	$(BIN)/python bench/bench_history.py
	$(BIN)/python bench/bench_alerts.py --deals 20000 --rate 300 --seconds 30
	$(BIN)/python bench/bench_worker.py --events 100000
	$(BIN)/python bench/bench_scaleout.py --events 60000
	$(BIN)/python bench/bench_rebalance_cost.py --events 100000
	$(BIN)/python bench/bench_replay.py --events 2000000 --base 200000
	$(BIN)/python bench/bench_analysis.py --events 1000000
	$(BIN)/python bench/bench_dashboard.py

broker-start: install
	$(BIN)/gemba broker start
broker-stop: install
	$(BIN)/gemba broker stop
broker-status: install
	$(BIN)/gemba broker status

clean:
	-$(BIN)/gemba broker stop
	rm -rf $(VENV) .gemba .pytest_cache .mypy_cache .ruff_cache .hypothesis
