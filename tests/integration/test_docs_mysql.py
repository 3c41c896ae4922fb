"""docs/mysql.md's fresh-clone commands work as written, against MariaDB.

The page's console blocks are run line by line (the package installation excepted: the test
run has it) on a database of the test's own instead of ``kernel_status``: ``CREATE DATABASE``,
``migrate``, the demo and ``runserver``; then its bash block posts the event batch with curl
and reads the status. The commands are read from the page, never copied here.

It runs when MariaDB (or MySQL) answers at 127.0.0.1:3306 as root (``MARIADB_URL`` names
another server), and under CI=true it must; once per ``make test``, in the SQLite pass.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.test_docs_install import blocks, console_commands, get, run
from tests.utils import REPO, free_port

DOCUMENTED_URL = "mysql://root@127.0.0.1:3306/kernel_status"
SERVER_URL = os.environ.get("MARIADB_URL", DOCUMENTED_URL)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL")),
        reason="runs once per `make test`, in the SQLite pass (DATABASE_URL is set)",
    ),
]


def connect(database: str | None = None) -> Any:
    import MySQLdb  # type: ignore[import-untyped]

    parts = urlsplit(SERVER_URL)
    return MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        connect_timeout=3,
        **({"database": database} if database else {}),
    )


@pytest.fixture
def database() -> Iterator[str]:
    """A throwaway database name; the server must answer (always under CI=true)."""
    try:
        connect().close()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"MariaDB at {SERVER_URL} is unreachable, and CI=true requires it: {exc}")
        pytest.skip(f"MariaDB at {SERVER_URL} is unreachable: {exc}")
    name = f"ks_docs_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with closing(connect()) as db:
            db.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def ours(text: str, name: str, port: int) -> str:
    """A documented line on this test's database, server and port."""
    server = urlsplit(SERVER_URL)._replace(path=f"/{name}").geturl()
    text = text.replace(DOCUMENTED_URL, server)
    text = text.replace("CREATE DATABASE kernel_status ", f"CREATE DATABASE {name} ")
    return text.replace("127.0.0.1:8000", f"127.0.0.1:{port}")


def mysql_client(command: str, env: dict[str, str]) -> None:
    """The page's ``mysql -e`` line: by the client when installed, else through MySQLdb."""
    argv = shlex.split(command)
    if shutil.which(argv[0]) is not None and SERVER_URL == DOCUMENTED_URL:
        run(*argv, cwd=REPO, env=env)
        return
    statement = argv[argv.index("-e") + 1]
    with closing(connect()) as db:
        db.cursor().execute(statement)


def test_the_fresh_clone_commands_work_as_written(database: str, tmp_path: Path) -> None:
    page = [block for block in blocks("mysql.md") if block.language in ("console", "bash")]
    install, serve, client = page[0], page[1], page[2]
    assert [command for command, _ in console_commands(install)] == [
        "sudo apt-get install --no-install-recommends pkg-config libmariadb-dev",
        "python3 -m venv .venv && . .venv/bin/activate",
        "pip install -e '.[demo,mysql]'",
    ]
    port = free_port()
    leaky = {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH", "DJANGO_DEBUG"}
    env = {key: value for key, value in os.environ.items() if key not in leaky}
    # The venv's python is the page's "python".
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])

    server: subprocess.Popen[bytes] | None = None
    log = tmp_path / "runserver.log"
    ran = []
    try:
        for documented, _ in console_commands(serve):
            command = ours(documented, database, port)
            argv = shlex.split(command)
            # Never the documented database itself: every line must name the test's own.
            assert "kernel_status" not in command.replace("kernel_status_demo", ""), command
            if argv[0] == "mysql":
                mysql_client(command, env)
            elif argv[0] == "export":
                name, _, value = argv[1].partition("=")
                env[name] = value
            elif argv[2] == "runserver":
                with log.open("wb") as server_log:
                    # Its own process group: the autoreloader's child goes with it.
                    server = subprocess.Popen(
                        [sys.executable, *argv[1:]],
                        cwd=REPO,
                        env=env,
                        stdout=server_log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            else:
                assert argv[:2] == ["python", "manage.py"], documented
                output = run(sys.executable, *argv[1:], cwd=REPO, env=env)
                if argv[2] == "kernel_status_demo":
                    assert "As the reporter" in output, output
            ran.append(argv[0] if argv[0] != "python" else argv[2])
        assert ran == ["mysql", "export", "migrate", "kernel_status_demo", "runserver"]
        assert server is not None
        wait_for(f"http://127.0.0.1:{port}/api/kernel/status", server, log)
        output = run("bash", "-euc", ours(client.text, database, port), cwd=REPO, env=env)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    written, status = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert written == {"applied": 2, "ignored_older": 0}
    assert status["state"] == "idle"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", status["last_activity"])
    answer = next(b for b in blocks("mysql.md") if b.language == "text" and "applied" in b.text)
    shown = [json.loads(line) for line in answer.text.splitlines()]
    assert shown[0] == written
    assert shown[1].keys() == status.keys()
    assert shown[1]["state"] == "idle"
    # The database is the one named in the URL, in utf8mb4.
    with closing(connect(database)) as db:
        cursor = db.cursor()
        cursor.execute("SELECT @@character_set_database")
        assert cursor.fetchone() == ("utf8mb4",)


def wait_for(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, log.read_text()
        try:
            get(url)
            return
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
