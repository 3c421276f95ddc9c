# FleetPulse: `make run` (the demo) and `make test` (everything CI runs) do their own set-up.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3
SIM_DRIVERS ?= 1000
SIM_NETWORK ?= liechtenstein

.PHONY: dashboard test-dashboard chromium compose-plugin promtool venv stack stack-down status migrate run test test-unit test-fast check format audit clean

$(STAMP): pyproject.toml
	@echo "virtualenv: pip install -e '.[dev]' into $(VENV) (about 20 s the first time)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Install (first time) and start PostgreSQL+PostGIS+TimescaleDB (built from ../shared/vendor),
## a plain PostgreSQL cluster, Redis, MariaDB and Kafka under .stack/
stack: venv
	$(BIN)/fleetpulse stack up

stack-down: venv
	$(BIN)/fleetpulse stack down

status: venv
	$(BIN)/fleetpulse stack status

migrate: stack
	$(BIN)/fleetpulse migrate --seed

## The demo: stack, schema, demo data, api + workers + 1,000 simulated drivers at http://localhost:8000
run: migrate dashboard
	$(BIN)/fleetpulse run --simulate $(SIM_DRIVERS) --network $(SIM_NETWORK)

## Linters: ruff format check, ruff, mypy (strict)
check: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Known vulnerabilities in the Python and npm dependencies, minus audit-allowlist.json
## (docs/security.md). Needs PyPI's JSON API or OSV and npm's advisory endpoint, so it is not
## part of `make test` (the offline development machine reaches neither).
audit: venv dashboard/node_modules/.package-lock.json
	$(BIN)/python -m tests.reliability.audit

## Unit tests only (no services needed)
test-unit: venv
	$(BIN)/pytest -m "not integration"

## Everything but the slow end-to-end parts (restarts, killed processes)
test-fast: stack
	$(BIN)/pytest -m "not slow"

## `docker compose` (config only; no engine here) for the compose test; built once from Go
compose-plugin:
	bash deploy/install-compose-plugin.sh

## Prometheus' promtool (Debian's prometheus package, not started) for the compose test's
## checks of deploy/prometheus: config, alert rules and the rules' unit tests
promtool:
	command -v promtool >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends prometheus)

## Everything: linters, unit, integration and slow end-to-end tests against the real stack
test: check stack compose-plugin promtool dashboard test-dashboard chromium
	$(BIN)/pytest

## The dashboard (dashboard/): npm ci, type check and vite build into dashboard/dist, which
## the api serves at /; skipped while dist is newer than the sources
DASHBOARD_SRC := $(shell find dashboard/src -type f 2>/dev/null) dashboard/index.html \
	dashboard/package.json dashboard/vite.config.ts dashboard/tsconfig.json

dashboard/node_modules/.package-lock.json: dashboard/package-lock.json
	cd dashboard && npm ci --no-audit --no-fund

dashboard/dist/index.html: dashboard/node_modules/.package-lock.json $(DASHBOARD_SRC)
	@echo "dashboard: type check and vite build into dashboard/dist (about 35 s)"
	cd dashboard && npx tsc --noEmit && npx vite build --logLevel warn

dashboard: dashboard/dist/index.html

## The dashboard's logic tests (vitest)
test-dashboard: dashboard/node_modules/.package-lock.json
	cd dashboard && npx vitest run

## Debian's Chromium for the browser tests (Playwright's own download does not work offline)
chromium:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
