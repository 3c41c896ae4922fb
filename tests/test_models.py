from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection
from django.utils import timezone

from kernel_status.models import CellStatus, Session
from tests.utils import MakeSession


@pytest.mark.parametrize(
    ("session_id", "message"),
    [
        ("x" * 129, "at most 128 characters"),
        ("a\nb", "contains control characters"),
        ("a\ud800b", "contains a lone surrogate"),
        (" ", "is empty"),
    ],
)
def test_session_id_validation(users: dict[str, User], session_id: str, message: str) -> None:
    session = Session(session_id=session_id, owner=users["owner"], notebook="nb.py")
    with pytest.raises(ValidationError, match=message):
        session.full_clean()


def test_empty_session_id_is_refused_by_the_database(users: dict[str, User]) -> None:
    with pytest.raises(IntegrityError):
        Session.objects.create(session_id="", owner=users["owner"], notebook="nb.py")


def test_one_status_row_per_cell(make_session: MakeSession) -> None:
    session = make_session()
    CellStatus.objects.create(session=session, cell_id="a", notified_at=timezone.now())
    with pytest.raises(IntegrityError):
        CellStatus.objects.create(session=session, cell_id="a", notified_at=timezone.now())


def test_unknown_cell_status_is_refused_by_the_database(make_session: MakeSession) -> None:
    session = make_session()
    with pytest.raises(IntegrityError):
        CellStatus.objects.create(
            session=session, cell_id="a", status="exploded", notified_at=timezone.now()
        )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="plan check needs PostgreSQL")
def test_busy_cell_lookup_uses_the_partial_index(make_session: MakeSession) -> None:
    session = make_session(cells=[("idle", False)] * 2000 + [("running", False)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE kernel_status_cellstatus")
    plan = Session.objects.with_state().filter(pk=session.pk).values("state").explain()
    assert "kernel_status_busy_cells" in plan, plan
