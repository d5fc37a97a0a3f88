# memex — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
MEMEX     := $(VENV)/bin/memex
SETUP     := installer/setup
# The project venv uses the python3 on PATH; the server venv always uses Debian's /usr/bin/python3.
HOST_PY   ?= python3
STAMP     := $(VENV)/.memex-installed

.PHONY: help setup system pgvector server-venv test-servers venv citus demo test test-citus test-fast lint format bench clean-dev

help:
	@echo "make setup   install everything (idempotent, fast when present)"
	@echo "make demo    setup + dev cluster + install + sample corpus + searches"
	@echo "make test    setup + the whole test suite (+ test-citus where Citus is installed)"
	@echo "make lint    ruff, mypy, sqlfluff"
	@echo "make bench   benchmarks (ratios against baselines measured in the same run)"
	@echo "make citus CITUS_SRC=dir   build and install Citus from its source (Citus-mode tests)"

setup: system pgvector server-venv test-servers venv

system:
	@bash $(SETUP)/system-packages.sh

pgvector: system
	@bash $(SETUP)/pgvector.sh

server-venv: system
	@bash $(SETUP)/server-venv.sh plpython

# Real servers the tests start on loopback: infinity-emb (remote embedding provider).
test-servers: system
	@bash $(SETUP)/aux-venv.sh infinity $(SETUP)/infinity-requirements.txt >/dev/null

# Re-install only when the project's metadata changes (editable install: code changes need none).
venv: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(PY) || $(HOST_PY) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip 2> >(grep -v "is ignored: it is neither" >&2)
	@$(PY) -m pip install -q -e '.[dev]' 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $(STAMP)

# Citus from a source directory, for the Citus-mode tests (skipped where citus.so is absent):
# make citus CITUS_SRC=/path/to/citus (tag v13.2.2). docs/scale.md: installing it from packages.
citus: system
	@test -n "$(CITUS_SRC)" || { echo "usage: make citus CITUS_SRC=/path/to/citus-source"; exit 2; }
	@bash $(SETUP)/citus.sh "$(CITUS_SRC)"

demo: setup
	@$(MEMEX) dev up
	@$(MEMEX) install
	@$(MEMEX) demo

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-citus

# The database suites of issue 27 again, on a Citus cluster (tests/citus.py; docs/scale.md).
CITUS_SUITES := tests/db/test_tenancy.py tests/db/test_upserts.py tests/db/test_search.py \
	tests/db/test_text_index.py tests/db/test_embed_pending.py tests/db/test_reembed.py \
	tests/db/test_conversation_memory.py tests/client/test_client.py tests/mcp/test_mcp.py
test-citus: setup
	@if [ -f "$$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/citus.so" ]; then \
		$(PY) -m pytest -p no:cacheprovider --citus $(CITUS_SUITES); \
	else echo "test-citus: skipped, Citus is not installed (make citus CITUS_SRC=dir)"; fi

lint: venv
	$(VENV)/bin/ruff check installer plpython tests bench
	$(VENV)/bin/ruff format --check installer plpython tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/sqlfluff lint sql migrations

format: venv
	$(VENV)/bin/ruff check --fix installer plpython tests bench
	$(VENV)/bin/ruff format installer plpython tests bench
	$(VENV)/bin/sqlfluff fix sql migrations

bench: setup
	@bash $(SETUP)/aux-venv.sh langchain bench/langchain-requirements.txt >/dev/null
	@$(MEMEX) dev up
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-dev:
	@$(MEMEX) dev down || true
