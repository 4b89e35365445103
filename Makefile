# Each target bootstraps its own virtual environment from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint demo sim bench clean tools interop

# Standard third-party clients the tests use to prove the twins speak the ICD to code
# that is not ours: asyncua's uals/uaread come with the venv; mbpoll (libmodbus) and
# libmodbus-dev (for the C programs of tests/interop/cellq_c, built here) come from
# Debian. Installed when the machine lets us (root with apt-get); otherwise their tests
# skip and say so.
tools:
	@command -v mbpoll >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mbpoll (Debian) for the Modbus interoperability tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mbpoll >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mbpoll >/dev/null 2>&1; } || \
	    echo "warning: could not install mbpoll; its tests will skip"; \
	  else echo "note: mbpoll not installed and not root; its tests will skip"; fi; }
	@# libmodbus-dev: the C analyzer and client check of tests/interop/cellq_c
	@test -e /usr/include/modbus/modbus.h || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing libmodbus-dev (Debian) for the C interoperability tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmodbus-dev >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmodbus-dev >/dev/null 2>&1; } || \
	    echo "warning: could not install libmodbus-dev; its tests will skip"; \
	  else echo "note: libmodbus-dev not installed and not root; its tests will skip"; fi; }
	@if test -e /usr/include/modbus/modbus.h && command -v cc >/dev/null 2>&1; then \
	  $(MAKE) -s -C tests/interop/cellq_c; fi

# node-opcua, pinned in tests/interop/package-lock.json, for the OPC UA interoperability
# tests (a shuttle and a client on another stack, written from the ICD alone). Installed
# with `npm ci` when npm is there (about 70 MB, ~11 s from an empty cache); otherwise those
# tests skip and say so. npm writes node_modules/.package-lock.json last: our stamp.
INTEROP := tests/interop

interop:
	@if command -v npm >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(INTEROP)/node_modules/.package-lock.json || \
	  echo "warning: npm ci failed in $(INTEROP); its tests will skip"; \
	else echo "note: npm not installed; the OPC UA interoperability tests will skip"; fi

$(INTEROP)/node_modules/.package-lock.json: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --no-audit --no-fund --loglevel=error

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

test: lint tools interop
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
	$(BIN)/python -m bench.recovery

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis $(INTEROP)/node_modules
