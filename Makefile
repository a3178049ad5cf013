# The two commands a newcomer runs: `make demo`, then `make test`.
# Neither changes anything outside this checkout: packages go into .venv, ODBC drivers
# are registered in .venv/etc (ODBCSYSINI). System packages come only from the explicit
# `make system-deps` step, which .ci/run calls.
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.installed-stamp
# unixODBC reads this directory's odbcinst.ini instead of /etc's.
export ODBCSYSINI := $(abspath $(VENV))/etc

.PHONY: install system-deps test demo lint bench reliability clean FORCE

# System packages the drivers and tests need (unixODBC, MariaDB's ODBC driver, the
# MariaDB server, the Microsoft driver's libraries); apt-get when root, else listed.
system-deps:
	@tools/install_system_deps.sh

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The package's files: strict mode links each one, so a new module means a new install.
PACKAGE_FILES := $(sort $(shell find async_db_client -name '*.py' -o -name py.typed))
$(VENV)/.package-files: FORCE | $(VENV)/bin/python
	@echo "$(PACKAGE_FILES)" | cmp -s - $@ || echo "$(PACKAGE_FILES)" > $@

# What the library needs to run (the demo needs nothing more). The editable install is
# in setuptools' strict mode, which type checkers and IDEs follow (the default mode's
# import hook is invisible to mypy).
$(RUNTIME_STAMP): pyproject.toml $(VENV)/.package-files | $(VENV)/bin/python
	$(PY) -m pip install -q -e . --config-settings editable_mode=strict
	touch $(RUNTIME_STAMP)

# Everything: every driver extra, the test and dev tools, Microsoft's ODBC Driver 18 (from
# the mssql-python-odbc wheel) registered in the venv for the tests of the SQL Server path.
$(STAMP): pyproject.toml $(RUNTIME_STAMP)
	$(PY) -m pip install -q -e '.[all]' --config-settings editable_mode=strict
	tools/install_msodbc.sh $(VENV) >/dev/null
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest

# Scans DEMO_DIR (default: this project) into a SQLite store of the demo's own, rescans,
# shows what the store holds, then changes a file in a temporary copy and shows the
# rotation.
DEMO_DIR ?=
demo: $(RUNTIME_STAMP)
	DEMO_DIR="$(DEMO_DIR)" $(PY) tools/demo.py

# Also fails when the facades generated from the tier contracts are stale (regenerate
# them with `$(PY) tools/gen_facades.py`).
lint: install
	$(VENV)/bin/ruff check async_db_client tests examples benchmarks tools
	$(VENV)/bin/mypy async_db_client
	$(PY) tools/gen_facades.py --check

# Every benchmark, each writing its ratios to benchmarks/results/ (the README quotes them).
BENCHES := $(sort $(wildcard benchmarks/bench_*.py))
# Every benchmark runs; one below its target (exit status 1) does not hide the others'
# figures, and make still fails at the end, naming it.
bench: install
	@failed=""; for b in $(BENCHES); do echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "below target or failed:$$failed"; exit 1; fi

# Runs the fault, load and security tests, records their numbers and rewrites
# RELIABILITY.md from them.
reliability: install
	ADC_RELIABILITY_REPORT=1 $(PY) -m pytest -q -m "live or slow" tests/test_faults_live.py \
		tests/test_outbox_live.py tests/test_load_live.py tests/test_restart_live.py \
		tests/test_ha_live.py tests/test_postgres_faults_live.py \
		tests/test_postgres_replication_live.py
	$(PY) tools/write_reliability.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
