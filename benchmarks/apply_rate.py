"""Apply rate of the write API: notifications per second for batches of 1, 100 and 1,000.

Runs against a throwaway test database of the example project: SQLite (a file) by default,
PostgreSQL when DATABASE_URL is set. The baseline, measured in the same run on the same
database, is the straightforward ORM loop a host would write first: one transaction per
batch and an ``update_or_create`` per notification. Both run with the benchmark servers'
settings (``benchmarks/settings.py``): on PostgreSQL that sets ``prepare_threshold``, as
docs/performance.md recommends, so kernel_status prepares its write statements while
Django's ORM keeps its default client-side binding (``DJANGO_SETTINGS_MODULE=project.settings``
measures without).

    python benchmarks/apply_rate.py [--json]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kernel_status python benchmarks/apply_rate.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from kernel_status import mirror  # noqa: E402
from kernel_status.events import CellNotification  # noqa: E402
from kernel_status.models import CellStatus, Session  # noqa: E402

BATCH_SIZES = [1, 100, 1000]
CELLS_PER_SESSION = 200  # batches revisit cells, as a busy notebook does
MIN_NOTIFICATIONS = 3000  # per measurement, so small batches run long enough to time
STATUSES = ["queued", "running", "idle"]


def make_batches(size: int, start: datetime) -> list[list[CellNotification]]:
    count = max(1, MIN_NOTIFICATIONS // size)
    batches, tick = [], 0
    for _ in range(count):
        batch = []
        for _ in range(size):
            tick += 1
            batch.append(
                CellNotification(
                    cell_id=f"c{tick % CELLS_PER_SESSION}",
                    timestamp=start + timedelta(microseconds=tick),
                    status=STATUSES[tick % 3],
                    stale_inputs=False,
                )
            )
        batches.append(batch)
    return batches


def apply_with_write_api(session: Session, batch: list[CellNotification]) -> None:
    mirror.apply_events(session.session_id, batch)


def apply_with_orm_loop(session: Session, batch: list[CellNotification]) -> None:
    with transaction.atomic():
        for n in batch:
            CellStatus.objects.update_or_create(
                session=session,
                cell_id=n.cell_id,
                defaults={
                    "status": n.status,
                    "stale": bool(n.stale_inputs),
                    "notified_at": n.timestamp,
                },
            )


def rate(
    apply: Callable[[Session, list[CellNotification]], None], session: Session, size: int
) -> float:
    batches = make_batches(size, timezone.now() - timedelta(days=len(session.session_id)))
    started = time.perf_counter()
    for batch in batches:
        apply(session, batch)
    elapsed = time.perf_counter() - started
    return sum(len(b) for b in batches) / elapsed


def main() -> None:
    if connection.vendor == "sqlite":
        # A file, not the in-memory default: closer to how SQLite is used for real.
        test_file = Path(tempfile.mkdtemp()) / "bench.sqlite3"
        connection.settings_dict["TEST"]["NAME"] = str(test_file)
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        owner = get_user_model().objects.create(username="bench")
        print(f"database: {connection.vendor}  (Django {django.get_version()})")
        print(f"{'batch':>6} {'write API (n/s)':>16} {'ORM loop (n/s)':>15} {'ratio':>7}")
        results = []
        for size in BATCH_SIZES:
            ours = rate(
                apply_with_write_api,
                mirror.register_session(f"api-{size}", owner=owner, notebook="b.py"),
                size,
            )
            base = rate(
                apply_with_orm_loop,
                mirror.register_session(f"orm-{size}", owner=owner, notebook="b.py"),
                size,
            )
            print(f"{size:>6} {ours:>16,.0f} {base:>15,.0f} {ours / base:>6.1f}x")
            results.append({"batch": size, "write_api": ours, "orm_loop": base})
        if "--json" in sys.argv[1:]:  # for benchmarks/bench.py: one line, last
            print(json.dumps({"database": connection.vendor, "rates": results}))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
