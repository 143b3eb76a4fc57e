# Each target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: setup test fuzz demo lint mutate clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

# The suite runs on one pytest-xdist worker per CPU (at most 4, see tests/conftest.py), a
# test file per worker at a time; PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/ruff check e2ee_ops tests bench
	$(BIN)/ruff format --check e2ee_ops tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -rs -n $(PYTEST_WORKERS) --dist loadfile

# Mutation testing of the procedures and the SQL-building adapters, bounded to 18 minutes.
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,mutation]'
	$(BIN)/python -m tests.mutate

# A long, random schemathesis run against the live reference server (make test runs a
# short, reproducible one).
FUZZ_EXAMPLES ?= 300
fuzz: $(STAMP)
	E2EE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) E2EE_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q \
		tests/integration/reference/test_fuzz.py --timeout 3600

lint: $(STAMP)
	$(BIN)/ruff check e2ee_ops tests bench
	$(BIN)/ruff format --check e2ee_ops tests bench

demo: $(STAMP)
	$(BIN)/e2ee-ops demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info mutants
