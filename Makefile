# Every target sets up what it needs: `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser run demo test test-fast test-servers test-serial lint format clean faults docs

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
	$(BIN)/lint-imports

## Headless Chromium (Debian packages) for the console's browser test.
browser:
	test -x /usr/bin/chromium || bash scripts/install-browser.sh

## The test tiers (CONTRIBUTING.md): tests/conftest.py marks each test `server` (it uses a
## server fixture or parameter) and `subprocess` (it starts a process); `serial` ones restart
## the services. The fast tier runs with ASYNCEVENTS_TEST_TIER=fast: a test there that reaches
## a server or starts a process fails. The tests mostly wait (receivers, idle workers, leases),
## so more xdist workers than cores pays: TEST_WORKERS=n to change it.
PYTEST := $(BIN)/python -m pytest -q
FAST_TIER := not server and not subprocess and not slow and not serial
SERVER_TIER := (server or subprocess or slow) and not serial
TEST_WORKERS ?= 4
# $(call tier,NAME,COMMAND): run COMMAND with ASYNCEVENTS_TEST_TIER=NAME, then print
# "tier NAME <seconds> s" (prefixed by TIER_PREFIX; .ci/run sets "ci: "); its exit status
# stays the recipe's, so pytest's 5 (no test selected) fails the target like any failure.
TIER_PREFIX ?=
tier = echo '$(TIER_PREFIX)tier $(1): $(2)'; start=$$(date +%s); ASYNCEVENTS_TEST_TIER=$(1) $(2); \
	status=$$?; echo "$(TIER_PREFIX)tier $(1) $$(( $$(date +%s) - start )) s"; exit $$status

## The whole suite against the real services on 127.0.0.1: lint, then every tier, then the
## plugin packages' own tests; each step's time is printed.
test: install browser
	@$(call tier,lint,$(MAKE) --no-print-directory lint)
	@$(call tier,fast,$(PYTEST) -m "$(FAST_TIER)" -n $(TEST_WORKERS))
	@$(call tier,servers,$(PYTEST) -m "$(SERVER_TIER)" -n $(TEST_WORKERS) --dist loadgroup --durations=10)
	@$(call tier,serial,$(PYTEST) -m serial)
	@$(call tier,plugins,bash plugins/test-plugins.sh)

## The unit tier: no server, no subprocess (SQLite, memory://, in-process fakes, local HTTP);
## stops at the first failure. A few minutes.
test-fast: install
	@$(call tier,fast,$(PYTEST) -x -m "$(FAST_TIER)" -n $(TEST_WORKERS))

## The tests that need the services or start processes, in parallel (xdist_group keeps
## the tests that share a port or an expensive fixture on one worker).
test-servers: install browser
	@$(call tier,servers,$(PYTEST) -m "$(SERVER_TIER)" -n $(TEST_WORKERS) --dist loadgroup)

## The tests that must run alone: the fault suite's short form restarts RabbitMQ and PostgreSQL.
test-serial: install
	@$(call tier,serial,$(PYTEST) -m serial)

## Kill, restart and starve the real services under running workers; print the table.
## (Restarts RabbitMQ and PostgreSQL on 127.0.0.1 for a few seconds each, and runs a
## three-node RabbitMQ cluster on 5681-5683 for the quorum rows, removed at the end; the
## short form runs inside `make test` as tests/test_faults.py.)
faults: install
	$(BIN)/python -m faults.run

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
