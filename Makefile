# The two commands a newcomer runs: `make demo`, then `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps test demo lint bench clean

# System packages the drivers and tests need (unixODBC, MariaDB's ODBC driver, the
# MariaDB server); installed with apt-get when running as root, otherwise listed.
system-deps:
	@tools/install_system_deps.sh

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	touch $(STAMP)

install: system-deps $(STAMP)

test: install
	$(PY) -m pytest

# Scans DEMO_DIR (default: this project) into the embedded SQLite store, rescans, shows
# what the store holds, then changes a file in a temporary copy and shows the rotation.
DEMO_DIR ?=
demo: install
	DEMO_DIR="$(DEMO_DIR)" $(PY) tools/demo.py

lint: install
	$(VENV)/bin/ruff check async_db_client tests examples benchmarks tools
	$(VENV)/bin/mypy async_db_client

bench: install
	$(PY) benchmarks/bench_writes.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
