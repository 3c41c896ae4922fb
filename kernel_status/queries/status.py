"""The status endpoint's one query: a user's access level and the derived state of one session.

Building that query with the ORM (the access ``Case``/``Exists`` and the state
``Case``/``Exists``) costs several times more Python than the database takes to run it. So the
SQL is compiled once per *shape* and executed with fresh parameters on every request. A shape
is everything that changes the SQL text: the database alias and vendor, the access policy, the
liveness window being on or off, and the user's kind as the policy names it
(:meth:`~kernel_status.access.AccessPolicy.compiled_query_key`). Only SQL text is cached,
never an answer: every request runs the query, permission expression included, against the
current data.

Policies that do not opt in, and shapes whose parameters cannot be told apart safely, take the
general path: the same queryset built with the ORM on every request.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.db.models import QuerySet
from django.utils import timezone

from kernel_status.conf import conf
from kernel_status.queries import mirror_model
from kernel_status.queries.access import get_access_policy
from kernel_status.queries.state import session_state_expression

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.db.backends.base.base import BaseDatabaseWrapper

    User = AbstractBaseUser | AnonymousUser

# Shapes are few (aliases x policies x window on/off x user kinds); a policy that returns keys
# per user would grow the cache without bound, so it is cleared past this size.
MAX_SHAPES = 256

Slot = Literal["user", "session", "cutoff"]


class StatusRow(NamedTuple):
    pk: int
    session_id: str
    access_level: int
    state: str
    last_activity: datetime | None


# The columns of StatusRow, in order.
COLUMNS = ("pk", "session_id", "access_level", "state", "last_activity")


class Template(NamedTuple):
    sql: str
    params: tuple[Any, ...]
    slots: tuple[tuple[int, Slot], ...]
    # The backend's converters per column (SQLite returns datetimes as text), as the ORM
    # applies them: (column, converter functions, expression).
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]


class _Uncompilable(Exception):
    """The shape's parameters could not be located safely: use the general path."""


_templates: dict[Hashable, Template | None] = {}


@cache
def preparing_cursor_class() -> Any:
    """A psycopg 3 cursor class that prepares every statement it executes, or ``None`` (with
    psycopg2, which has no server-side binding). Imported on first use: the PostgreSQL backend
    cannot be imported where no driver is installed."""
    try:
        from django.db.backends.postgresql.base import ServerBindingCursor
    except (ImportError, ImproperlyConfigured):
        return None
    base: Any = ServerBindingCursor

    class PreparingCursor(base):  # type: ignore[misc]
        def execute(
            self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any
        ) -> Any:
            return super().execute(query, params, prepare=True, **kwargs)

    return PreparingCursor


def status_queryset(
    user: User, session_id: str, *, now: datetime | None = None
) -> QuerySet[Any, tuple[int, str, int, str, datetime | None]]:
    """The general path: the session (if it exists) with the user's access level and its state.

    No row means no such session. The access level is checked by the caller, as the
    permission class does, so that a session the user may not view answers like a missing one.
    """
    sessions: QuerySet[Any] = mirror_model("Session")._default_manager.filter(session_id=session_id)
    rows: QuerySet[Any, tuple[int, str, int, str, datetime | None]] = sessions.annotate(
        access_level=get_access_policy().access_level_expression(user),
        state=session_state_expression(now=now),
    ).values_list(*COLUMNS)
    return rows


def fetch_status(user: User, session_id: str) -> StatusRow | None:
    """One query: the row of :func:`status_queryset`, through the compiled SQL when possible."""
    alias = router.db_for_read(mirror_model("Session"))
    connection = connections[alias]
    now = timezone.now()
    template = _template_for(user, alias, connection)
    row: Any
    if template is None:
        row = next(iter(status_queryset(user, session_id, now=now).using(alias)), None)
    else:
        params = _bind(template, connection, user, session_id, now)
        with _cursor(connection) as cursor:
            cursor.execute(template.sql, params)
            row = cursor.fetchone()
        if row is not None and template.converters:
            row = list(row)
            for index, functions, expression in template.converters:
                for convert in functions:
                    row[index] = convert(row[index], expression, connection)
    return None if row is None else StatusRow(*row)


