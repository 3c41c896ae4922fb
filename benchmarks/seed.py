"""Bench data: one user with a token, and one session per cell count, kernel alive, cells idle."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from kernel_status.choices import ProcessState
from kernel_status.models import CellStatus, KernelProcess, Session

USERNAME = "bench"


def session_id_for(cells: int) -> str:
    return f"bench-{cells}-cells"


def watch_session_id(index: int) -> str:
    return f"watch-{index}"


def seed(cell_counts: Iterable[int]) -> str:
    """Create the data and return the user's token key. The user owns every session."""
    now = timezone.now()
    with transaction.atomic():
        user = get_user_model().objects.create_user(USERNAME, password=USERNAME)
        token = Token.objects.create(user=user)
        for count in cell_counts:
            session = Session.objects.create(
                session_id=session_id_for(count), owner=user, notebook="bench.py"
            )
            KernelProcess.objects.create(
                session=session,
                state=ProcessState.RUNNING,
                started_at=now,
                last_heartbeat_at=now,
            )
            CellStatus.objects.bulk_create(
                (
                    CellStatus(session=session, cell_id=f"c{i}", status="idle", notified_at=now)
                    for i in range(count)
                ),
                batch_size=5000,
            )
    return token.key


def seed_watched(sessions: int, cells: int = 1) -> str:
    """``sessions`` sessions of ``cells`` idle cells each (benchmarks/watch.py), kernels alive,
    owned by the bench user; returns its token key."""
    now = timezone.now()
    with transaction.atomic():
        user = get_user_model().objects.create_user(USERNAME, password=USERNAME)
        token = Token.objects.create(user=user)
        created = Session.objects.bulk_create(
            (
                Session(session_id=watch_session_id(i), owner=user, notebook="bench.py")
                for i in range(sessions)
            ),
            batch_size=2000,
        )
        # bulk_create sets primary keys on PostgreSQL and SQLite (RETURNING), not MariaDB.
        if any(session.pk is None for session in created):
            created = list(Session.objects.filter(session_id__startswith="watch-"))
        KernelProcess.objects.bulk_create(
            (
                KernelProcess(
                    session=session,
                    state=ProcessState.RUNNING,
                    started_at=now,
                    last_heartbeat_at=now,
                )
                for session in created
            ),
            batch_size=2000,
        )
        CellStatus.objects.bulk_create(
            (
                CellStatus(session=session, cell_id=f"c{i}", status="idle", notified_at=now)
                for session in created
                for i in range(cells)
            ),
            batch_size=5000,
        )
    return str(token.key)


def heartbeat() -> None:
    """Keep every bench kernel inside the liveness window (60 s by default)."""
    KernelProcess.objects.update(last_heartbeat_at=timezone.now())
