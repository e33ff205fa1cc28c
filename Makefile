# Every target sets up what it needs: `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser run demo test test-fast lint format clean faults docs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,aws,otel,docs]'
	touch $(STAMP)

## The main job on the embedded SQLite default: subscribe, publish, deliver, show traces.
run: install
	$(BIN)/asyncevents demo

demo: run

lint: install
	$(BIN)/ruff check src tests plugins faults
	$(BIN)/mypy src

## Headless Chromium (Debian packages) for the console's browser test.
browser:
	test -x /usr/bin/chromium || bash scripts/install-browser.sh

## The whole suite, against the real services on 127.0.0.1, plus lint.
test: install lint browser
	$(BIN)/python -m pytest
	bash plugins/test-plugins.sh

## Kill, restart and starve the real services under running workers; print the table.
## (Restarts RabbitMQ and PostgreSQL on 127.0.0.1 for a few seconds each, and runs a
## three-node RabbitMQ cluster on 5681-5683 for the quorum rows, removed at the end; the
## short form runs inside `make test` as tests/test_faults.py.)
faults: install
	$(BIN)/python -m faults.run

test-fast: install
	$(BIN)/python -m pytest -x -q -m "not slow"

## The benchmark: every scenario beside its baselines (needs RabbitMQ and PostgreSQL on
## 127.0.0.1; 15-40 minutes). BENCH_ARGS="--only e2e_rabbit --repeat 5" narrows it.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## A few minutes' smoke run of the benchmark with small numbers.
bench-quick: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

## The documentation site (MkDocs, Material) into site/, warnings as errors; the CLI and
## settings reference pages are generated from the code by scripts/gen_reference.py.
docs: install
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

format: install
	$(BIN)/ruff check --fix src tests plugins faults

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
