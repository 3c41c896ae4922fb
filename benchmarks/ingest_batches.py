"""``POST /api/kernel/events`` in process: ms per batch of 1, 64 and 1,000 cell-ops.

Each size is posted through the fast path (the batch is all plainly valid cell-ops) and
through the serializer (the fast path switched off), five rounds each, interleaved; the best
of each counts. A throwaway database: SQLite in memory, or PostgreSQL when DATABASE_URL is set.

    python benchmarks/ingest_batches.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from django.contrib.auth.models import Permission, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from kernel_status import mirror  # noqa: E402
from kernel_status.mirror import ingest  # noqa: E402

SIZES = [1, 64, 1000]
ROUNDS = 5
SESSION = "bench"


def batch(size: int, first_tick: int, base: float) -> dict[str, Any]:
    """``size`` marimo cell-op frames over 64 cells, stamped after every earlier batch."""
    return {
        "events": [
            {
                "op": "cell-op",
                "data": {
                    "op": "cell-op",
                    "cell_id": f"cell-{i % 64}",
                    "output": None,
                    "console": None,
                    "status": "running" if (first_tick + i) % 2 else "idle",
                    "stale_inputs": None,
                    "run_id": "r1",
                    "timestamp": base + (first_tick + i) * 1e-3,
                },
            }
            for i in range(size)
        ]
    }


def main() -> None:
    setup_test_environment()
    test_db = connection.creation.create_test_db(verbosity=0)
    try:
        owner = User.objects.create_user("owner")
        host = User.objects.create_user("kernel-host")
        host.user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
        mirror.register_session(SESSION, owner=owner, notebook="nb.py")
        client = APIClient()
        client.force_authenticate(host)
        fast_path = ingest.fast_cell_ops
        base, tick = time.time() - 3600, 0
        print(f"{'cell-ops':>8} {'fast ms':>9} {'DRF ms':>9} {'DRF/fast':>9}")
        for size in SIZES:
            best = {"fast": float("inf"), "drf": float("inf")}
            for _ in range(ROUNDS):
                for path in best:
                    body = batch(size, tick, base)
                    tick += size
                    ingest.fast_cell_ops = fast_path if path == "fast" else _declines
                    start = time.perf_counter()
                    response = client.post(
                        "/api/kernel/events",
                        body,
                        format="json",
                        headers={"Marimo-Session-Id": SESSION},
                    )
                    elapsed = time.perf_counter() - start
                    if response.status_code != 200 or response.json()["applied"] != size:
                        raise SystemExit(f"unexpected answer: {response.content!r}")
                    best[path] = min(best[path], elapsed)
            ingest.fast_cell_ops = fast_path
            print(
                f"{size:>8} {best['fast'] * 1000:>9.2f} {best['drf'] * 1000:>9.2f} "
                f"{best['drf'] / best['fast']:>8.1f}x"
            )
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)


def _declines(body: Any, received_at: Any) -> None:
    return None


if __name__ == "__main__":
    main()
