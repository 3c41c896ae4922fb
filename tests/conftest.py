from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import hypothesis
import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from kernel_status import mirror
from kernel_status.choices import AccessRole, ProcessState
from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess
from tests.utils import SESSION_ID, MakeSession, rebase


@pytest.fixture
def recent_base() -> None:
    """Re-base ``tests.utils.at()`` for this test (see :func:`tests.utils.rebase`)."""
    rebase()


@pytest.fixture
def users(db: Any) -> dict[str, User]:
    """owner, editor, viewer, stranger, superuser, and an inactive editor."""
    made = {
        name: User.objects.create_user(username=name, password=name)
        for name in ["owner", "editor", "viewer", "stranger", "inactive"]
    }
    made["superuser"] = User.objects.create_superuser(username="superuser", password="superuser")
    made["inactive"].is_active = False
    made["inactive"].save()
    return made


@pytest.fixture
def make_session(users: dict[str, User]) -> MakeSession:
    """Create a session owned by ``owner``, shared with editor/viewer/inactive.

    ``kernel=None`` creates no kernel process row; ``cells`` are (status, stale) pairs.
    """
    counter = iter(range(1_000_000))

    def make(
        session_id: str = "",
        *,
        kernel: ProcessState | None = ProcessState.RUNNING,
        heartbeat_age: timedelta | None = timedelta(0),
        cells: Iterable[tuple[str, bool]] = (),
        owner: User | None = None,
    ) -> Session:
        now = timezone.now()
        session = Session.objects.create(
            session_id=session_id or f"s_{next(counter)}",
            owner=owner or users["owner"],
            notebook="nb.py",
        )
        if kernel is not None:
            heartbeat = None if heartbeat_age is None else now - heartbeat_age
            KernelProcess.objects.create(
                session=session,
                state=kernel,
                started_at=heartbeat if kernel != ProcessState.NOT_STARTED else None,
                last_heartbeat_at=heartbeat,
            )
        CellStatus.objects.bulk_create(
            CellStatus(
                session=session, cell_id=f"c{i}", status=status, stale=stale, notified_at=now
            )
            for i, (status, stale) in enumerate(cells)
        )
        SessionAccess.objects.bulk_create(
            [
                SessionAccess(session=session, user=users["editor"], role=AccessRole.EDIT),
                SessionAccess(session=session, user=users["viewer"], role=AccessRole.VIEW),
                SessionAccess(session=session, user=users["inactive"], role=AccessRole.EDIT),
            ]
        )
        return session

    return make


@pytest.fixture
def reporter(users: dict[str, User]) -> APIClient:
    """A kernel host's service account, granted the permission through a group."""
    account = User.objects.create_user("kernel-host")
    group = Group.objects.create(name="kernel hosts")
    group.permissions.add(Permission.objects.get(codename="report_kernel_events"))
    account.groups.add(group)
    client = APIClient()
    client.force_authenticate(account)
    return client


@pytest.fixture
def token_client(users: dict[str, User]) -> Callable[[str], APIClient]:
    """An API client that authenticates as the named user with a DRF token."""

    def client_for(username: str) -> APIClient:
        client = APIClient()
        token = Token.objects.create(user=users[username])
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return client_for


@pytest.fixture
def session(users: dict[str, User]) -> Session:
    """The session ``SESSION_ID``, registered through the write API, owned by ``owner``."""
    return mirror.register_session(SESSION_ID, owner=users["owner"], notebook="nb.py")


# Hypothesis (tests/mirror/test_invariant.py): under CI a derandomized profile with a fixed example
# count per database run, so a failure reproduces; a faster one while developing.
# HYPOTHESIS_PROFILE overrides the choice.
hypothesis.settings.register_profile(
    "ci", derandomize=True, max_examples=400, deadline=None, database=None, print_blob=True
)
hypothesis.settings.register_profile("dev", max_examples=50, deadline=None)
hypothesis.settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterable[None]:
    """pytest-django's test databases, and no PostgreSQL connection left over when they are
    dropped: one left open by a thread or a server process would make the drop fail ("is
    being accessed by other users"). Any such connection is named on the terminal, so that
    its test can be found, and closed, so that the run still ends cleanly."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all(initialized_only=True):
            if connection.vendor != "postgresql":
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid, application_name, client_port, state, left(query, 120), "
                    "pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                leftovers = cursor.fetchall()
            for pid, application, port, state, query, _ in leftovers:
                warnings.warn(
                    f"closed a PostgreSQL connection left open by the tests: pid {pid}, "
                    f"application {application!r}, port {port}, {state}: {query!r}",
                    pytest.PytestWarning,
                    stacklevel=1,
                )
