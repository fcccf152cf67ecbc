# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster
export FINAI_DATA_DIR ?= $(CURDIR)/data

.PHONY: run test test-fast ui venv browser drop-demo lock clean

$(BIN)/dagster: pyproject.toml requirements.lock
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $@

venv: $(BIN)/dagster

run: venv  ## materialize the whole graph (every dataset partition) on the embedded default
	$(BIN)/python -m finai_assets.cli run

test: venv browser  ## the whole suite, one pytest worker per core (CI runs this; installs chromium when missing)
	$(BIN)/pytest -q -n auto --dist loadgroup --durations=30

test-fast: venv  ## the unit tests only: no shared build, no training world, no server or browser
	$(BIN)/pytest -q -n auto --dist loadgroup -m "not slow and not server and not browser"

ui: venv  ## the Dagster UI (daemon included) at http://127.0.0.1:3000
	$(BIN)/python -m finai_assets.cli ui --port 3000

drop-demo: venv  ## write the next demo production month into data/production/incoming/ (the sensor takes it from there)
	$(BIN)/python -m finai_assets.cli drop-demo

browser:  ## Debian chromium + chromedriver for the browser tests (installed when missing)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  elif sudo -n true 2>/dev/null; then sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install -y chromium chromium-driver'"; exit 1; fi; \
	fi

lock:  ## re-resolve requirements.lock from a fresh venv (maintainers only)
	rm -rf /tmp/finai-lock && $(PY) -m venv /tmp/finai-lock && /tmp/finai-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/finai-lock/bin/pip freeze --exclude-editable | sed -e 's/+cpu$$//' | grep -v '^nvidia-\|^triton' > requirements.lock

clean:
	rm -rf data/warehouse data/warehouse.duckdb data/artifacts data/*.lock
