"""Many writers on the same session and cells at once, with real threads."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.utils import timezone

from kernel_status import mirror
from kernel_status.choices import CellRuntimeState
from kernel_status.events import CellNotification, KernelEvent, KernelHeartbeat, KernelStarted
from kernel_status.models import CellStatus, KernelProcess

# On SQLite these run against the file test database (tests/settings.py), where writers take
# the lock at BEGIN (transaction_mode IMMEDIATE) and wait for each other.
pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8
BATCHES_PER_THREAD = 25
CELLS = ["a", "b", "c"]
STATUSES = [s.value for s in CellRuntimeState]


def run_threads(target: object, count: int) -> list[BaseException]:
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            target(index)  # type: ignore[operator]
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung (deadlock?)"
    return failures


def test_concurrent_writers_keep_the_newest_notification(users: dict[str, User]) -> None:
    for name in ["s1", "s2"]:
        mirror.register_session(name, owner=users["owner"], notebook="nb.py")
    base = timezone.now() - timedelta(seconds=20)
    mirror.kernel_started("s1", at=base)
    mirror.kernel_started("s2", at=base)
    rng = random.Random(1234)
    # Distinct timestamps, dealt out at random to the threads' batches.
    plans: list[list[tuple[str, list[KernelEvent]]]] = []
    newest: dict[tuple[str, str], tuple[float, str]] = {}
    tick = 0
    for _ in range(THREADS):
        thread_batches: list[tuple[str, list[KernelEvent]]] = []
        for _ in range(BATCHES_PER_THREAD):
            batch: list[KernelEvent] = []
            session_id = rng.choice(["s1", "s2"])
            for _ in range(rng.randint(1, 6)):
                tick += 1
                offset = rng.random() * 10 + tick * 1e-4
                cell, status = rng.choice(CELLS), rng.choice(STATUSES)
                batch.append(
                    CellNotification(cell, base + timedelta(seconds=offset), status=status)
                )
                key = (session_id, cell)
                if key not in newest or newest[key][0] < offset:
                    newest[key] = (offset, status)
            batch.append(KernelHeartbeat(base + timedelta(seconds=rng.random() * 10)))
            thread_batches.append((session_id, batch))
        plans.append(thread_batches)

    def write(index: int) -> None:
        for session_id, events in plans[index]:
            mirror.apply_events(session_id, events)

    failures = run_threads(write, THREADS)
    assert failures == []
    stored = {
        (c.session.session_id, c.cell_id): c.status
        for c in CellStatus.objects.select_related("session")
    }
    assert stored == {key: status for key, (_, status) in newest.items()}


def test_concurrent_restarts_and_notifications_never_conflict(users: dict[str, User]) -> None:
    mirror.register_session("s1", owner=users["owner"], notebook="nb.py")
    base = timezone.now() - timedelta(seconds=20)

    def write(index: int) -> None:
        for step in range(30):
            t = base + timedelta(seconds=step + index / 100)
            events: list[KernelEvent] = [CellNotification("a", t, status="running")]
            if step % 10 == index % 10:
                events.append(KernelStarted(t - timedelta(microseconds=1)))
            mirror.apply_events("s1", events)

    assert run_threads(write, THREADS) == []
    assert KernelProcess.objects.get().state == "running"
    newest = base + timedelta(seconds=29 + (THREADS - 1) / 100)
    assert CellStatus.objects.get().notified_at == newest


def test_concurrent_registrations_of_a_new_id_all_succeed(users: dict[str, User]) -> None:
    registered: list[int] = []

    def register(index: int) -> None:
        registered.append(mirror.register_session("new", owner=users["owner"], notebook="nb.py").pk)

    assert run_threads(register, THREADS) == []
    assert len(set(registered)) == 1


def test_delete_while_writers_write_never_conflicts(users: dict[str, User]) -> None:
    mirror.register_session("s1", owner=users["owner"], notebook="nb.py")
    base = timezone.now()

    def work(index: int) -> None:
        if index == 0:
            mirror.delete_session("s1")
            return
        for step in range(20):
            try:
                mirror.apply_events(
                    "s1", [CellNotification(f"c{index}-{step}", base + timedelta(seconds=step))]
                )
            except mirror.UnknownSession:
                return  # deleted: the expected end

    assert run_threads(work, THREADS) == []
    assert not CellStatus.objects.exists()
