"""Session and cell ids are compared byte for byte on every database.

MariaDB's and MySQL's default collations would make "NB-1", "nb-1" and "nb-1 " one id;
migration 0006 gives both id columns a binary collation without padding there.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from kernel_status import mirror
from kernel_status.models import CellStatus, Session
from tests.utils import cell_op, get_status, post


def header(text: str) -> str:
    """A header value as WSGI servers hand it over: UTF-8 bytes decoded as latin-1."""
    return text.encode("utf-8").decode("latin-1")


@pytest.mark.parametrize(("first", "second"), [("NB-1", "nb-1"), ("nb-1", "nb-1 "), ("é", "e")])
def test_ids_differing_in_case_accent_or_a_trailing_space_are_two_sessions(
    users: dict[str, User], reporter: APIClient, first: str, second: str
) -> None:
    owner = APIClient()
    owner.force_authenticate(users["owner"])
    mirror.register_session(first, owner=users["owner"], notebook="first.py")
    mirror.register_session(second, owner=users["owner"], notebook="second.py")
    assert dict(Session.objects.values_list("session_id", "notebook")) == {
        first: "first.py",
        second: "second.py",
    }
    now = time.time()
    body = {
        "events": [
            {"op": "kernel-started", "data": {"timestamp": now - 2}},
            cell_op("a", "running", now - 1),
        ]
    }
    response = post(reporter, body, session_id=header(first))
    assert response.json() == {"applied": 2, "ignored_older": 0}
    assert get_status(owner, header(first)).json()["state"] == "running"
    # The other id's session has no kernel: the events went to the first one only.
    assert get_status(owner, header(second)).json()["state"] == "stopped"
    assert list(CellStatus.objects.values_list("session__session_id", "cell_id")) == [(first, "a")]


def test_a_status_read_in_another_case_is_404(users: dict[str, User], reporter: APIClient) -> None:
    mirror.register_session("Nb-Case", owner=users["owner"], notebook="nb.py")
    owner = APIClient()
    owner.force_authenticate(users["owner"])
    assert get_status(owner, "Nb-Case").status_code == 200
    for other in ("nb-case", "NB-CASE", "Nb-Case "):
        response = get_status(owner, other)
        assert response.status_code == 404, other
    # Nor does ingestion find it under another case: an unknown session.
    response = post(reporter, {"events": [cell_op("a", "idle", time.time())]}, "nb-case")
    assert response.status_code == 404
    assert not CellStatus.objects.exists()


def test_cell_ids_differing_only_in_case_are_two_cells(
    session: Session, reporter: APIClient
) -> None:
    now = time.time()
    body = {
        "events": [
            cell_op("cell", "running", now - 2),
            cell_op("Cell", "idle", now - 1),
            cell_op("cell ", "queued", now - 1),
        ]
    }
    assert post(reporter, body).json() == {"applied": 3, "ignored_older": 0}
    assert dict(CellStatus.objects.values_list("cell_id", "status")) == {
        "cell": "running",
        "Cell": "idle",
        "cell ": "queued",
    }
