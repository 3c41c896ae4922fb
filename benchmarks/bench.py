"""`make bench`: the status endpoint under production servers, beside floors, marimo, Jupyter.

One run measures, with wrk on loopback (one thread, 4 connections, pinned to one core while
the server has the other):

- on SQLite, PostgreSQL and MariaDB (or MySQL), under gunicorn sync with one worker: floor0
  (constant body, no authentication), floor1 (the same behind TokenAuthentication +
  IsAuthenticated) and ``GET /api/kernel/status`` for sessions of 10, 1,000, 10,000 and
  100,000 idle cells;
- floor1 and status under gunicorn gthread, granian (WSGI) and uvicorn (ASGI), one worker each,
  then the best of the four with 2 workers on PostgreSQL;
- marimo's own ``GET /api/kernel/status`` on a real ``marimo edit`` server with one session
  open, and Jupyter Server's ``GET /api/kernels/{id}`` with one kernel;
- the write API's ingestion rates (benchmarks/apply_rate.py) for batches of 1, 100 and 1,000.

It prints one table, writes every figure to artifacts/bench.json and draws
artifacts/bench-latency.png (p50 against cell count, each database).

    python benchmarks/bench.py [--postgres-url URL] [--mariadb-url URL] [--duration SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CELL_COUNTS = [10, 1_000, 10_000, 100_000]
SMALL, LARGE = CELL_COUNTS[0], CELL_COUNTS[-1]
REQUIRED_MODULES = {
    "gunicorn": "gunicorn",
    "granian": "granian",
    "uvicorn": "uvicorn",
    "jupyter_server": "jupyter_server",
    "ipykernel": "ipykernel",
    "matplotlib": "matplotlib",
    "marimo": "marimo==0.25.2",
    "websockets": "websockets",
    "psycopg": "psycopg[binary]",
    "MySQLdb": "mysqlclient",
    "dj_database_url": "dj-database-url",
}
MARIMO_VERSION = "0.25.2"
STARTUP_TIMEOUT = 60.0
ROUNDS = 5  # per target and server; the best round counts


# --- measurements ------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run against one URL."""

    database: str
    server: str
    workers: int
    target: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    cells: int | None = None


@dataclass
class Results:
    started_at: str
    duration_s: int
    wrk: str
    cpus: int
    runs: list[Run] = field(default_factory=list)
    ingestion: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Queries per status request, per database and authentication path (inprocess.py).
    queries: dict[str, dict[str, int]] = field(default_factory=dict)
    # benchmarks/watch.py: blocking reads held on one uvicorn process, per database.
    watch: list[dict[str, Any]] = field(default_factory=list)

    def find(self, database: str, server: str, target: str, workers: int = 1) -> Run | None:
        for run in self.runs:
            if (run.database, run.server, run.target, run.workers) == (
                database,
                server,
                target,
                workers,
            ):
                return run
        return None


