# One command set for people and CI. Needs only python3 (3.11+), a POSIX shell and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Parallel test processes: most tests wait on real processes (workers, servers), not
# on the CPU, so even two cores keep three busy. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 3

.PHONY: install run test lint format lock bench chaos clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sparkjobs needs Python 3.11 or newer; run make with PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# Everything on this machine: broker, store, a worker per node, beat, Flower,
# and simulators for every model server that does not answer.
run: install
	$(BIN)/sparkjobs up

# The whole suite, both legs: the embedded defaults (a private redis-server,
# SQLite) and the services (Redis on 127.0.0.1:6379, PostgreSQL on :5432).
# SPARKJOBS_TEST_LEGS=embedded or =services runs one leg.
test: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check sparkjobs workers migrations tests $(wildcard benchmarks)
	$(BIN)/ruff format --check sparkjobs workers migrations tests $(wildcard benchmarks)
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format sparkjobs workers migrations tests benchmarks
	$(BIN)/ruff check --fix sparkjobs workers migrations tests benchmarks

# Refresh the lock after changing dependencies in pyproject.toml (needs uv).
lock:
	uv pip compile --quiet --universal --generate-hashes --python-version 3.11 --extra dev pyproject.toml -o requirements.lock

bench: install
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# A longer chaos round than the suite's (tests/e2e/test_chaos.py): more jobs over a
# longer stretch, the same faults; prints submitted/succeeded/failed/lost/duplicated.
CHAOS_JOBS ?= 1000
CHAOS_SPREAD_S ?= 90
chaos: install
	SPARKJOBS_CHAOS_JOBS=$(CHAOS_JOBS) SPARKJOBS_CHAOS_SPREAD_S=$(CHAOS_SPREAD_S) \
		$(BIN)/pytest tests/e2e/test_chaos.py -q -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
