"""The cost of the ``idle_for`` filters against the number of sessions.

Builds 1,000, then 10,000, then 100,000 sessions (set-based inserts, a running kernel each) in
a throwaway test database of the example project (PostgreSQL or MariaDB when DATABASE_URL is
set, else a SQLite file). Every session had activity within the last ten minutes except 100
quiet ones spread evenly over the table: 80 with activity two hours ago and 20 registered two
hours ago with no activity yet (three of them with a busy cell, so not idle). It then times,
best of 15, what the culler and the listing run with ``idle_for=3600``:

- ``page``: the first page of ``GET /api/kernel/sessions?idle_for=3600`` (the listing's query,
  101 rows ordered by pk, as a service account with ``view_all_sessions``);
- ``count``: the culler's count of the whole mirror's idle sessions (``idle_in_mirror``).

and prints milliseconds per query, and their ratio to the 1,000-session figures.

    python benchmarks/idle_for.py [--json]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kernel_status python benchmarks/idle_for.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from kernel_status.models import CellStatus, KernelProcess, Session  # noqa: E402
from kernel_status.queries.listing import SessionFilter, listing  # noqa: E402

SIZES = [1_000, 10_000, 100_000]
QUIET, NEVER_ACTIVE, BUSY_QUIET = 80, 20, 3
PAGE = 100
REPEAT = 15


def table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def series(count: int) -> str:
    """SQL for the rows n = 1..count."""
    if connection.vendor == "postgresql":
        return f"SELECT generate_series(1, {count}) AS n"
    return (
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
        f"WHERE n < {count}) SELECT n FROM s"
    )


def build(size: int, owner_id: int) -> None:
    """``size`` sessions, active within ten minutes but for 100 quiet ones spread evenly
    over the table (every ``size / 100``-th: one in five of them never active)."""
    Session.objects.all().delete()
    now = timezone.now()
    old = now - timedelta(hours=2)
    step = size // (QUIET + NEVER_ACTIVE)
    vendor = connection.vendor
    session_id = "CONCAT('s_', g.n)" if vendor == "mysql" else "'s_' || g.n"
    quiet = f"g.n %% {step} = 0"
    never = f"g.n %% {step * 5} = 0"
    with connection.cursor() as cursor:
        if vendor == "mysql":  # recursion limits for the row series
            variable = (
                "max_recursive_iterations"
                if connection.mysql_is_mariadb  # type: ignore[attr-defined]
                else "cte_max_recursion_depth"
            )
            cursor.execute(f"SET SESSION {variable} = 1000000")
        cursor.execute(
            f"INSERT INTO {table(Session)} (session_id, owner_id, notebook, created_at, "
            f"updated_at, last_activity) SELECT {session_id}, %s, 'nb.py', "
            f"CASE WHEN {quiet} THEN %s ELSE %s END, %s, "
            f"CASE WHEN {never} THEN NULL WHEN {quiet} THEN %s ELSE %s END "
            f"FROM ({series(size)}) g",
            [owner_id, old, now - timedelta(minutes=10), now, old, now],
        )
        cursor.execute(
            f"INSERT INTO {table(KernelProcess)} (session_id, state, started_at, "
            f"last_heartbeat_at, exit_cause) SELECT id, 'running', %s, %s, '' "
            f"FROM {table(Session)}",
            [old, now],
        )
        busy = Session.objects.filter(last_activity__lt=now - timedelta(hours=1))
        CellStatus.objects.bulk_create(
            CellStatus(session=s, cell_id="c0", status="running", notified_at=old, status_at=old)
            for s in busy.order_by("pk")[:BUSY_QUIET]
        )
        cursor.execute("ANALYZE" if vendor != "mysql" else f"ANALYZE TABLE {table(Session)}")


def best_ms(run: Callable[[], object]) -> float:
    timings = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        run()
        timings.append((time.perf_counter() - started) * 1000)
    return min(timings)


def main() -> None:
    if connection.vendor == "sqlite":
        connection.settings_dict["TEST"]["NAME"] = str(Path(tempfile.mkdtemp()) / "idle.sqlite3")
    settings.DEBUG = False
    settings.KERNEL_STATUS_LIVENESS_WINDOW = None  # the data set does not age while we read
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    results = []
    try:
        owner = get_user_model().objects.create(username="owner")
        rule = SessionFilter(idle_for=timedelta(hours=1))
        print(f"database: {connection.vendor}  (Django {django.get_version()})")
        print(f"{'sessions':>9} {'idle':>5} {'page ms':>8} {'count ms':>9}")
        for size in SIZES:
            build(size, owner.pk)
            page_rows = listing(Session.objects.all(), rule).order_by("pk")[: PAGE + 1]
            idle = listing(Session.objects.all(), rule).count()
            assert idle == QUIET + NEVER_ACTIVE - BUSY_QUIET, idle
            page = best_ms(lambda rows=page_rows: list(rows.all()))
            count = best_ms(lambda: listing(Session.objects.all(), rule).count())
            results.append({"sessions": size, "idle": idle, "page_ms": page, "count_ms": count})
            print(f"{size:>9,} {idle:>5} {page:>8.2f} {count:>9.2f}")
        first = results[0]
        last = results[-1]
        page_ratio = last["page_ms"] / first["page_ms"]
        count_ratio = last["count_ms"] / first["count_ms"]
        print(
            f"{SIZES[-1]:,} / {SIZES[0]:,} sessions: page {page_ratio:.2f}x, "
            f"count {count_ratio:.2f}x"
        )
        if "--json" in sys.argv[1:]:
            print(json.dumps({"database": connection.vendor, "idle_for": results}))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
