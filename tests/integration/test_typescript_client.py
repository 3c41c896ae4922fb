"""clients/typescript builds, its types match schema.yml, and its node tests pass live.

The blocking read (`waitForChange`, and `waitUntilIdle` on top of it) needs an ASGI server:
its node tests (`npm run test:asgi`) run against uvicorn in another process.

Once per session: `npm ci` (when node_modules is missing or was installed from another
package-lock.json) and `npm run build` (tsc, strict). Then `npm run check-types` and the node
tests (`node --test`), against pytest-django's live server seeded with the demo data.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
from typing import Any, NoReturn

import pytest
from django.core.management import call_command
from pytest_django.live_server_helper import LiveServer

from tests.utils import REPO, run, uvicorn_server

# The clients test the HTTP contract, not the database: one pass of the suite is enough, so
# the PostgreSQL pass (which sets DATABASE_URL) leaves them out.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="the generated clients are tested on the SQLite pass only",
)

CLIENT_DIR = REPO / "clients" / "typescript"
# Written after a successful `npm ci`: a digest of the package.json and package-lock.json that
# node_modules was installed from.
INSTALL_STAMP = CLIENT_DIR / "node_modules" / ".kernel-status-install.sha256"
MIN_NODE = 20


def unavailable(reason: str) -> NoReturn:
    """Skip, except under CI=true, where the TypeScript client must be tested."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true requires the TypeScript client tests", pytrace=False)
    pytest.skip(f"{reason}: the TypeScript client tests are skipped (CI=true makes this an error)")


@pytest.fixture(scope="session")
def npm() -> str:
    """The npm executable, after checking that Node.js 20+ is there."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node and npm are not on PATH (Node.js 20+ is needed)")
    node_version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    major = re.match(r"v(\d+)\.", node_version)
    if major is None or int(major[1]) < MIN_NODE:
        unavailable(f"Node.js {node_version or '(unknown version)'} is too old (20+ is needed)")
    return npm


@pytest.fixture(scope="session")
def node_modules(npm: str) -> None:
    """`npm ci`, unless node_modules was already installed from the same lock file."""
    digest = hashlib.sha256()
    for name in ["package.json", "package-lock.json"]:
        digest.update((CLIENT_DIR / name).read_bytes())
    wanted = digest.hexdigest()
    if INSTALL_STAMP.is_file() and INSTALL_STAMP.read_text().strip() == wanted:
        return
    run(npm, "ci", "--no-audit", "--no-fund", timeout=600, cwd=CLIENT_DIR)
    INSTALL_STAMP.write_text(wanted + "\n")


@pytest.fixture(scope="session")
def built_client(npm: str, node_modules: None) -> None:
    """`npm run build`: tsc, strict, of the client and its tests into dist/."""
    run(npm, "run", "build", timeout=300, cwd=CLIENT_DIR)


def test_generated_types_match_schema(npm: str, node_modules: None) -> None:
    # Regenerates src/schema.ts into a temporary file and compares it with the committed one.
    run(npm, "run", "check-types", timeout=120, cwd=CLIENT_DIR)


def test_node_tests_pass_against_live_server(
    npm: str, built_client: None, live_server: LiveServer, transactional_db: Any
) -> None:
    out = io.StringIO()
    call_command("kernel_status_demo", "--json", stdout=out)
    env = {
        **os.environ,
        "KERNEL_STATUS_BASE_URL": live_server.url,
        "KERNEL_STATUS_DEMO": out.getvalue(),
    }
    # node --test dist/test/*.test.js
    output = run(npm, "test", cwd=CLIENT_DIR, timeout=300, env=env)
    assert re.search(r"^\S* ?pass [1-9]\d*$", output, re.MULTILINE), output
    assert re.search(r"^\S* ?fail 0$", output, re.MULTILINE), output


def test_node_watch_tests_pass_against_uvicorn(
    npm: str, built_client: None, transactional_db: Any, tmp_path: Any
) -> None:
    out = io.StringIO()
    call_command("kernel_status_demo", "--json", stdout=out)
    log = tmp_path / "uvicorn.log"
    with uvicorn_server(log=log) as (url, _):
        env = {**os.environ, "KERNEL_STATUS_BASE_URL": url, "KERNEL_STATUS_DEMO": out.getvalue()}
        try:
            # node --test dist/test/asgi/*.test.js
            output = run(npm, "run", "test:asgi", cwd=CLIENT_DIR, timeout=300, env=env)
        finally:
            print(log.read_text()[-5000:])  # shown when the test fails
    assert re.search(r"^\S* ?pass [1-9]\d*$", output, re.MULTILINE), output
    assert re.search(r"^\S* ?fail 0$", output, re.MULTILINE), output
