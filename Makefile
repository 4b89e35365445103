# Each target bootstraps its own virtual environment from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint demo sim bench clean tools

# Standard third-party clients the tests use to prove the twins speak the ICD to code
# that is not ours: asyncua's uals/uaread come with the venv; mbpoll (libmodbus) comes
# from Debian. Installed when the machine lets us (root with apt-get); otherwise its
# tests skip and say so.
tools:
	@command -v mbpoll >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mbpoll (Debian) for the Modbus interoperability tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mbpoll >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mbpoll >/dev/null 2>&1; } || \
	    echo "warning: could not install mbpoll; its tests will skip"; \
	  else echo "note: mbpoll not installed and not root; its tests will skip"; fi; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

test: lint tools
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/cellfab demo

sim: $(STAMP)
	$(BIN)/cellfab sim

bench: $(STAMP)
	$(BIN)/python -m bench.drivers
	$(BIN)/python -m bench.journal
	$(BIN)/python -m bench.recipes
	$(BIN)/python -m bench.engine

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
