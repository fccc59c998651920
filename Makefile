# Relance: `make run` brings the whole system up, `make test` runs the whole suite.
# Both create .venv and install what they need; both use the embedded PostgreSQL
# under var/ unless DATABASE_URL is set.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WITH_DB := $(PY) -m config.embedded_pg run --

.PHONY: run test bench lint db-stop

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(WITH_DB) $(PY) manage.py runall

test: $(VENV)/.installed
	$(WITH_DB) $(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(WITH_DB) $(PY) bench/run_all.py

lint: $(VENV)/.installed
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

db-stop: $(VENV)/.installed
	$(PY) -m config.embedded_pg stop