def _cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor for the compiled SQL: on PostgreSQL, a prepared statement when allowed.

    Planning the status query costs PostgreSQL several times what running it does. Prepared
    statements skip that, but Django turns them off by default (``prepare_threshold`` None,
    for connection poolers that cannot carry them), and its client-side binding cursors never
    prepare. So when the host allows them (``DATABASES[...]["OPTIONS"]["prepare_threshold"]``
    set), this one query runs through a server-side binding cursor that prepares it, once
    per connection; Django's other queries are unaffected.
    """
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        raw = connection.connection
        cursor_class = preparing_cursor_class()
        if getattr(raw, "prepare_threshold", None) is not None and cursor_class is not None:
            return connection._prepare_cursor(cursor_class(raw))  # type: ignore[attr-defined]
    return connection.cursor()


def clear_cache() -> None:
    """Forget every compiled shape (they are rebuilt on demand)."""
    _templates.clear()


def _template_for(user: User, alias: str, connection: BaseDatabaseWrapper) -> Template | None:
    policy = get_access_policy()
    user_key = policy.compiled_query_key(user)
    if user_key is None:
        return None
    window = conf.liveness_window
    key = (
        alias,
        connection.vendor,
        conf.KERNEL_STATUS_ACCESS_POLICY,
        type(policy),
        window is None,
        user_key,
    )
    try:
        return _templates[key]
    except KeyError:
        pass
    try:
        template: Template | None = _compile(user, alias, connection, window)
    except _Uncompilable:
        template = None
    if len(_templates) >= MAX_SHAPES:
        _templates.clear()
    _templates[key] = template
    return template


def _compile(
    user: User, alias: str, connection: BaseDatabaseWrapper, window: timedelta | None
) -> Template:
    """Compile the shape with two sets of stand-in values, and find the parameters that differ.

    A parameter that differs between the two compilations belongs to an input; which one is
    told by its value. A third compilation, with other values, must then equal the template
    with those values bound, or the shape is refused.
    """
    samples = [_sample(user, n) for n in range(3)]
    compiled = [_compile_with(sample, alias, connection)[:2] for sample in samples]
    (sql, params), (other_sql, other_params) = compiled[0], compiled[1]
    converters = _compile_with(samples[0], alias, connection)[2]
    if sql != other_sql or len(params) != len(other_params):
        raise _Uncompilable
    inputs = _prepared_inputs(samples[0], connection, window)
    slots: list[tuple[int, Slot]] = []
    for index, (value, other) in enumerate(zip(params, other_params, strict=True)):
        if value == other:
            continue
        names = [name for name, prepared in inputs.items() if prepared == value]
        if len(names) != 1:
            raise _Uncompilable
        slots.append((index, names[0]))
    template = Template(sql, tuple(params), tuple(slots), converters)
    check_user, check_session, check_now = samples[2]
    if compiled[2] != (sql, _bind(template, connection, check_user, check_session, check_now)):
        raise _Uncompilable
    return template


def _compile_with(
    sample: tuple[User, str, datetime], alias: str, connection: BaseDatabaseWrapper
) -> tuple[str, list[Any], tuple[tuple[int, tuple[Any, ...], Any], ...]]:
    user, session_id, now = sample
    query = status_queryset(user, session_id, now=now).using(alias).query
    compiler = query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    if compiler.col_count != len(COLUMNS):
        raise _Uncompilable
    columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
    converters = tuple(
        (index, tuple(functions), expression)
        for index, (functions, expression) in compiler.get_converters(columns).items()
    )
    return sql, list(params), converters


def _sample(user: User, n: int) -> tuple[User, str, datetime]:
    """Stand-in inputs, distinct for each ``n``: the user with another primary key, etc."""
    stand_in = copy.copy(user)
    pk = user.pk
    if isinstance(pk, int) and not isinstance(pk, bool):
        stand_in.pk = pk + 7919 * (n + 1)
    elif isinstance(pk, uuid.UUID):
        stand_in.pk = uuid.uuid4()
    elif isinstance(pk, str):
        stand_in.pk = f"{pk}\x1f{n}"
    elif pk is not None:
        raise _Uncompilable
    moment = datetime(2000 + n, 1 + n, 1 + n, 1, 2, 3, 456789 + n, tzinfo=UTC)
    return stand_in, f"\x1fkernel-status-sample-{n}", moment


def _prepared_inputs(
    sample: tuple[User, str, datetime],
    connection: BaseDatabaseWrapper,
    window: timedelta | None,
) -> dict[Slot, Any]:
    user, session_id, now = sample
    inputs: dict[Slot, Any] = {"session": session_id}
    if user.pk is not None:
        inputs["user"] = user.pk
    if window is not None:
        inputs["cutoff"] = connection.ops.adapt_datetimefield_value(now - window)
    return inputs


def _bind(
    template: Template,
    connection: BaseDatabaseWrapper,
    user: User,
    session_id: str,
    now: datetime,
) -> list[Any]:
    params = list(template.params)
    window = conf.liveness_window
    for index, slot in template.slots:
        if slot == "user":
            params[index] = user.pk
        elif slot == "session":
            params[index] = session_id
        else:
            assert window is not None  # a cutoff slot exists only in shapes with a window
            params[index] = connection.ops.adapt_datetimefield_value(now - window)
    return params
