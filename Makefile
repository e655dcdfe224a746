# Two commands on a fresh machine with Python 3.11+ and make:
#   make run   - create .venv, install the pinned requirements, start the server (UI and API, demo mode)
#   make test  - install the dev requirements, run lint and the full suite
#   (make screenshots retakes the README's pictures of the app)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test lint venv dev browser-deps model-card screenshots clean

$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile -r requirements.txt -c constraints.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet --no-compile -r requirements-dev.txt -c constraints.txt
	touch $@

# axe-core for the accessibility browser tests, at the exact version package-lock.json pins
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.dev-installed
browser-deps: node_modules/.installed

run: venv
	APP_DEMO=$${APP_DEMO:-1} STREAMLIT_SERVER_PORT=$(PORT) $(PY) -m uvicorn serve:app --port $(PORT)

lint: dev
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile
	$(PY) -m core model-card --check

test: lint browser-deps
	$(PY) -m pytest -q -n 2 --dist loadgroup

# The README's screenshots, taken from the real app in headless Chromium (tests/screenshots.py).
screenshots: dev
	$(PY) tests/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules
