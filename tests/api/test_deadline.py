"""A bound on each request's database work (kernel_status.deadline): a request that outlives
KERNEL_STATUS_QUERY_DEADLINE has its connection cut and gets 503 with Retry-After, the
process then sheds requests at once (the breaker) until a probe gets through; and a POST that
answered 503 after it was applied can be sent again with the same outcome.

The frozen server itself (SIGSTOP) is scripts/faults.py's: tests/integration/test_faults.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, close_old_connections, connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from kernel_status import deadline
from kernel_status.api import views
from kernel_status.models import CellStatus, KernelProcess, Session
from tests.utils import SESSION_ID, get_status, outside_connection, post

BUSY = {"detail": "The database is busy; retry shortly."}

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: a lock held elsewhere"
)


@pytest.fixture(autouse=True)
def fresh_breaker() -> Iterator[None]:
    deadline.reset()
    yield
    deadline.reset()


@pytest.fixture
def locker() -> Iterator[psycopg.Connection[Any]]:
    """A second connection to the test database, outside Django."""
    with outside_connection() as conn:
        yield conn


def served(response: Any) -> Any:
    """What a server does at the end of each request, and the test client does not: drop a
    connection that broke (only outside a test's transaction)."""
    close_old_connections()
    return response


def assert_busy(response: Any) -> None:
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response["Content-Type"] == "application/json"
    assert response.json() == BUSY


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_request_past_the_deadline_is_cut_off_then_the_process_sheds_until_a_probe_passes(
    session: Session,
    token_client: Callable[[str], APIClient],
    reporter: APIClient,
    locker: psycopg.Connection[Any],
) -> None:
    owner = token_client("owner")
    # The statement timeout (5 s) would end the lock wait too, later: the deadline is first.
    with override_settings(KERNEL_STATUS_QUERY_DEADLINE=0.3, KERNEL_STATUS_DATABASE_COOLDOWN=1):
        assert served(get_status(owner, SESSION_ID)).status_code == 200
        with locker.transaction():
            locker.execute("LOCK TABLE kernel_status_session IN ACCESS EXCLUSIVE MODE")
            assert_busy(served(get_status(owner, SESSION_ID)))
            assert deadline.stats() == {"killed": 1, "shed": 0}
            # The breaker is open: the next requests are answered without a query.
            with CaptureQueriesContext(connection) as queries:
                assert_busy(served(owner.get("/api/kernel/sessions")))
                assert_busy(served(post(reporter, {"events": []})))
            assert queries.captured_queries == []
            assert deadline.stats() == {"killed": 1, "shed": 2}
            # After the cooldown one request probes the database, which still does not
            # answer: cut off again, and the breaker opens again.
            time.sleep(1.05)
            assert_busy(served(get_status(owner, SESSION_ID)))
            assert deadline.stats() == {"killed": 2, "shed": 2}
            assert_busy(served(get_status(owner, SESSION_ID)))
            assert deadline.stats() == {"killed": 2, "shed": 3}
        time.sleep(1.05)
        # The lock is gone: the probe gets its answer, and closes the breaker.
        probe = served(get_status(owner, SESSION_ID))
        assert probe.status_code == 200
        assert probe.json()["state"] == "stopped"
        listing = served(owner.get("/api/kernel/sessions"))
        assert listing.status_code == 200
        assert [item["session_id"] for item in listing.json()["results"]] == [SESSION_ID]
        assert deadline.stats() == {"killed": 2, "shed": 3}


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_cut_off_write_rolls_back_and_leaves_the_connection_usable(
    session: Session, reporter: APIClient, locker: psycopg.Connection[Any]
) -> None:
    batch = {"events": [{"op": "kernel-started", "data": {"timestamp": time.time()}}]}
    with override_settings(KERNEL_STATUS_QUERY_DEADLINE=0.3, KERNEL_STATUS_DATABASE_COOLDOWN=0):
        with locker.transaction():
            locker.execute("LOCK TABLE kernel_status_kernelprocess IN ACCESS EXCLUSIVE MODE")
            assert_busy(served(post(reporter, batch)))
        assert deadline.stats() == {"killed": 1, "shed": 0}
        assert not KernelProcess.objects.filter(session=session).exists()
        # No cooldown: the next request goes to the database, on a new connection.
        response = served(post(reporter, batch))
        assert (response.status_code, response.json()) == (200, {"applied": 1, "ignored_older": 0})
    assert KernelProcess.objects.get(session=session).state == "running"


@pytest.mark.django_db(transaction=True)
def test_no_deadline_no_bound(session: Session, token_client: Callable[[str], APIClient]) -> None:
    # KERNEL_STATUS_QUERY_DEADLINE=None: nothing is registered, nothing is ever shed.
    with override_settings(KERNEL_STATUS_QUERY_DEADLINE=None):
        assert get_status(token_client("owner"), SESSION_ID).status_code == 200
        with deadline.bounded(("default",)):
            assert deadline._state.scopes == {}
    assert deadline.stats() == {"killed": 0, "shed": 0}


def test_an_open_breaker_sheds_nothing_where_no_request_is_bounded(
    session: Session, token_client: Callable[[str], APIClient]
) -> None:
    # As a cut-off leaves it, then the deadline turned off (or SQLite, where nothing is
    # bounded): no request could probe and close it, so none is shed.
    deadline._state.open_until = time.monotonic() + 60
    with override_settings(KERNEL_STATUS_QUERY_DEADLINE=None):
        answer = get_status(token_client("owner"), SESSION_ID)
    assert answer.status_code == 200
    assert deadline.stats() == {"killed": 0, "shed": 0}


# --- a POST answered 503 after it was applied -------------------------------------------------


def mirror_rows(session: Session) -> tuple[Any, ...]:
    """Everything a batch writes for the session: its activity, kernel and cells."""
    session.refresh_from_db()
    kernel = list(KernelProcess.objects.filter(session=session).values())
    cells = list(CellStatus.objects.filter(session=session).order_by("cell_id").values())
    return session.last_activity, kernel, cells


def test_a_post_retried_after_a_503_that_was_applied_has_the_same_outcome(
    session: Session,
    reporter: APIClient,
    token_client: Callable[[str], APIClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    batch = {
        "events": [
            {"op": "kernel-started", "data": {"timestamp": now - 5}},
            {"op": "kernel-heartbeat", "data": {"timestamp": now - 1}},
            *(
                {
                    "op": "cell-op",
                    "data": {"cell_id": cell, "status": status, "timestamp": now - 2},
                }
                for cell, status in [("a", "running"), ("b", "idle"), ("c", "queued")]
            ),
        ]
    }
    applied = views.ingest

    def applied_then_lost(*args: Any, **kwargs: Any) -> Any:
        # The batch commits, then the connection is lost before the answer (a deadline
        # that cut the COMMIT's reply, a server that went away): the client sees 503.
        applied(*args, **kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(views, "ingest", applied_then_lost)
    assert_busy(post(reporter, batch))
    after_first = mirror_rows(session)
    owner = token_client("owner")
    status_after_first = get_status(owner, SESSION_ID)
    assert status_after_first.status_code == 200
    assert status_after_first.json()["state"] == "running"
    assert [cell["status"] for cell in after_first[2]] == ["running", "idle", "queued"]

    monkeypatch.setattr(views, "ingest", applied)
    retry = post(reporter, batch)  # the client does what Retry-After says
    assert retry.status_code == 200
    # Nothing new: every event was already applied, with the same timestamps.
    assert retry.json() == {"applied": 0, "ignored_older": 5}
    assert mirror_rows(session) == after_first
    status_after_retry = get_status(owner, SESSION_ID)
    assert status_after_retry.status_code == 200
    assert status_after_retry.content == status_after_first.content
    assert status_after_retry["ETag"] == status_after_first["ETag"]
    assert Session.objects.filter(session_id=SESSION_ID).count() == 1


@pytest.mark.skipif(connection.vendor != "mysql", reason="needs MariaDB or MySQL")
@pytest.mark.django_db(transaction=True)
def test_a_request_past_the_deadline_is_cut_off_on_mysql(
    session: Session, token_client: Callable[[str], APIClient]
) -> None:
    """mysqlclient's connection has a socket too (fileno()): the watchdog shuts it down."""
    mysqldb = pytest.importorskip("MySQLdb")
    settings_dict = connection.settings_dict
    other = mysqldb.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=int(settings_dict["PORT"] or 3306),
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"] or "",
        database=settings_dict["NAME"],
    )
    owner = token_client("owner")
    try:
        # The statement timeout (5 s) would end the wait for the table lock later.
        with override_settings(KERNEL_STATUS_QUERY_DEADLINE=0.3, KERNEL_STATUS_DATABASE_COOLDOWN=0):
            other.cursor().execute("LOCK TABLES kernel_status_session WRITE")
            assert_busy(served(get_status(owner, SESSION_ID)))
            assert deadline.stats() == {"killed": 1, "shed": 0}
            other.cursor().execute("UNLOCK TABLES")
            answer = served(get_status(owner, SESSION_ID))
            assert answer.status_code == 200
            assert answer.json()["state"] == "stopped"
    finally:
        other.close()
