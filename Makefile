# Cascade — every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
SOAK_RUNS ?= 20

.PHONY: help install demo up test test-fast lint format bench soak system-deps migration clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	@touch $@

install: $(STAMP) ## Create .venv and install pinned dependencies

demo: $(STAMP) ## Train demo models (first run), start the stack, push traffic, print a summary
	$(BIN)/cascade demo

up: $(STAMP) ## Start the whole stack on this machine (embedded Redis, SQLite)
	$(BIN)/cascade up

lint: $(STAMP) ## ruff, import layering (no cycles, arrows one way), mypy
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

system-deps: ## Install Chromium and Prometheus from Debian when missing (tests need them)
	bash scripts/system_deps.sh

test: $(STAMP) lint system-deps ## Everything: lint, unit, integration, browser tests
	bash scripts/test.sh $(PYTEST_ARGS)

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

bench: $(STAMP) ## Benchmarks; reports (markdown, JSON, PNG) under reports/
	$(BIN)/cascade bench all --out reports

soak: $(STAMP) ## Fault soak (not in `make test`): each scenario SOAK_RUNS times (20); reports/soak.*
	nice -n 10 $(PY) -m services.bench.soak --runs $(SOAK_RUNS) --out reports

migration: $(STAMP) ## Regenerate the initial migration from the schema (pre-release only)
	bash scripts/regen_migration.sh

clean:
	rm -rf var reports test-artifacts .pytest_cache .mypy_cache .ruff_cache
