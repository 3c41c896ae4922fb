"""GET /api/kernel/sessions at scale, and the bytes a 304 saves per status poll.

Builds 10,000 sessions of 100 cells each (1,000,000 cell rows) with set-based inserts in a
throwaway test database of the example project (PostgreSQL when DATABASE_URL is set, else a
SQLite file), then prints:

- the SQL of one page and its plan (``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL,
  ``EXPLAIN QUERY PLAN`` on SQLite), for the first page, a later page (cursor) and the
  culler's ``idle_for`` filter, as a service account with ``view_all_sessions``;
- queries and milliseconds per page through the API, for page sizes 10, 100 and 1,000;
- the bytes of a 200 status answer and of the 304 that replaces it.

    python benchmarks/session_listing.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kernel_status \
        python benchmarks/session_listing.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import (  # noqa: E402
    CaptureQueriesContext,
    setup_test_environment,
    teardown_test_environment,
)
from django.utils import timezone  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from kernel_status.models import CellStatus, KernelProcess, Session  # noqa: E402
from kernel_status.queries.listing import SessionFilter, listing, parse_idle_for, sessions_for  # noqa: E402

SESSIONS = 10_000
CELLS = 100
PAGE = 100


def table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def build(owner_id: int) -> None:
    """Every session running; one in ten has a running cell and two queued ones."""
    now = timezone.now()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            series = "SELECT generate_series(1, %s) AS n"
            ts, ts_activity = "%s::timestamptz", "%s::timestamptz - (n || ' seconds')::interval"
        else:
            series = (
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
                "SELECT n FROM s"
            )
            ts, ts_activity = "%s", "datetime(%s, '-' || n || ' seconds')"
        stamp = now if connection.vendor == "postgresql" else now.strftime("%Y-%m-%d %H:%M:%S")
        cursor.execute(
            f"INSERT INTO {table(Session)} (session_id, owner_id, notebook, created_at, "
            f"updated_at, last_activity) SELECT 's_' || n, %s, 'nb/' || n || '.py', {ts}, {ts}, "
            f"{ts_activity} FROM ({series}) AS g",
            [owner_id, stamp, stamp, stamp, SESSIONS],
        )
        cursor.execute(
            f"INSERT INTO {table(KernelProcess)} (session_id, state, started_at, "
            f"last_heartbeat_at, exit_cause) SELECT id, 'running', {ts}, {ts}, '' "
            f"FROM {table(Session)}",
            [stamp, stamp],
        )
        # Cell c0 runs and c1, c2 are queued in every tenth session; the rest are idle.
        status = (
            "CASE WHEN s.id %% 10 = 0 AND c.n = 0 THEN 'running' "
            "WHEN s.id %% 10 = 0 AND c.n IN (1, 2) THEN 'queued' ELSE 'idle' END"
        )
        cells = series.replace("SELECT 1", "SELECT 0").replace("%s", str(CELLS - 1))
        if connection.vendor == "postgresql":
            cells = f"SELECT generate_series(0, {CELLS - 1}) AS n"
        cursor.execute(
            f"INSERT INTO {table(CellStatus)} (session_id, cell_id, status, stale, notified_at, "
            f"status_at) SELECT s.id, 'c' || c.n, {status}, false, {ts}, {ts} "
            f"FROM {table(Session)} s CROSS JOIN ({cells}) AS c",
            [stamp, stamp],
        )
        cursor.execute("ANALYZE")


def explain(title: str, queryset: object) -> None:
    sql, params = queryset.query.sql_with_params()  # type: ignore[attr-defined]
    shown = connection.ops.compose_sql(sql, params) if connection.vendor == "postgresql" else sql
    print(f"\n--- {title}\n{shown}\n")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        for row in cursor.fetchall():
            print("   ", " ".join(str(part) for part in row))


def per_page(client: APIClient, params: dict[str, str], repeat: int = 7) -> tuple[int, float, int]:
    timings, queries, size = [], 0, 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as context:
            started = time.perf_counter()
            response = client.get("/api/kernel/sessions", params)
            timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content
        queries, size = len(context.captured_queries), len(response.json()["results"])
    return queries, statistics.median(timings), size


def status_bytes(client: APIClient) -> None:
    def wire(response: object) -> int:
        return len(response.serialize_headers()) + 4 + len(response.content)  # type: ignore[attr-defined]

    headers = {"Marimo-Session-Id": "s_10"}
    full = client.get("/api/kernel/status", headers=headers)
    again = client.get("/api/kernel/status", headers={**headers, "If-None-Match": full["ETag"]})
    assert (full.status_code, again.status_code) == (200, 304)
    print(f"\nstatus 200: {wire(full)} bytes ({len(full.content)} of them body: {full.content!r})")
    print(f"status 304: {wire(again)} bytes")
    print(f"a 304 saves {wire(full) - wire(again)} bytes per poll (before the server's own")
    print("Date/Server headers, which both carry alike)")


def main() -> None:
    if connection.vendor == "sqlite":
        test_file = Path(tempfile.mkdtemp()) / "listing.sqlite3"
        connection.settings_dict["TEST"]["NAME"] = str(test_file)
    settings.DEBUG = False
    settings.KERNEL_STATUS_LIVENESS_WINDOW = None  # the data set does not age while we read
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        users = get_user_model().objects
        owner = users.create(username="owner")
        culler = users.create(username="culler")
        culler.user_permissions.add(Permission.objects.get(codename="view_all_sessions"))
        started = time.perf_counter()
        build(owner.pk)
        print(f"database: {connection.vendor}  (Django {django.get_version()})")
        print(
            f"built {Session.objects.count():,} sessions, {CellStatus.objects.count():,} cells "
            f"in {time.perf_counter() - started:.1f} s"
        )
        culler = users.get(pk=culler.pk)
        rows = listing(sessions_for(culler), SessionFilter()).order_by("pk")
        explain("first page (service account)", rows[: PAGE + 1])
        explain("page 51 (service account, cursor)", rows.filter(pk__gt=5000)[: PAGE + 1])
        quiet = listing(sessions_for(culler), SessionFilter(idle_for=parse_idle_for("3600")))
        explain("idle_for=3600 (service account)", quiet.order_by("pk")[: PAGE + 1])
        editor = listing(sessions_for(users.get(pk=owner.pk)), SessionFilter()).order_by("pk")
        explain("first page (the owner: access expression)", editor[: PAGE + 1])

        print(f"\n{'caller':>8} {'page size':>9} {'rows':>5} {'queries':>8} {'ms/page':>8}")
        for name, user in [("culler", culler), ("owner", owner)]:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
            for size in ["10", "100", "1000"]:
                queries, ms, got = per_page(client, {"page_size": size})
                print(f"{name:>8} {size:>9} {got:>5} {queries:>8} {ms:>8.1f}")
            if name == "owner":
                status_bytes(client)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
