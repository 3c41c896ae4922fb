# Quick start: `make demo` (set up, seed, serve) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The PostgreSQL run of the suite; its test database is created and dropped by pytest-django.
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/kernel_status

.PHONY: install demo test lint test-sqlite test-postgres schema clean

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

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py kernel_status_demo --base-url http://127.0.0.1:$(PORT)
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

test: install lint test-sqlite test-postgres

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

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

schema: install
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file schema.yml

clean:
	rm -rf $(VENV) db.sqlite3 build dist *.egg-info
