# hotline: every entry point a person or CI needs. `make demo` and `make test` install
# everything they use into .venv first, from the pinned lock file.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit test-pg bench fuzz lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(STAMP): $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The console's front-end files: npm packages pinned in package-lock.json, copied into the
# package so the node serves them itself (src/hotline/web/vendor.py; docs/console.md).
CONSOLE_ASSETS := src/hotline/web/static/vendor/MANIFEST.json

$(CONSOLE_ASSETS): package.json package-lock.json src/hotline/web/vendor.py
	npm ci --ignore-scripts --no-audit --no-fund
	$(PYTHON) src/hotline/web/vendor.py node_modules src/hotline/web/static/vendor

install: $(STAMP) $(CONSOLE_ASSETS)

demo: install
	$(BIN)/hotline demo

lint: install
	$(BIN)/ruff check src tests benchmarks fuzz
	$(BIN)/ruff format --check src tests benchmarks fuzz

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

# The whole suite again with every store on PostgreSQL (DESIGN decision 10): a private cluster
# started by scripts/setup-postgres.sh (installing postgresql-15 first if missing, as root),
# a fresh database per store (tests/conftest.py).
PG_TEST_DIR := $(CURDIR)/.pg/tests

test-pg: install
	url="$$(HOTLINE_PG_DIR=$(PG_TEST_DIR) HOTLINE_PG_UNSAFE_NO_FSYNC=1 scripts/setup-postgres.sh)" \
	  && HOTLINE_TEST_STORE="$$url" $(BIN)/pytest -q

test: lint typecheck unit test-pg

bench: install
	$(BIN)/python benchmarks/run_all.py

# Every atheris fuzz target in fuzz/ (docs/benchmarks.md, "Fuzzing"); FUZZ_RUNS executions each.
FUZZ_RUNS ?= 100000
fuzz: install
	$(BIN)/python fuzz/run_all.py --runs $(FUZZ_RUNS)

# Re-pin every dependency (needs uv; run after editing pyproject.toml).
lock:
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	  --generate-hashes --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
