# Each target bootstraps its own virtual environment from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint demo sim bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/cellfab demo

sim: $(STAMP)
	$(BIN)/cellfab sim

bench: $(STAMP)
	$(BIN)/python -m bench.drivers

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
