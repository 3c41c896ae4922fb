"""The short run of the fault-injection suite (``make faults``), on the SQLite pass: it makes
its own PostgreSQL instance, so it needs no database of the suite's, and runs once."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from project.deploy import nginx_binary
from tests.utils import REPO

PG_BIN = Path(os.environ.get("KS_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_URL = os.environ.get("KS_FAULTS_REDIS_URL", "redis://127.0.0.1:6379/13")

pytestmark = [
    # make test-django6 deselects slow tests; the Django 5.2 SQLite pass runs this one.
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="runs once, on the SQLite pass"),
]


def needs(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the fault suite needs {what} under CI")
    pytest.skip(f"the fault suite needs {what}")


def redis_answers() -> bool:
    try:
        redis = importlib.import_module("redis")
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception:  # ImportError, redis.ConnectionError
        return False
    return True


def test_the_short_fault_suite_holds_every_claim() -> None:
    needs(f"initdb and pg_ctl in {PG_BIN}", (PG_BIN / "initdb").exists())
    needs(f"Redis at {REDIS_URL}", redis_answers())
    needs("nginx (Debian's nginx-light)", nginx_binary() is not None)
    run = subprocess.run(
        [sys.executable, "scripts/faults.py", "--short", "--pg-bin", str(PG_BIN)],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO), "KS_FAULTS_REDIS_URL": REDIS_URL},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    print(output)
    assert run.returncode == 0, output
    assert "faults: 5 of 5 scenarios held" in output
    for scenario in ["freeze", "restart", "rate-limits", "slow-clients", "refuse"]:
        assert f"\n{scenario}: held\n" in output, scenario
    # Each figure the claims rest on was printed: all 31 frozen requests answered 503.
    assert re.search(r"freeze: held\n  answers: \{503: 31\}\n", output), output
    assert re.search(r"requests: \{'status': 10, 'listing': 10, 'post': 10, 'wait': 1\}", output)
    for scope in ["status", "events", "sessions", "failed_auth"]:
        found = re.search(rf"  {scope}: (\d+) of 20 passed, (\d+) got 429\n", output)
        assert found, scope
        assert abs(int(found.group(1)) - 20) <= 1  # the claim: within 5%
        assert int(found.group(1)) + int(found.group(2)) == 60
