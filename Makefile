# Everything a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export GX_ANALYTICS_ENABLED := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup system-deps test test-fast e2e lint sandbox demo airflow rehearse bench compose-check clean

# Creates .venv and installs the pinned stack plus this project (editable). A no-op when nothing changed.
setup: $(STAMP) system-deps

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	@touch $(STAMP)

# Debian packages used by the browser test and the compose validation (installed once, when missing).
system-deps:
	@bash scripts/system-deps.sh

test: setup
	$(BIN)/python -m pytest tests

test-fast: setup
	$(BIN)/python -m pytest tests -m "not e2e and not browser"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

sandbox: setup
	$(BIN)/absorb-sandbox serve --host 127.0.0.1 --port $${PORT:-8765} --db var/sandbox.db --seed $${SEED:-small}

demo: setup
	$(BIN)/python scripts/demo.py

# The Airflow UI (standalone, SQLite in var/airflow, no login) with the sandbox beside it.
airflow: setup
	bash scripts/airflow_standalone.sh

# The first sync rehearsed on a local clone of the portal (README: "Pointing it at a real Absorb portal").
# FEED=... [RULES=...] [CONN_ID=absorb_default] [SNAPSHOT=var/rehearsal/snapshot] [FRESH=1] [DRY_RUN=1]
# [PSEUDONYMISE=1] [MAPPING=workday] [CONF='{"create_missing_users": true}']
rehearse: setup
	@test -n "$(FEED)" || { echo 'usage: make rehearse FEED=path/to/feed.csv [RULES=rules.yaml]'; exit 2; }
	$(BIN)/python scripts/rehearse.py --feed "$(FEED)" $(if $(RULES),--rules "$(RULES)") \
		$(if $(CONN_ID),--conn-id "$(CONN_ID)") $(if $(SNAPSHOT),--snapshot "$(SNAPSHOT)") \
		$(if $(MAPPING),--mapping-preset "$(MAPPING)") $(if $(CONF),--conf '$(CONF)') \
		$(if $(FRESH),--fresh-snapshot) $(if $(DRY_RUN),--dry-run) $(if $(PSEUDONYMISE),--pseudonymise)

# End-to-end: a Celery cluster (api-server, scheduler, dag-processor, triggerer, 2 workers) on the
# local PostgreSQL and Redis, driven through the REST API, the headless-browser test, `make airflow`,
# the compose validation and the bootstrap script.
e2e: setup
	$(BIN)/python -m pytest tests/e2e

bench: setup
	$(BIN)/python -m bench

compose-check: setup
	docker-compose -f docker-compose.yaml config -q

clean:
	rm -rf var output .pytest_cache
