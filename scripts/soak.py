"""Soak test: writers and readers over HTTP against gunicorn on PostgreSQL, checked against an
oracle at the end.

Writers post batches of cell-ops and heartbeats for a few sessions: each batch shuffled, some
sent again later, several writers on the same sessions at once, so batches arrive out of order
and twice. Readers poll the status of random sessions. At the end, every cell in the database
must hold what the newest event sent for it says (the oracle, kept in memory as events are
acknowledged), and every session's status must be what those cells make it.

Prints counts, p50/p99 latencies and mismatches; exits 1 on any error or mismatch.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kernel_status \
        python scripts/soak.py --seconds 30

It creates and drops its own database, ``test_<name>_soak``, beside the URL's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# Throttling off: this measures the mirror under load, not the rate limits.
SETTINGS = "scripts.soak_settings"
os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Permission, User  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from kernel_status import mirror  # noqa: E402
from kernel_status.models import CellStatus, KernelProcess  # noqa: E402

STATUSES = ["idle", "queued", "running", "disabled-transitively"]
BUSY = {"queued", "running"}


@dataclass
class Oracle:
    """The newest acknowledged event per cell, and the newest heartbeat per session."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    cells: dict[tuple[str, str], tuple[float, str, bool]] = field(default_factory=dict)
    heartbeats: dict[str, float] = field(default_factory=dict)
    events: int = 0

    def acknowledge(self, session_id: str, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.events += len(events)
            for event in events:
                data = event["data"]
                if event["op"] == "cell-op":
                    key = (session_id, data["cell_id"])
                    new = (data["timestamp"], data["status"], data["stale_inputs"])
                    if key not in self.cells or self.cells[key][0] < new[0]:
                        self.cells[key] = new
                elif event["op"] == "kernel-heartbeat":
                    self.heartbeats[session_id] = max(
                        self.heartbeats.get(session_id, 0), data["timestamp"]
                    )


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def record(self, kind: str, seconds: float, error: str | None = None) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.counts[kind] += 1
            if error is not None:
                self.errors.append(f"{kind}: {error}")


class Clock:
    """Strictly increasing timestamps (whole milliseconds), near the wall clock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = 0.0

    def next(self) -> float:
        with self.lock:
            self.last = max(round(time.time(), 3), round(self.last + 0.001, 3))
            return self.last


def call(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def writer(
    port: int,
    token: str,
    sessions: list[str],
    cells: int,
    clock: Clock,
    oracle: Oracle,
    stats: Stats,
    stop: threading.Event,
    seed: int,
) -> None:
    rng = random.Random(seed)
    sent: list[tuple[str, list[dict[str, Any]]]] = []
    while not stop.is_set():
        if sent and rng.random() < 0.2:
            session_id, events = rng.choice(sent)  # a retry: the same events again
            events = rng.sample(events, len(events))
        else:
            session_id = rng.choice(sessions)
            events = [
                {
                    "op": "cell-op",
                    "data": {
                        "cell_id": f"c{rng.randrange(cells)}",
                        "status": rng.choice(STATUSES),
                        "stale_inputs": rng.random() < 0.3,
                        "timestamp": clock.next(),
                        "output": None,
                    },
                }
                for _ in range(rng.randint(1, 20))
            ]
            events.append({"op": "kernel-heartbeat", "data": {"timestamp": clock.next()}})
            rng.shuffle(events)
            sent.append((session_id, events))
        headers = {
            "Authorization": f"Token {token}",
            "Marimo-Session-Id": session_id,
            "Content-Type": "application/json",
        }
        started = time.perf_counter()
        try:
            status, body = call(
                port, "POST", "/api/kernel/events", headers, json.dumps({"events": events}).encode()
            )
        except OSError as exc:
            stats.record("write", time.perf_counter() - started, repr(exc))
            continue
        elapsed = time.perf_counter() - started
        if status == 200:
            oracle.acknowledge(session_id, events)
            stats.record("write", elapsed)
        else:
            stats.record("write", elapsed, f"{status} {body[:200]!r}")


def reader(
    port: int, token: str, sessions: list[str], stats: Stats, stop: threading.Event, seed: int
) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        headers = {"Authorization": f"Token {token}", "Marimo-Session-Id": rng.choice(sessions)}
        started = time.perf_counter()
        try:
            status, body = call(port, "GET", "/api/kernel/status", headers, None)
        except OSError as exc:
            stats.record("read", time.perf_counter() - started, repr(exc))
            continue
        elapsed = time.perf_counter() - started
        ok = status == 200 and json.loads(body).get("state") in {"idle", "running", "stopped"}
        stats.record("read", elapsed, None if ok else f"{status} {body[:200]!r}")


def compare(oracle: Oracle, port: int, token: str, sessions: list[str]) -> list[str]:
    """Every difference between the database (and the status answers) and the oracle."""
    mismatches = []
    stored = {
        (session_id, cell_id): (notified_at, status, stale)
        for session_id, cell_id, notified_at, status, stale in CellStatus.objects.values_list(
            "session__session_id", "cell_id", "notified_at", "status", "stale"
        )
    }
    if set(stored) != set(oracle.cells):
        mismatches.append(f"cells: {len(stored)} stored, {len(oracle.cells)} sent")
    for key, (timestamp, status, stale) in sorted(oracle.cells.items()):
        expected = (datetime.fromtimestamp(timestamp, tz=UTC), status, stale)
        actual = stored.get(key)
        same_time = actual is not None and abs((actual[0] - expected[0]).total_seconds()) < 1e-4
        if not same_time or actual is None or actual[1:] != expected[1:]:
            mismatches.append(f"{key}: stored {actual}, newest sent {expected}")
    heartbeats = dict(KernelProcess.objects.values_list("session__session_id", "last_heartbeat_at"))
    for session_id, timestamp in oracle.heartbeats.items():
        stored_at = heartbeats.get(session_id)
        if stored_at is None or abs(stored_at.timestamp() - timestamp) > 1e-4:
            mismatches.append(f"{session_id}: heartbeat {stored_at}, newest sent {timestamp}")
    for session_id in sessions:
        busy = any(
            status in BUSY for (sid, _), (_, status, _) in oracle.cells.items() if sid == session_id
        )
        expected_state = "running" if busy else "idle"
        headers = {"Authorization": f"Token {token}", "Marimo-Session-Id": session_id}
        status_code, body = call(port, "GET", "/api/kernel/status", headers, None)
        answer = json.loads(body) if status_code == 200 else body
        if not isinstance(answer, dict) or answer.get("state") != expected_state:
            mismatches.append(f"{session_id}: answered {answer!r}, expected {expected_state}")
    return mismatches


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 30)))
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--cells", type=int, default=50, help="cells per session")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("The soak runs on PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2

    base_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = f"test_{base_name}_soak"
    db_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    server = None
    try:
        owner = User.objects.create_user("soak-host")
        owner.user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
        token = Token.objects.create(user=owner).key
        sessions = [f"soak-{i}" for i in range(args.sessions)]
        clock = Clock()
        for session_id in sessions:
            mirror.register_session(session_id, owner=owner, notebook="soak.py")
            mirror.kernel_started(session_id, at=datetime.fromtimestamp(clock.next(), tz=UTC))
        connection.close()

        port = free_port()
        settings = connection.settings_dict
        database_url = (
            f"postgres://{settings['USER']}"
            + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
            + f"@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{db_name}"
        )
        env = os.environ | {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DATABASE_URL": database_url,
            "PYTHONPATH": str(REPO),
        }
        env.pop("DJANGO_DEBUG", None)
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "project.wsgi:application"),
                *("--bind", f"127.0.0.1:{port}", "--workers", str(args.workers)),
                *("--worker-class", "gthread", "--threads", "4", "--log-level", "warning"),
            ],
            cwd=REPO,
            env=env,
        )
        # Ready when every worker answers: the master listens before the workers have
        # imported Django.
        deadline = time.monotonic() + 60
        answered = 0
        while answered < 4 * args.workers:
            try:
                call(port, "GET", "/api/kernel/status", {}, None)
                answered += 1
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print("gunicorn did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)

        oracle, stats, stop = Oracle(), Stats(), threading.Event()
        threads = [
            threading.Thread(
                target=writer,
                args=(port, token, sessions, args.cells, clock, oracle, stats, stop, args.seed + i),
            )
            for i in range(args.writers)
        ] + [
            threading.Thread(
                target=reader, args=(port, token, sessions, stats, stop, args.seed + 100 + i)
            )
            for i in range(args.readers)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

        mismatches = compare(oracle, port, token, sessions)
        print(
            f"soak: {elapsed:.1f} s, {args.writers} writers, {args.readers} readers, "
            f"{args.sessions} sessions, gunicorn {args.workers} workers x 4 threads, "
            f"PostgreSQL {connection.pg_version // 10000}"
        )
        for kind in ["write", "read"]:
            values = stats.latencies[kind]
            rate = stats.counts[kind] / elapsed
            print(
                f"  {kind:5} {stats.counts[kind]:6} requests ({rate:6.1f}/s)"
                f"  p50 {percentile(values, 50) * 1000:6.1f} ms"
                f"  p99 {percentile(values, 99) * 1000:6.1f} ms"
            )
        print(
            f"  events acknowledged: {oracle.events}, cells checked: {len(oracle.cells)}, "
            f"errors: {len(stats.errors)}, mismatches: {len(mismatches)}"
        )
        for line in (stats.errors + mismatches)[:20]:
            print(f"    {line}")
        return 1 if stats.errors or mismatches else 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        connection.close()
        connection.creation.destroy_test_db(base_name, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
