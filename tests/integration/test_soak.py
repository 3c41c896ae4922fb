"""A short run of the soak test (``make soak``), on the PostgreSQL pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.db import connection

from tests.utils import REPO

pytestmark = [
    # make test-django6 deselects slow tests; the Django 5.2 PostgreSQL pass runs this one.
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the soak runs on PostgreSQL"),
]


def test_short_soak_has_no_errors_and_no_mismatches() -> None:
    run = subprocess.run(
        [sys.executable, "scripts/soak.py", "--seconds", "5"],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    print(output)
    assert run.returncode == 0, output
    writes, reads = (
        int(re.search(rf"{kind}\s+(\d+) requests", output).group(1))  # type: ignore[union-attr]
        for kind in ["write", "read"]
    )
    assert writes > 0
    assert reads > 0
    pattern = r"events acknowledged: [1-9]\d*, cells checked: [1-9]\d*, errors: 0, mismatches: 0"
    assert re.search(pattern, output), output
