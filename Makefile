# Relance: `make run` brings the whole system up, `make test` runs the whole suite.
# Both create .venv and install what they need; both use the embedded PostgreSQL
# under var/ unless DATABASE_URL is set.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WITH_DB := $(PY) -m config.embedded_pg run --

.PHONY: run test bench lint db-stop browser

# The browser test (tests/browser/) drives Debian's Chromium through its ChromeDriver; no
# browser is ever downloaded. Installed once, as root (sudo otherwise), when missing.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(WITH_DB) $(PY) manage.py runall

# Test processes (pytest-xdist); PYTEST_WORKERS=0 runs the suite in this process.
PYTEST_WORKERS ?= 2

test: $(VENV)/.installed browser
	$(WITH_DB) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(WITH_DB) $(PY) bench/run_all.py

browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			chromium chromium-driver; \
	fi

lint: $(VENV)/.installed
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

db-stop: $(VENV)/.installed
	$(PY) -m config.embedded_pg stop
