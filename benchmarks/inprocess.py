"""Per-request cost in process: the WSGI app called directly, no server, no network.

Measures floor0, floor1 and the status endpoint at 10 and 100,000 cells on a throwaway
database (a SQLite file by default; PostgreSQL or MariaDB when DATABASE_URL is set), with
``--profile TARGET`` profiles that target with pyinstrument, and with ``--queries`` counts the
SQL queries of one status request on each path: DRF's token authentication (the one-statement
token path) and session authentication (DRF's normal path).

    python benchmarks/inprocess.py
    python benchmarks/inprocess.py --profile status-10
    python benchmarks/inprocess.py --queries --json
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kernel_status python benchmarks/inprocess.py
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402

from benchmarks.seed import heartbeat, seed, session_id_for  # noqa: E402

CELLS = [10, 100_000]
ROUNDS = 8


def environ_for(path: str, headers: dict[str, str]) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def targets(token: str) -> dict[str, tuple[str, dict[str, str]]]:
    auth = {"Authorization": f"Token {token}"}
    found: dict[str, tuple[str, dict[str, str]]] = {
        "floor0": ("/bench/floor0", {}),
        "floor1": ("/bench/floor1", auth),
    }
    for cells in CELLS:
        found[f"status-{cells}"] = (
            "/api/kernel/status",
            {**auth, "Marimo-Session-Id": session_id_for(cells)},
        )
    return found


def request_once(app: WSGIHandler, path: str, headers: dict[str, str]) -> bytes:
    statuses: list[str] = []

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    body = b"".join(app(environ_for(path, headers), start_response))
    if not statuses[0].startswith("200"):
        raise SystemExit(f"{path}: {statuses[0]} {body!r}")
    return body


def per_request_ms(call: Callable[[], object], seconds: float) -> float:
    for _ in range(20):
        call()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(20):
            call()
        count += 20
    return (time.perf_counter() - started) / count * 1000


def query_counts(token: str) -> dict[str, int]:
    """Queries of one status request (after a first one) on each authentication path."""
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    by_session = APIClient()
    by_session.force_login(Token.objects.get(key=token).user)  # a real session cookie
    headers = {"Marimo-Session-Id": session_id_for(CELLS[0])}
    counts = {}
    for name, client in [("token", by_token), ("session", by_session)]:
        client.get("/api/kernel/status", headers=headers)
        with CaptureQueriesContext(connection) as context:
            response = client.get("/api/kernel/status", headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"{name}: {response.status_code} {response.content!r}")
        counts[name] = len(context.captured_queries)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", metavar="TARGET", help="profile one target with pyinstrument")
    parser.add_argument("--seconds", type=float, default=4.0, help="time per target")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--queries", action="store_true", help="count the queries of a status request per path"
    )
    args = parser.parse_args()

    if connection.vendor == "sqlite":
        connection.settings_dict["TEST"]["NAME"] = str(Path(tempfile.mkdtemp()) / "bench.sqlite3")
    setup_test_environment(debug=False)
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        token = seed(CELLS)
        heartbeat()
        app = WSGIHandler()
        found = targets(token)
        for name, (path, headers) in found.items():
            print(f"{name}: {request_once(app, path, headers).decode()}", file=sys.stderr)
        if args.queries:
            counts = query_counts(token)
            if args.json:
                print(json.dumps({"database": connection.vendor, "queries": counts}))
            else:
                for name, count in counts.items():
                    print(f"{name:>8} authentication: {count} queries per status request")
            return
        if args.profile:
            from pyinstrument import Profiler

            path, headers = found[args.profile]
            profiler = Profiler(interval=0.0001)
            with profiler:
                per_request_ms(lambda: request_once(app, path, headers), args.seconds)
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            return
        # Rounds interleave the targets, and each keeps its best round: the machine's other
        # load then slows every target alike instead of whichever ran during it.
        rounds: dict[str, list[float]] = {name: [] for name in found}
        for _ in range(ROUNDS):
            for name, (path, headers) in found.items():
                rounds[name].append(
                    per_request_ms(
                        lambda p=path, h=headers: request_once(app, p, h), args.seconds / ROUNDS
                    )
                )
        figures = {name: min(times) for name, times in rounds.items()}
        if args.json:
            print(json.dumps({"database": connection.vendor, "ms_per_request": figures}))
            return
        print(f"database: {connection.vendor}  (Django {django.get_version()}, in process)")
        for name, ms in figures.items():
            print(f"{name:>14} {ms:8.3f} ms/request")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
