"""The status endpoint's compiled query: same answers as the ORM, fresh data, index plans."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import connection
from django.db.models import Case, Expression, IntegerField, Value, When
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from kernel_status import mirror
from kernel_status.access import DefaultAccessPolicy
from kernel_status.choices import AccessLevel, ProcessState, SessionState
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.events import CellNotification
from kernel_status.models import CellStatus, KernelProcess, Session
from kernel_status.queries import status as status_query
from kernel_status.queries.status import fetch_status, status_queryset
from tests.utils import (
    MakeSession,
    NotebookPrefixPolicy,
    cells,
    get_status,
    prepared_statements,
    prepared_statements_allowed,
)

USERNAMES = ["owner", "editor", "viewer", "stranger", "superuser", "inactive", "anonymous"]


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    status_query.clear_cache()
    yield
    status_query.clear_cache()


@pytest.fixture
def sessions(make_session: MakeSession) -> dict[str, Session]:
    """One session per state rule, all shared alike (see make_session)."""
    return {
        "running": make_session(cells=[*cells(Cell.IDLE) * 3, *cells(Cell.RUNNING)]),
        "queued": make_session(cells=cells(Cell.QUEUED)),
        "idle": make_session(cells=cells(Cell.IDLE, Cell.DISABLED_TRANSITIVELY)),
        "stale busy": make_session(cells=cells(Cell.RUNNING, Cell.QUEUED, stale=True)),
        "no cells": make_session(),
        "no kernel": make_session(kernel=None, cells=cells(Cell.RUNNING)),
        "not started": make_session(kernel=ProcessState.NOT_STARTED),
        "stopped": make_session(kernel=ProcessState.STOPPED, cells=cells(Cell.RUNNING)),
        "silent": make_session(heartbeat_age=timedelta(minutes=5), cells=cells(Cell.RUNNING)),
        "never beat": make_session(heartbeat_age=None, cells=cells(Cell.QUEUED)),
    }


def user_named(users: dict[str, User], name: str) -> AbstractBaseUser | AnonymousUser:
    return AnonymousUser() if name == "anonymous" else users[name]


def orm_row(user: AbstractBaseUser | AnonymousUser, session_id: str) -> Any:
    return next(iter(status_queryset(user, session_id)), None)


def shapes() -> dict[Hashable, status_query.Template | None]:
    return dict(status_query._templates)


@pytest.mark.parametrize("window", [timedelta(seconds=60), None], ids=["window", "no window"])
def test_compiled_and_orm_paths_agree_on_every_state_and_user(
    sessions: dict[str, Session], users: dict[str, User], window: timedelta | None
) -> None:
    with override_settings(KERNEL_STATUS_LIVENESS_WINDOW=window):
        for name in USERNAMES:
            user = user_named(users, name)
            for session in [*sessions.values(), Session(session_id="no-such-session")]:
                compiled = fetch_status(user, session.session_id)
                assert compiled == orm_row(user, session.session_id), (name, session)
                visible = Session.objects.visible_to(user).with_state()
                expected = visible.filter(session_id=session.session_id).first()
                if expected is None:  # not visible: no row, or a row below VIEW
                    assert compiled is None or compiled.access_level < AccessLevel.VIEW
                else:
                    assert compiled is not None
                    assert compiled.access_level == expected.access_level
                    assert compiled.state == expected.state
    # Every default-policy shape compiled: none fell back to the ORM.
    compiled_shapes = shapes()
    assert len(compiled_shapes) == 3  # anonymous/inactive, superuser, member
    assert all(template is not None for template in compiled_shapes.values())


def test_compiled_answers_cover_each_state(
    sessions: dict[str, Session], users: dict[str, User]
) -> None:
    def state(name: str) -> str | None:
        row = fetch_status(users["editor"], sessions[name].session_id)
        return None if row is None else row.state

    assert state("running") == state("queued") == SessionState.RUNNING
    assert state("idle") == state("no cells") == SessionState.IDLE
    assert state("no kernel") == state("stopped") == state("silent") == SessionState.STOPPED


def test_a_write_is_visible_to_the_very_next_read(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    session = make_session(cells=cells(Cell.IDLE))
    client = token_client("editor")

    def read() -> Any:
        response = get_status(client, session.session_id)
        assert response.status_code == 200
        return response.json()

    assert read() == {"state": "idle", "last_activity": None}
    at = (timezone.now() + timedelta(seconds=1)).replace(microsecond=123000)
    mirror.apply_events(session.session_id, [CellNotification("c0", at, status=Cell.RUNNING)])
    assert read() == {"state": "running", "last_activity": at.isoformat().replace("+00:00", "Z")}
    KernelProcess.objects.filter(session=session).update(state=ProcessState.STOPPED)
    assert read()["state"] == "stopped"
    KernelProcess.objects.filter(session=session).update(
        state=ProcessState.RUNNING, last_heartbeat_at=timezone.now()
    )
    CellStatus.objects.filter(session=session).update(status=Cell.IDLE)
    assert read()["state"] == "idle"


def test_an_access_change_is_visible_to_the_very_next_read(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    session = make_session()
    client = token_client("editor")
    assert get_status(client, session.session_id).status_code == 200
    session.grants.filter(user__username="editor").update(role="view")
    assert get_status(client, session.session_id).status_code == 403
    session.grants.filter(user__username="editor").delete()
    assert get_status(client, session.session_id).status_code == 404


def test_the_first_request_compiles_without_extra_queries(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session(cells=cells(Cell.QUEUED))
    client = APIClient()
    client.force_authenticate(users["owner"])
    for _ in range(2):  # compiling, then reusing
        with CaptureQueriesContext(connection) as context:
            response = get_status(client, session.session_id)
        assert response.json()["state"] == "running"
        assert len(context.captured_queries) == 1
    (template,) = shapes().values()  # one shape, compiled once
    assert template is not None


@override_settings(KERNEL_STATUS_ACCESS_POLICY="tests.utils.NotebookPrefixPolicy")
def test_a_policy_that_does_not_opt_in_takes_the_orm_path(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session("team-2")
    session.notebook = "team/x.py"
    session.save()
    staff = User.objects.create_user("staff", is_staff=True)
    row = fetch_status(staff, "team-2")
    assert row is not None
    assert (row.access_level, row.state) == (AccessLevel.EDIT, SessionState.IDLE)
    assert list(shapes().values()) == []  # nothing compiled, nothing cached


class MemberKeyedNotebookPolicy(NotebookPrefixPolicy):
    """Opts in, keyed on what the expression depends on (authenticated, staff)."""

    def compiled_query_key(self, user: AbstractBaseUser | AnonymousUser) -> Hashable | None:
        return (user.is_authenticated, getattr(user, "is_staff", False))


@override_settings(
    KERNEL_STATUS_ACCESS_POLICY="tests.queries.test_status_query.MemberKeyedNotebookPolicy"
)
def test_a_host_policy_that_opts_in_is_compiled(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    team = make_session("team-3")
    team.notebook = "team/x.py"
    team.save()
    staff = User.objects.create_user("staff", is_staff=True)
    everyone: list[AbstractBaseUser | AnonymousUser] = [
        staff,
        users["stranger"],
        users["owner"],
        AnonymousUser(),
    ]
    for user in everyone:
        for session_id in ["team-3", "private-3", "missing"]:
            assert fetch_status(user, session_id) == orm_row(user, session_id)
    assert len(shapes()) == 3
    assert all(template is not None for template in shapes().values())


class ShiftedOwnerPolicy(DefaultAccessPolicy):
    """Opts in, but its SQL holds a value derived from the pk, not the pk: cannot be bound."""

    def access_level_expression(self, user: AbstractBaseUser | AnonymousUser) -> Expression:
        return Case(
            When(owner_id=(user.pk or 0) - 1_000_000, then=Value(AccessLevel.EDIT.value)),
            When(owner_id=user.pk, then=Value(AccessLevel.VIEW.value)),
            default=Value(AccessLevel.NONE.value),
            output_field=IntegerField(),
        )

    def compiled_query_key(self, user: AbstractBaseUser | AnonymousUser) -> Hashable | None:
        return "everyone"


@override_settings(KERNEL_STATUS_ACCESS_POLICY="tests.queries.test_status_query.ShiftedOwnerPolicy")
def test_a_shape_that_cannot_be_bound_falls_back_to_the_orm(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    row = fetch_status(users["owner"], session.session_id)
    assert row is not None
    assert row.access_level == AccessLevel.VIEW
    assert list(shapes().values()) == [None]  # refused once, remembered
    assert fetch_status(users["owner"], session.session_id) == row


def test_a_default_policy_subclass_with_its_own_rules_does_not_inherit_the_opt_in(
    users: dict[str, User],
) -> None:
    class Stricter(DefaultAccessPolicy):
        def access_level_expression(self, user: AbstractBaseUser | AnonymousUser) -> Expression:
            return Value(AccessLevel.NONE.value, output_field=IntegerField())

    assert Stricter().compiled_query_key(users["owner"]) is None
    assert DefaultAccessPolicy().compiled_query_key(users["owner"]) == "member"
    assert DefaultAccessPolicy().compiled_query_key(users["superuser"]) == "superuser"
    assert DefaultAccessPolicy().compiled_query_key(users["inactive"]) == "none"
    assert DefaultAccessPolicy().compiled_query_key(AnonymousUser()) == "none"


# --- plans ------------------------------------------------------------------------------------


def compiled_sql(user: User, session: Session) -> tuple[str, list[Any]]:
    assert fetch_status(user, session.session_id) is not None
    (template,) = shapes().values()
    assert template is not None
    return template.sql, status_query._bind(
        template, connection, user, session.session_id, timezone.now()
    )


def test_busy_cell_probe_uses_the_partial_index(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session(cells=[*cells(Cell.IDLE) * 2000, *cells(Cell.RUNNING)])
    sql, params = compiled_sql(users["editor"], session)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("ANALYZE")
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
            # The cell probe is a search of the partial index, not of the session_id index.
            assert "USING INDEX kernel_status_busy_cells (session_id=?)" in plan, plan
            assert "kernel_status_cellstatus_session_id" not in plan, plan
            assert "SCAN U0" not in plan, plan  # U0: the subqueries' alias
        elif connection.vendor == "postgresql":
            cursor.execute("ANALYZE kernel_status_cellstatus")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "kernel_status_busy_cells" in plan, plan
            assert "Seq Scan on kernel_status_cellstatus" not in plan, plan
        else:
            assert connection.vendor == "mysql"
            assert_probes_busy_cells_on_mysql(cursor, sql, params)


def assert_probes_busy_cells_on_mysql(cursor: Any, sql: str, params: Any) -> None:
    """MySQL's plan: every read of the cells is a range or ref of both columns of
    (session_id, status), the busy statuses only, never the whole session's cells."""
    # No ANALYZE TABLE: it commits the test's transaction on MySQL.
    cursor.execute(f"EXPLAIN {sql}", params)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    cell_indexes = {"kernel_status_busy_cells", "kernel_status_cell_unique_per_session"}
    cell_reads = [
        row for row in rows if cell_indexes & set((row["possible_keys"] or "").split(","))
    ]
    assert cell_reads, rows
    for row in cell_reads:
        assert row["key"] == "kernel_status_busy_cells", rows
        assert row["type"] in ("range", "ref"), rows
        # session_id (8 bytes) and status (varchar(32), utf8mb4, 4 bytes a character + 2):
        # the probe keys on the status too.
        assert int(row["key_len"]) == 8 + 32 * 4 + 2, rows


