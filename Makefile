# The two front-door commands: `make demo` (the whole pipeline on local services) and
# `make test` (lint + unit + integration tests on the real services).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint unit integration bench install system-deps stack-up stack-down clean

demo: install
	$(BIN)/resumewatch demo

test: lint stack-up
	$(BIN)/pytest tests

unit: install
	$(BIN)/pytest tests/unit

integration: stack-up
	$(BIN)/pytest tests/integration

bench: stack-up
	$(BIN)/python -m benchmarks.bench --memory-enterprises 100000 --report-days 1

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

stack-up: install
	$(BIN)/resumewatch stack up

stack-down:
	@if [ -x $(BIN)/resumewatch ]; then $(BIN)/resumewatch stack down; fi

install: system-deps $(STAMP)

system-deps:
	@scripts/system-deps.sh

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

clean: stack-down
	rm -rf $(VENV) .state