def preflight(only_deployment: bool = False) -> None:
    """Say exactly what is missing, and stop, before anything starts."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk (the load generator): apt-get install wrk")
    if only_deployment:  # gunicorn, uvicorn and nginx: the test dependencies have them
        if missing:
            sys.exit("make bench cannot run; missing:\n  - " + "\n  - ".join(missing))
        return
    modules = [pip for module, pip in REQUIRED_MODULES.items() if not _has_module(module)]
    if modules:
        missing.append(
            "Python packages: pip install -e '.[demo,marimo,mysql]' --group bench (missing: "
            + ", ".join(modules)
            + ")"
        )
    if missing:
        sys.exit("make bench cannot run; missing:\n  - " + "\n  - ".join(missing))
    import marimo

    if marimo.__version__ != MARIMO_VERSION:
        sys.exit(
            f"marimo {MARIMO_VERSION} is pinned, found {marimo.__version__}: "
            "pip install -e '.[demo,marimo,mysql]' --group bench"
        )


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(command: list[str], core: int | None) -> list[str]:
    """Pin to one core (when there are at least two and taskset exists)."""
    if core is None or (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return command
    return ["taskset", "-c", str(core), *command]


def wrk(
    url: str,
    headers: dict[str, str],
    duration: int,
    *,
    connections: int = 4,
    core: int | None = 0,
) -> tuple[float, float, float, int]:
    """(req/s, p50 ms, p99 ms, requests) of one wrk run; every answer must be a 2xx."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        pinned([*command, url], core), capture_output=True, text=True, check=True
    ).stdout
    if "Non-2xx or 3xx responses" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors against {url}:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return rps, p50, p99, count


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def http_get(url: str, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until(check: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def started(
    command: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """A server in its own process group, stopped (group and all) on exit."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


# --- the app under production servers ---------------------------------------------------------


@dataclass
class Database:
    name: str  # "sqlite", "postgresql" or "mariadb"
    url: str
    token: str = ""


def server_command(server: str, port: int, workers: int) -> list[str]:
    bind = ["127.0.0.1", str(port)]
    if server == "gunicorn-sync":
        return [PYTHON, "-m", "gunicorn", "-k", "sync", "-w", str(workers),
                "-b", ":".join(bind), "project.wsgi:application"]  # fmt: skip
    if server == "gunicorn-gthread":
        return [PYTHON, "-m", "gunicorn", "-k", "gthread", "--threads", "4", "-w", str(workers),
                "-b", ":".join(bind), "project.wsgi:application"]  # fmt: skip
    if server == "granian":
        return [PYTHON, "-m", "granian", "--interface", "wsgi", "--workers", str(workers),
                "--host", bind[0], "--port", bind[1], "project.wsgi:application"]  # fmt: skip
    if server == "uvicorn":
        return [PYTHON, "-m", "uvicorn", "--workers", str(workers), "--no-access-log",
                "--log-level", "warning", "--host", bind[0], "--port", bind[1],
                "project.asgi:application"]  # fmt: skip
    raise ValueError(server)


SERVERS = ["gunicorn-sync", "gunicorn-gthread", "granian", "uvicorn"]
REFERENCE = "gunicorn-sync"  # the setup: every target, every cell count


def app_env(database: Database) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "DJANGO_DEBUG": "0",
        "DATABASE_URL": database.url,
        "PYTHONPATH": str(ROOT),
    }


def prepare(database: Database, workdir: Path) -> None:
    if database.name == "postgresql":
        _recreate_postgres(database.url)
    elif database.name == "mariadb":
        _recreate_mariadb(database.url)
    completed = subprocess.run(
        [PYTHON, str(ROOT / "benchmarks" / "prepare.py"), *map(str, CELL_COUNTS)],
        env=app_env(database),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"preparing {database.name} failed:\n{completed.stderr}")
    database.token = json.loads(completed.stdout.strip().splitlines()[-1])["token"]


def heartbeat(database: Database) -> None:
    """Keep the bench kernels inside the liveness window (60 s) for the next run."""
    if database.name == "sqlite":
        path = urlsplit(database.url).path
        with contextlib.closing(sqlite3.connect(path[1:] if path.startswith("//") else path)) as db:
            now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
            db.execute("UPDATE kernel_status_kernelprocess SET last_heartbeat_at = ?", [now])
            db.commit()
    elif database.name == "mariadb":
        with contextlib.closing(_mariadb_connect(database.url, database=True)) as db:
            # Django stores naive UTC datetimes on MySQL (USE_TZ).
            db.cursor().execute(
                "UPDATE kernel_status_kernelprocess SET last_heartbeat_at = UTC_TIMESTAMP(6)"
            )
            db.commit()
    else:
        import psycopg

        with psycopg.connect(database.url, autocommit=True) as db:
            db.execute("UPDATE kernel_status_kernelprocess SET last_heartbeat_at = now()")


def _recreate_postgres(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_postgres(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as db:
        db.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(parts.path.lstrip("/"))
            )
        )


def _mariadb_connect(url: str, *, database: bool) -> Any:
    """A MySQLdb connection to the server in ``url``, to its database or to none."""
    import MySQLdb

    parts = urlsplit(url)
    return MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        connect_timeout=3,
        **({"database": parts.path.lstrip("/")} if database else {}),
    )


def _recreate_mariadb(url: str) -> None:
    name = urlsplit(url).path.lstrip("/").replace("`", "``")
    with contextlib.closing(_mariadb_connect(url, database=False)) as db:
        cursor = db.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        # utf8mb4, as docs/mysql.md creates it; migration 0006 gives the ids their collation.
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


def _drop_mariadb(url: str) -> None:
    name = urlsplit(url).path.lstrip("/").replace("`", "``")
    with contextlib.closing(_mariadb_connect(url, database=False)) as db:
        db.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def _mariadb_answers(url: str) -> bool:
    try:
        _mariadb_connect(url, database=False).close()
    except Exception:
        return False
    return True


def targets(database: Database, cell_counts: list[int]) -> dict[str, tuple[str, dict[str, str]]]:
    auth = {"Authorization": f"Token {database.token}"}
    found: dict[str, tuple[str, dict[str, str]]] = {
        "floor0": ("/bench/floor0", {}),
        "floor1": ("/bench/floor1", auth),
    }
    for cells in cell_counts:
        found[f"status-{cells}"] = (
            "/api/kernel/status",
            {**auth, "Marimo-Session-Id": f"bench-{cells}-cells"},
        )
    return found


def measure_app(
    results: Results,
    database: Database,
    server: str,
    workers: int,
    names: list[str],
    duration: int,
    logs: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # One worker gets core 1 and wrk core 0; two workers share both cores with wrk.
    core = 1 if workers == 1 else None
    wrk_core = 0 if workers == 1 else None
    connections = 4 * workers
    heartbeat(database)
    log = logs / f"{database.name}-{server}-{workers}.log"
    command = pinned(server_command(server, port, workers), core)
    with started(command, app_env(database), log) as process:
        wait_until(lambda: http_get(base + "/bench/floor0", {})[0] == 200, server, process, log)
        every = targets(database, CELL_COUNTS)
        for name in names:
            path, headers = every[name]
            status, body = http_get(base + path, headers)
            if status != 200 or json.loads(body).get("state") != "idle":
                raise RuntimeError(f"{server} {name}: {status} {body!r}, expected the idle state")
        # Warm up: imports, connections, the compiled query.
        wrk(base + every[names[-1]][0], every[names[-1]][1], 1, connections=connections,
            core=wrk_core)  # fmt: skip
        # Rounds interleave the targets and each keeps its best round, so that load from
        # elsewhere on the machine slows the floors and the endpoint alike.
        best: dict[str, tuple[float, float, float, int]] = {}
        for _ in range(ROUNDS):
            for name in names:
                path, headers = every[name]
                figures = wrk(
                    base + path, headers, duration, connections=connections, core=wrk_core
                )
                if name not in best or figures[0] > best[name][0]:
                    best[name] = figures
        for name in names:
            rps, p50, p99, count = best[name]
            cells = int(name.split("-")[1]) if name.startswith("status-") else None
            results.runs.append(
                Run(database.name, server, workers, name, rps, p50, p99, count, cells)
            )
            print(
                f"  {database.name:<10} {server:<16} w={workers} {name:<14} "
                f"{rps:>8,.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms",
                flush=True,
            )


def measure_deployment(
    results: Results, database: Database, duration: int, workdir: Path, logs: Path
) -> None:
    """Plain status reads under the recommended deployment (project/deploy/nginx.conf: nginx
    in front of gunicorn gthread and uvicorn) against the same gunicorn directly, interleaved
    in one run. The servers and nginx share core 1, wrk has core 0."""
    sys.path.insert(0, str(ROOT))
    from project.deploy import nginx_binary, nginx_running

    if nginx_binary() is None:
        results.notes.append("nginx is not installed: no deployment rows")
        print("nginx is not installed (apt-get install nginx-light): its rows are skipped")
        return
    wsgi_port, asgi_port, nginx_port = free_port(), free_port(), free_port()
    heartbeat(database)
    path, headers = targets(database, CELL_COUNTS)[f"status-{SMALL}"]
    wsgi = pinned(server_command("gunicorn-gthread", wsgi_port, 1), 1)
    asgi = pinned(server_command("uvicorn", asgi_port, 1), 1)
    direct, proxied = f"http://127.0.0.1:{wsgi_port}", f"http://127.0.0.1:{nginx_port}"
    wsgi_log, asgi_log = logs / "deployment-gunicorn.log", logs / "deployment-uvicorn.log"
    with (
        started(wsgi, app_env(database), wsgi_log) as wsgi_process,
        started(asgi, app_env(database), asgi_log) as asgi_process,
    ):
        servers = [(direct, wsgi_process, wsgi_log)]
        servers.append((f"http://127.0.0.1:{asgi_port}", asgi_process, asgi_log))
        for base, process, log in servers:
            url = base + "/bench/floor0"
            wait_until(lambda: http_get(url, {})[0] == 200, "a server", process, log)  # noqa: B023
        upstreams = (f"127.0.0.1:{wsgi_port}", f"127.0.0.1:{asgi_port}")
        with nginx_running(workdir / "nginx", nginx_port, *upstreams) as nginx:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(nginx.pid, {1})
            wait_until(lambda: http_get(proxied + path, headers)[0] == 200, "nginx", nginx,
                       workdir / "nginx" / "error.log")  # fmt: skip
            for base in (direct, proxied):
                status, body = http_get(base + path, headers)
                if status != 200 or json.loads(body).get("state") != "idle":
                    raise RuntimeError(f"{base}: {status} {body!r}, expected the idle state")
                wrk(base + path, headers, 1, core=0)  # warm up
            best: dict[str, tuple[float, float, float, int]] = {}
            for _ in range(ROUNDS):
                for name, base in (("gunicorn-direct", direct), ("nginx-split", proxied)):
                    figures = wrk(base + path, headers, duration, core=0)
                    if name not in best or figures[0] > best[name][0]:
                        best[name] = figures
    for name, (rps, p50, p99, count) in best.items():
        results.runs.append(
            Run(database.name, name, 1, f"status-{SMALL}", rps, p50, p99, count, SMALL)
        )
        print(
            f"  {database.name:<10} {name:<16} w=1 status-{SMALL:<7} "
            f"{rps:>8,.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms",
            flush=True,
        )
    ratio = best["nginx-split"][0] / best["gunicorn-direct"][0]
    results.notes.append(
        f"Recommended deployment ({database.name}, status, {SMALL} cells, gunicorn gthread "
        f"4 threads and uvicorn, one worker each): nginx split {best['nginx-split'][0]:,.0f} "
        f"req/s, gunicorn direct {best['gunicorn-direct'][0]:,.0f} req/s, ratio {ratio:.2f}x"
    )
    print(f"  {database.name:<10} nginx-split / gunicorn-direct: {ratio:.2f}x", flush=True)


# --- marimo and Jupyter ------------------------------------------------------------------------

MARIMO_NOTEBOOK = """import marimo

app = marimo.App()


@app.cell
def _():
    x = 1 + 1
    return (x,)


if __name__ == "__main__":
    app.run()
"""


def isolated_home(workdir: Path, name: str) -> dict[str, str]:
    home = workdir / f"{name}-home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / ".jupyter" / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }


def measure_marimo(results: Results, duration: int, workdir: Path, logs: Path) -> None:
    from websockets.sync.client import connect

    notebook = workdir / "bench_notebook.py"
    notebook.write_text(MARIMO_NOTEBOOK)
    port, password = free_port(), "bench-token"
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {password}"}
    log = logs / "marimo.log"
    command = [
        *(PYTHON, "-m", "marimo", "edit", str(notebook), "--headless", "--skip-update-check"),
        *("--host", "127.0.0.1", "--port", str(port), "--token-password", password),
    ]
    with started(pinned(command, 1), isolated_home(workdir, "marimo"), log, cwd=workdir) as proc:
        wait_until(lambda: http_get(base + "/health", {})[0] == 200, "marimo", proc, log)
        status, page = http_get(base + "/", auth)
        match = re.search(rb'"serverToken":\s*"([^"]+)"', page)
        if status != 200 or match is None:
            raise RuntimeError(f"marimo's page: {status}, no server token")
        session_id = "bench-session"
        headers = {
            **auth,
            "Marimo-Session-Id": session_id,
            "Marimo-Server-Token": match.group(1).decode(),
        }
        query = urlencode(
            {"session_id": session_id, "file": str(notebook), "access_token": password}
        )
        stop = threading.Event()
        with connect(f"ws://127.0.0.1:{port}/ws?{query}", max_size=None) as websocket:
            # Keep the session's socket drained while wrk runs, as a browser tab would.
            reader = threading.Thread(target=_drain, args=(websocket, stop), daemon=True)
            reader.start()
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while True:
                status, body = http_get(base + "/api/kernel/status", headers)
                if status == 200 and json.loads(body).get("state") == "idle":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"marimo's status: {status} {body!r}")
                time.sleep(0.2)
            wrk(base + "/api/kernel/status", headers, 1)
            rps, p50, p99, count = wrk(base + "/api/kernel/status", headers, duration)
            stop.set()
    results.runs.append(
        Run("-", f"marimo {MARIMO_VERSION}", 1, "/api/kernel/status", rps, p50, p99, count)
    )
    print(f"  marimo /api/kernel/status {rps:>8,.0f} req/s  p50 {p50:6.2f} ms", flush=True)


def _drain(websocket: Any, stop: threading.Event) -> None:
    with contextlib.suppress(Exception):
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                websocket.recv(timeout=0.5)


def measure_jupyter(results: Results, duration: int, workdir: Path, logs: Path) -> None:
    import jupyter_server

    port, token = free_port(), "bench-token"
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"token {token}"}
    root = workdir / "jupyter-root"
    root.mkdir(exist_ok=True)
    log = logs / "jupyter.log"
    command = [
        *(PYTHON, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}"),
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
        "--allow-root",  # containers and CI run as root; the server is on loopback only
    ]
    with started(pinned(command, 1), isolated_home(workdir, "jupyter"), log, cwd=root) as proc:
        wait_until(lambda: http_get(base + "/api/status", auth)[0] == 200, "jupyter", proc, log)
        request = urllib.request.Request(
            base + "/api/kernels",
            data=json.dumps({"name": "python3"}).encode(),
            headers={**auth, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            kernel_id = json.load(response)["id"]
        url = f"{base}/api/kernels/{kernel_id}"
        status, body = http_get(url, auth)
        if status != 200 or json.loads(body)["id"] != kernel_id:
            raise RuntimeError(f"jupyter's kernel: {status} {body!r}")
        wrk(url, auth, 1)
        rps, p50, p99, count = wrk(url, auth, duration)
    server = f"Jupyter Server {jupyter_server.__version__}"
    results.runs.append(Run("-", server, 1, "/api/kernels/{id}", rps, p50, p99, count))
    print(f"  jupyter /api/kernels/{{id}} {rps:>8,.0f} req/s  p50 {p50:6.2f} ms", flush=True)


# --- ingestion ---------------------------------------------------------------------------------


def measure_ingestion(results: Results, database: Database) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database.url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if database.name == "sqlite":
        env.pop("DATABASE_URL")
    completed = subprocess.run(
        [PYTHON, str(ROOT / "benchmarks" / "apply_rate.py"), "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"apply_rate.py on {database.name} failed:\n{completed.stderr}")
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    results.ingestion[database.name] = found["rates"]
    for rate in found["rates"]:
        print(
            f"  {database.name:<10} ingestion batch {rate['batch']:>5}: "
            f"{rate['write_api']:>9,.0f} n/s (ORM loop {rate['orm_loop']:,.0f})",
            flush=True,
        )


def measure_queries(results: Results, database: Database) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database.url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if database.name == "sqlite":
        env.pop("DATABASE_URL")
    completed = subprocess.run(
        [PYTHON, str(ROOT / "benchmarks" / "inprocess.py"), "--queries", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"inprocess.py --queries on {database.name} failed:\n{completed.stderr}")
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    results.queries[database.name] = found["queries"]
    print(f"  {database.name:<10} queries per status request: {found['queries']}", flush=True)


def measure_watch(results: Results, database: Database, postgres_url: str, workdir: Path) -> None:
    """1,000 blocking reads on one uvicorn process (benchmarks/watch.py; docs/performance.md
    gives the 10,000-waiter figures, ``--waiters 10000``)."""
    out = workdir / f"watch-{database.name}.json"
    command = [
        PYTHON,
        str(ROOT / "benchmarks" / "watch.py"),
        "--database",
        database.name,
        "--waiters",
        "1000",
        "--rate",
        "50",
        "--seconds",
        "10",
        "--json",
        str(out),
    ]
    if database.name == "postgresql":
        command += ["--postgres-url", postgres_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    completed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"watch.py on {database.name} failed:\n{completed.stderr}")
    print(completed.stdout.rstrip(), flush=True)
    results.watch.extend(json.loads(out.read_text()))


# --- report ------------------------------------------------------------------------------------


def report(results: Results, databases: list[str]) -> str:
    lines: list[str] = []

    def row(*cells: str) -> None:
        lines.append("| " + " | ".join(cells) + " |")

    def fig(run: Run | None) -> str:
        if run is None:
            return "-"
        return (
            f"{run.requests_per_second:,.0f} req/s, p50 {run.p50_ms:.2f} / p99 {run.p99_ms:.2f} ms"
        )

    lines.append(
        f"kernel_status bench, {results.started_at}, wrk -t1 -c4 -d{results.duration_s:g}s "
        f"--latency on loopback (best of {ROUNDS} interleaved rounds), {results.cpus} cores"
    )
    lines.append("")
    row("target (one worker)", *(f"{db}" for db in databases))
    row(*["---"] * (1 + len(databases)))
    names = ["floor0", "floor1", *(f"status-{cells}" for cells in CELL_COUNTS)]
    for name in names:
        label = name if not name.startswith("status-") else f"status, {name[7:]} cells"
        row(f"{label} ({REFERENCE})", *(fig(results.find(db, REFERENCE, name)) for db in databases))
    for server in SERVERS[1:]:
        for name in ["floor1", f"status-{SMALL}", f"status-{LARGE}"]:
            label = name if name == "floor1" else f"status, {name[7:]} cells"
            row(f"{label} ({server})", *(fig(results.find(db, server, name)) for db in databases))
    for run in results.runs:
        if run.workers == 2:
            row(f"{run.target} ({run.server}, 2 workers, wrk -c8)",
                *(fig(run) if db == run.database else "-" for db in databases))  # fmt: skip
    for run in results.runs:
        if run.database == "-":
            row(f"{run.server}, its {run.target}", fig(run), *["-"] * (len(databases) - 1))
    lines.append("")
    lines.append("Ratios (req/s over req/s; p50 over p50), same run, one worker:")
    row("ratio", *databases)
    row(*["---"] * (1 + len(databases)))
    for server in SERVERS:
        for cells in (SMALL, LARGE):
            cells_text = f"{cells:,}"
            row(
                f"status({cells_text} cells) / floor1, {server} (target >= 1.0)",
                *(_ratio(results, db, server, cells) for db in databases),
            )
    row(
        f"p50({LARGE:,} cells) / p50({SMALL} cells), {REFERENCE} (target <= 1.1)",
        *(_flatness(results, db) for db in databases),
    )
    row(
        "status(10) / floor0",
        *(_simple(results, db, f"status-{SMALL}", "floor0") for db in databases),
    )
    jupyter = next((run for run in results.runs if run.server.startswith("Jupyter")), None)
    for server, cells in ((server, cells) for server in SERVERS for cells in (SMALL, LARGE)):
        ours = [results.find(db, server, f"status-{cells}") for db in databases]
        row(
            f"status({cells:,} cells) / Jupyter Server, {server} (per process)",
            *(
                "-" if run is None or jupyter is None
                else f"{run.requests_per_second / jupyter.requests_per_second:.2f}"
                for run in ours
            ),
        )  # fmt: skip
    for path in ("token", "session"):
        row(
            f"queries per status request, {path} authentication",
            *(str(results.queries.get(db, {}).get(path, "-")) for db in databases),
        )
    lines.append("")
    lines.append("Ingestion (write API, notifications/s; ORM loop baseline from the same run):")
    row("batch", *databases)
    row(*["---"] * (1 + len(databases)))
    for index, size in enumerate([1, 100, 1000]):
        cells_out = []
        for db in databases:
            rates = results.ingestion.get(db)
            if not rates:
                cells_out.append("-")
                continue
            rate = rates[index]
            cells_out.append(
                f"{rate['write_api']:,.0f} ({rate['write_api'] / rate['orm_loop']:.2f}x ORM loop)"
            )
        row(f"{size:,}", *cells_out)
    if results.watch:
        lines.append("")
        lines.append("Watching (benchmarks/watch.py, one uvicorn process, 50 changes/s for 10 s):")
        row(
            "database",
            "waiters",
            "wake p50 / p99 / max (ms)",
            "RSS/waiter (KB)",
            "idle CPU",
            "DB connections before / held / writing",
            "req/s vs 1 s polling",
        )
        row(*["---"] * 7)
        for w in results.watch:
            c = w["connections"]
            conns = (
                "n/a"
                if c.get("before") is None
                else f"{c['before']} / {c['held']} / {c['writing']}"
            )
            row(
                w["database"],
                f"{w['waiters']:,}",
                f"{w['p50_ms']:.1f} / {w['p99_ms']:.1f} / {w['max_ms']:.1f}",
                f"{w['rss_per_waiter_kb']:.1f}",
                f"{w['idle_cpu_percent']:.1f} %",
                conns,
                f"{w['requests_per_second']:,.1f} / {w['polling_requests_per_second']:,.0f}",
            )
    for note in results.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def _ratio(results: Results, db: str, server: str, cells: int) -> str:
    return _simple(results, db, f"status-{cells}", "floor1", server)


def _simple(results: Results, db: str, top: str, bottom: str, server: str = REFERENCE) -> str:
    a, b = results.find(db, server, top), results.find(db, server, bottom)
    if a is None or b is None:
        return "-"
    return f"{a.requests_per_second / b.requests_per_second:.2f}"


def _flatness(results: Results, db: str) -> str:
    small = results.find(db, REFERENCE, f"status-{SMALL}")
    large = results.find(db, REFERENCE, f"status-{LARGE}")
    if small is None or large is None:
        return "-"
    return f"{large.p50_ms / small.p50_ms:.2f}"


def plot(results: Results, databases: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for db in databases:
        runs = [results.find(db, REFERENCE, f"status-{cells}") for cells in CELL_COUNTS]
        points = [(run.cells, run.p50_ms) for run in runs if run is not None]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", label=f"status, {db}")
        floor = results.find(db, REFERENCE, "floor1")
        if floor is not None:
            color = axes.lines[-1].get_color() if axes.lines else None
            axes.axhline(
                floor.p50_ms, linestyle="--", linewidth=1, color=color, label=f"floor1, {db}"
            )
    axes.set_xscale("log")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("idle cells in the session")
    axes.set_ylabel("p50 latency (ms)")
    axes.set_title(f"GET /api/kernel/status, {REFERENCE}, 1 worker, wrk -t1 -c4")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/kernel_status"),
        help="server to use; the bench creates and drops the database <name>_bench on it",
    )
    parser.add_argument(
        "--mariadb-url",
        default=os.environ.get("MARIADB_URL", "mysql://root@127.0.0.1:3306/kernel_status"),
        help="MariaDB or MySQL server; the bench creates and drops the database <name>_bench",
    )
    parser.add_argument(
        "--duration", type=int, default=1, help=f"seconds per wrk run ({ROUNDS} per target)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "artifacts", help="JSON and PNG")
    parser.add_argument(
        "--only-deployment",
        action="store_true",
        help="measure only the recommended deployment against gunicorn directly, and print",
    )
    args = parser.parse_args()
    preflight(args.only_deployment)

    results = Results(
        started_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        duration_s=args.duration,
        wrk=subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[
            0
        ],
        cpus=os.cpu_count() or 1,
    )
    workdir = Path(tempfile.mkdtemp(prefix="kernel-status-bench-"))
    logs = workdir / "logs"
    logs.mkdir()
    databases = [Database("sqlite", f"sqlite:///{workdir / 'bench.sqlite3'}")]
    pg_url = _bench_database_url(args.postgres_url)
    if _postgres_answers(pg_url):
        databases.append(Database("postgresql", pg_url))
    else:
        results.notes.append(
            f"PostgreSQL at {args.postgres_url} did not answer: no PostgreSQL rows"
        )
        print(f"PostgreSQL at {args.postgres_url} did not answer: its rows are skipped")
    mariadb_url = _bench_database_url(args.mariadb_url)
    if _mariadb_answers(mariadb_url):
        databases.append(Database("mariadb", mariadb_url))
    else:
        results.notes.append(f"MariaDB at {args.mariadb_url} did not answer: no MariaDB rows")
        print(f"MariaDB at {args.mariadb_url} did not answer: its rows are skipped")
    print(f"Working in {workdir} (server logs in {logs})", flush=True)
    deployment_db = next((db for db in databases if db.name == "postgresql"), databases[0])
    if args.only_deployment:
        try:
            print(f"== {deployment_db.name}: the recommended deployment (nginx split)")
            prepare(deployment_db, workdir)
            measure_deployment(results, deployment_db, args.duration, workdir, logs)
        finally:
            if deployment_db.name == "postgresql":
                _drop_postgres(deployment_db.url)
        return
    try:
        for database in databases:
            print(f"== {database.name}: preparing {', '.join(f'{c:,}' for c in CELL_COUNTS)} cells")
            prepare(database, workdir)
            every = list(targets(database, CELL_COUNTS))
            measure_app(results, database, REFERENCE, 1, every, args.duration, logs)
            for server in SERVERS[1:]:
                names = ["floor1", f"status-{SMALL}", f"status-{LARGE}"]
                measure_app(results, database, server, 1, names, args.duration, logs)
        if any(db.name == "postgresql" for db in databases):
            postgres = next(db for db in databases if db.name == "postgresql")
            best = max(
                SERVERS,
                key=lambda server: (
                    results.find(  # type: ignore[union-attr]
                        "postgresql", server, f"status-{SMALL}"
                    ).requests_per_second
                ),
            )
            measure_app(
                results, postgres, best, 2, ["floor1", f"status-{SMALL}"], args.duration, logs
            )
        print(f"== {deployment_db.name}: the recommended deployment (nginx split)")
        measure_deployment(results, deployment_db, args.duration, workdir, logs)
        print("== marimo and Jupyter Server")
        measure_marimo(results, args.duration, workdir, logs)
        measure_jupyter(results, args.duration, workdir, logs)
        print("== ingestion (benchmarks/apply_rate.py)")
        for database in databases:
            measure_ingestion(results, database)
        print("== queries per status request (benchmarks/inprocess.py --queries)")
        for database in databases:
            measure_queries(results, database)
        print("== watching (benchmarks/watch.py)")
        for database in databases:
            if database.name in ("sqlite", "postgresql"):
                measure_watch(results, database, args.postgres_url, workdir)
    finally:
        for database in databases:
            if database.name == "postgresql":
                _drop_postgres(database.url)
            elif database.name == "mariadb":
                _drop_mariadb(database.url)
    names = [db.name for db in databases]
    table = report(results, names)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "bench.json").write_text(json.dumps(asdict(results), indent=2) + "\n")
    (args.output / "bench.md").write_text(table + "\n")
    plot(results, names, args.output / "bench-latency.png")
    print()
    print(table)
    print()
    print(f"Wrote {args.output / 'bench.json'}, bench.md and bench-latency.png")


def _bench_database_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(path="/" + (parts.path.lstrip("/") or "kernel_status") + "_bench")
    )


def _postgres_answers(url: str) -> bool:
    try:
        import psycopg

        parts = urlsplit(url)
        maintenance = urlunsplit(parts._replace(path="/postgres"))
        psycopg.connect(maintenance, connect_timeout=3).close()
    except Exception:
        return False
    return True


if __name__ == "__main__":
    main()
