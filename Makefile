# The two commands a newcomer runs: `make demo`, then `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps test demo lint bench reliability clean

# System packages the drivers and tests need (unixODBC, MariaDB's ODBC driver, the
# MariaDB server); installed with apt-get when running as root, otherwise listed.
system-deps:
	@tools/install_system_deps.sh

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	touch $(STAMP)

# Microsoft's ODBC Driver 18 (from the mssql-python-odbc wheel) for the tests that run the
# SQL Server backend through the real driver. Runs every time (fast when in place): the
# unixODBC registration names this checkout's venv, and another checkout may have moved it.
install: system-deps $(STAMP)
	@tools/install_msodbc.sh $(abspath $(VENV)) >/dev/null

test: install
	$(PY) -m pytest

# Scans DEMO_DIR (default: this project) into the embedded SQLite store, rescans, shows
# what the store holds, then changes a file in a temporary copy and shows the rotation.
DEMO_DIR ?=
demo: install
	DEMO_DIR="$(DEMO_DIR)" $(PY) tools/demo.py

# Also fails when the facades generated from the tier contracts are stale (regenerate
# them with `$(PY) tools/gen_facades.py`).
lint: install
	$(VENV)/bin/ruff check async_db_client tests examples benchmarks tools
	$(VENV)/bin/mypy async_db_client
	$(PY) tools/gen_facades.py --check

bench: install
	$(PY) benchmarks/bench_writes.py

# Runs the fault, load and security tests, records their numbers and rewrites
# RELIABILITY.md from them.
reliability: install
	ADC_RELIABILITY_REPORT=1 $(PY) -m pytest -q -m "live or slow" tests/test_faults_live.py \
		tests/test_outbox_live.py tests/test_load_live.py tests/test_restart_live.py
	$(PY) tools/write_reliability.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
