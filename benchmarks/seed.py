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


def heartbeat() -> None:
    """Keep every bench kernel inside the liveness window (60 s by default)."""
    KernelProcess.objects.update(last_heartbeat_at=timezone.now())
