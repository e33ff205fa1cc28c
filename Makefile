# Every target sets up what it needs: `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser run demo test test-fast lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,aws]'
	touch $(STAMP)

## The main job on the embedded SQLite default: subscribe, publish, deliver, show traces.
run: install
	$(BIN)/asyncevents demo

demo: run

lint: install
	$(BIN)/ruff check src tests plugins
	$(BIN)/mypy src

## Headless Chromium (Debian packages) for the console's browser test.
browser:
	test -x /usr/bin/chromium || bash scripts/install-browser.sh

## The whole suite, against the real services on 127.0.0.1, plus lint.
test: install lint browser
	$(BIN)/python -m pytest
	bash plugins/test-plugins.sh

test-fast: install
	$(BIN)/python -m pytest -x -q -m "not slow"

format: install
	$(BIN)/ruff check --fix src tests plugins

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
