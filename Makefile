# Each target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: setup test demo lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check e2ee_ops tests bench
	$(BIN)/ruff format --check e2ee_ops tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check e2ee_ops tests bench
	$(BIN)/ruff format --check e2ee_ops tests bench

demo: $(STAMP)
	$(BIN)/e2ee-ops demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