def test_orm_with_state_also_uses_the_partial_index_on_sqlite(make_session: MakeSession) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("tests/test_models.py checks PostgreSQL")
    session = make_session(cells=[*cells(Cell.IDLE) * 500, *cells(Cell.QUEUED)])
    plan = Session.objects.with_state().filter(pk=session.pk).values("state").explain()
    assert "USING INDEX kernel_status_busy_cells" in plan, plan


@pytest.fixture(name="prepared_statements_allowed")
def prepared_statements_allowed_fixture(db: Any) -> Iterator[None]:
    with prepared_statements_allowed():
        yield


@pytest.mark.usefixtures("prepared_statements_allowed")
def test_postgresql_prepares_the_compiled_query_when_allowed(
    sessions: dict[str, Session], users: dict[str, User]
) -> None:
    for name in USERNAMES:
        user = user_named(users, name)
        for session in sessions.values():
            assert fetch_status(user, session.session_id) == orm_row(user, session.session_id)
    prepared = prepared_statements()
    assert any('"kernel_status_cellstatus"' in statement for statement in prepared), prepared
    client = APIClient()
    client.force_authenticate(users["editor"])
    with CaptureQueriesContext(connection) as context:  # still seen, still one query
        response = get_status(client, sessions["running"].session_id)
        assert response.json()["state"] == "running"
    assert len(context.captured_queries) == 1


def test_without_prepared_statements_nothing_is_prepared(
    sessions: dict[str, Session], users: dict[str, User]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL matter")
    assert fetch_status(users["owner"], sessions["idle"].session_id) is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone() == (0,)
