"""schemathesis against real servers: the served schema and the server agree, on valid and
invalid data, for every operation, with every check.

Two derandomized runs of the CLI against gunicorn, with a real token: one with the id of a
session the token's user owns (200s, writes, body validation), one with generated ids (the
header's constraints). Under WSGI the change stream answers 501 and waits are not applied, so
a third run, against uvicorn, covers the stream (ended by KERNEL_STATUS_STREAM_MAX_SECONDS in
tests/schemathesis_settings.py, so that each one is read whole) and blocking reads
(tests/schemathesis_hooks.py fills in ``Prefer: wait=1`` and the session's ETag, and checks
each stream event's data). Runs in the Django 5.2 SQLite pass only (``make test-sqlite``): its
cost is the generation, not the database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from rest_framework.authtoken.models import Token

from kernel_status import mirror
from tests.utils import REPO, SESSION_ID, gunicorn_server, uvicorn_server

# Per operation and run; the two runs make about 1,100 cases in all (150 made 958).
MAX_EXAMPLES = 180
MIN_CASES = 1_000

pytestmark = [
    # make test-django6 deselects slow tests; test-postgres skips it (below).
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="runs once per make test, on the SQLite pass"
    ),
]


def run_schemathesis(
    base_url: str,
    token: str,
    *headers: str,
    workdir: Path,
    options: tuple[str, ...] = ("--exclude-path", "/api/kernel/sessions/stream"),
    max_examples: int = MAX_EXAMPLES,
    env: dict[str, str] | None = None,
) -> int:
    """Run the CLI; fail with its output unless it found nothing. Returns the case count."""
    command = [
        *(str(Path(sys.executable).with_name("st")), "run", str(REPO / "schema.yml")),
        *("--url", base_url, "--header", f"Authorization: Token {token}"),
        *(arg for header in headers for arg in ("--header", header)),
        *("--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing"),
        *("--max-examples", str(max_examples), "--generation-deterministic"),
        *("--request-timeout", "10", "--workers", "2"),
        *options,
        "--no-color",
    ]
    # In a scratch directory: schemathesis keeps a cache of crashes in .schemathesis/ there.
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
        env={**os.environ, **(env or {})},
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    match = re.search(r"(\d+) generated, (\d+) passed", output)
    assert match, output
    generated, passed = map(int, match.groups())
    assert "failed" not in output.split("Test cases:")[-1], output
    assert passed <= generated
    return generated


@pytest.mark.django_db(transaction=True)
def test_schema_and_server_agree(users: dict[str, User], tmp_path: Path) -> None:
    owner: Any = users["owner"]
    owner.user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
    mirror.register_session(SESSION_ID, owner=owner, notebook="nb.py")
    token = Token.objects.create(user=owner).key
    with gunicorn_server("tests.schemathesis_settings", workers=2) as base_url:
        with_session = run_schemathesis(
            base_url, token, f"Marimo-Session-Id: {SESSION_ID}", workdir=tmp_path
        )
        generated_ids = run_schemathesis(base_url, token, workdir=tmp_path)
    total = with_session + generated_ids
    print(f"schemathesis: {with_session} + {generated_ids} = {total} cases, 0 failures")
    assert total >= MIN_CASES


# The ASGI run: two operations, each case of the stream lasting its 0.2 s lifetime and a
# quarter of the status cases a 1 s wait.
ASGI_MAX_EXAMPLES = 12
ASGI_MIN_CASES = 100


@pytest.mark.django_db(transaction=True)
def test_schema_and_asgi_server_agree_on_the_stream_and_the_waits(
    users: dict[str, User], tmp_path: Path
) -> None:
    """Under uvicorn, where the stream is served and ``Prefer: wait`` applies: the stream's
    events (tests/schemathesis_hooks.py checks each one's data), and blocking reads whose
    ``If-None-Match`` is the session's current ETag (304 + Preference-Applied) or not."""
    owner: Any = users["owner"]
    mirror.register_session(SESSION_ID, owner=owner, notebook="nb.py")
    token = Token.objects.create(user=owner).key
    log = tmp_path / "uvicorn.log"
    with uvicorn_server("tests.schemathesis_settings", log=log) as (base_url, _):
        env = {
            "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "KS_BASE_URL": base_url,
            "KS_TOKEN": token,
            "KS_SESSION_ID": SESSION_ID,
            "KS_TALLY": str(tmp_path / "tally"),
        }
        options = (
            *("--include-path", "/api/kernel/status"),
            *("--include-path", "/api/kernel/sessions/stream"),
        )
        cases = run_schemathesis(
            base_url,
            token,
            f"Marimo-Session-Id: {SESSION_ID}",
            workdir=tmp_path,
            options=options,
            max_examples=ASGI_MAX_EXAMPLES,
            env=env,
        )
    tally = Counter((tmp_path / "tally").read_text().splitlines())
    print(f"schemathesis under ASGI: {cases} cases, 0 failures; {sorted(tally.items())}")
    assert cases >= ASGI_MIN_CASES
    # The wait ran out (304) and answered at once (200, a tag that is not current), both with
    # Preference-Applied; streams were served, and their events checked.
    assert tally["/api/kernel/status 304 wait=1"] > 0
    assert tally["/api/kernel/status 200 wait=1"] > 0
    assert tally["/api/kernel/sessions/stream 200 -"] > 0
    assert (
        sum(n for line, n in tally.items() if line.startswith("checked-stream "))
        == tally["/api/kernel/sessions/stream 200 -"]
    )
    assert "Traceback" not in log.read_text()
