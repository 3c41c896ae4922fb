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
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.db.models import Model, QuerySet, Subquery
from django.utils import timezone

from kernel_status.conf import conf
from kernel_status.queries import mirror_model
from kernel_status.queries.access import TokenUser, get_access_policy
from kernel_status.queries.prepared import statement_cursor
from kernel_status.queries.state import session_state_expression

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler

    User = AbstractBaseUser | AnonymousUser

# Shapes are few (aliases x policies x window on/off x user kinds); a policy that returns keys
# per user would grow the cache without bound, so it is cleared past this size.
MAX_SHAPES = 256

Slot = Literal["user", "session", "cutoff", "key"]


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


class TokenTemplate(NamedTuple):
    """The token shape: its SQL, and where the token's, the user's and the session's columns
    are in a row."""

    template: Template
    token_columns: tuple[int, ...]
    token_attnames: tuple[str, ...]
    user_columns: tuple[int, ...]
    user_attnames: tuple[str, ...]
    status_columns: tuple[int, ...]  # the session's pk, access level, state, last activity


class TokenStatus(NamedTuple):
    """The answer of :func:`fetch_token_status`: the token with its user loaded (``token.user``),
    and the session's row for that user (``None``: no such session)."""

    token: Model
    status: StatusRow | None


_templates: dict[Hashable, Template | None] = {}
_token_templates: dict[Hashable, TokenTemplate | None] = {}

# The token shape's annotations, in the order of StatusRow's pk, access_level, state and
# last_activity (its session_id is the one asked for: the lookup is exact on every database).
_TOKEN_STATUS_ANNOTATIONS = (
    "kernel_status_session_pk",
    "kernel_status_access_level",
    "kernel_status_state",
    "kernel_status_last_activity",
)


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
        with statement_cursor(connection) as cursor:
            cursor.execute(template.sql, params)
            row = cursor.fetchone()
        if row is not None and template.converters:
            row = list(row)
            for index, functions, expression in template.converters:
                for convert in functions:
                    row[index] = convert(row[index], expression, connection)
    return None if row is None else StatusRow(*row)


def token_status_queryset(
    token_model: type[Model], key: str, session_id: str, *, now: datetime | None = None
) -> QuerySet[Any] | None:
    """The token path's one statement: the token ``key`` with its user (``select_related``),
    and, for that user, the session's pk, access level, state and last activity (``NULL``
    without such a session), as scalar subqueries keyed on the session's unique id.

    The access level is the policy's :meth:`~kernel_status.access.AccessPolicy.
    token_access_level_expression` over the joined user row; ``None`` when the policy does
    not provide one.
    """
    user_model: Any = token_model._meta.get_field("user").related_model
    level = get_access_policy().token_access_level_expression(TokenUser(user_model))
    if level is None:
        return None
    sessions: QuerySet[Any] = mirror_model("Session")._default_manager.filter(session_id=session_id)
    session_pk, access_level, state, last_activity = _TOKEN_STATUS_ANNOTATIONS

    def scalar(**annotation: Any) -> Subquery:
        ((name, expression),) = annotation.items()
        column = (
            sessions.values(name)
            if expression is None
            else (sessions.annotate(**{f"{name}_value": expression}).values(f"{name}_value"))
        )
        return Subquery(column.order_by())

    rows: QuerySet[Any] = (
        token_model._default_manager.filter(key=key)
        .select_related("user")
        .annotate(
            **{
                session_pk: scalar(pk=None),
                access_level: scalar(level=level),
                state: scalar(state=session_state_expression(now=now)),
                last_activity: scalar(last_activity=None),
            }
        )
    )
    return rows


def fetch_token_status(token_model: type[Model], key: str, session_id: str) -> TokenStatus | None:
    """One statement: the token ``key`` (``None`` if there is none) with its user, and the
    session's :class:`StatusRow` for that user, through SQL compiled once per shape.

    Nothing is cached but SQL text: a token deleted or a user deactivated is seen by the very
    next call. The caller decides what an inactive user means (DRF refuses them).
    """
    alias = router.db_for_read(mirror_model("Session"))
    connection = connections[alias]
    now = timezone.now()
    shape = _token_template_for(token_model, alias, connection)
    if shape is None:
        return _token_status_with_orm(token_model, key, session_id, now, alias)
    template = shape.template
    params = _bind_inputs(template, _token_inputs(key, session_id, now, connection))
    with statement_cursor(connection) as cursor:
        cursor.execute(template.sql, params)
        raw = cursor.fetchone()
    if raw is None:
        return None
    row = list(raw)
    for index, functions, expression in template.converters:
        for convert in functions:
            row[index] = convert(row[index], expression, connection)
    user_model: Any = token_model._meta.get_field("user").related_model
    user = user_model.from_db(alias, shape.user_attnames, [row[i] for i in shape.user_columns])
    token = token_model.from_db(alias, shape.token_attnames, [row[i] for i in shape.token_columns])
    token.user = user  # type: ignore[attr-defined]
    pk, access_level, state, last_activity = (row[i] for i in shape.status_columns)
    if pk is None:
        return TokenStatus(token, None)
    return TokenStatus(token, StatusRow(pk, session_id, access_level, state, last_activity))


def _token_status_with_orm(
    token_model: type[Model], key: str, session_id: str, now: datetime, alias: str
) -> TokenStatus | None:
    """The same statement built with the ORM (a shape that could not be compiled safely)."""
    rows = token_status_queryset(token_model, key, session_id, now=now)
    if rows is None:
        raise ImproperlyConfigured("The access policy has no token_access_level_expression().")
    token = rows.using(alias).first()
    if token is None:
        return None
    pk, access_level, state, last_activity = (
        getattr(token, name) for name in _TOKEN_STATUS_ANNOTATIONS
    )
    if pk is None:
        return TokenStatus(token, None)
    return TokenStatus(token, StatusRow(pk, session_id, access_level, state, last_activity))


def token_path_available(token_model: type[Model]) -> bool:
    """Whether :func:`fetch_token_status` can answer for this token model (the policy
    provides a token expression); cheap after the first call."""
    alias = router.db_for_read(mirror_model("Session"))
    key = _token_shape_key(token_model, alias, connections[alias])
    if key in _token_templates:
        return True  # compiled, or refused for the ORM fallback: either way the path works
    user_model: Any = token_model._meta.get_field("user").related_model
    return get_access_policy().token_access_level_expression(TokenUser(user_model)) is not None


def _token_shape_key(
    token_model: type[Model], alias: str, connection: BaseDatabaseWrapper
) -> Hashable:
    policy = get_access_policy()
    return (
        "token",
        alias,
        connection.vendor,
        conf.KERNEL_STATUS_ACCESS_POLICY,
        type(policy),
        conf.liveness_window is None,
        token_model._meta.label,
    )


def _token_template_for(
    token_model: type[Model], alias: str, connection: BaseDatabaseWrapper
) -> TokenTemplate | None:
    key = _token_shape_key(token_model, alias, connection)
    try:
        return _token_templates[key]
    except KeyError:
        pass
    try:
        shape: TokenTemplate | None = _compile_token(token_model, alias, connection)
    except _Uncompilable:
        shape = None
    if len(_token_templates) >= MAX_SHAPES:
        _token_templates.clear()
    _token_templates[key] = shape
    return shape


def _token_inputs(
    key: str, session_id: str, now: datetime, connection: BaseDatabaseWrapper
) -> dict[Slot, Any]:
    inputs: dict[Slot, Any] = {"key": key, "session": session_id}
    window = conf.liveness_window
    if window is not None:
        inputs["cutoff"] = connection.ops.adapt_datetimefield_value(now - window)
    return inputs


def _compile_token(
    token_model: type[Model], alias: str, connection: BaseDatabaseWrapper
) -> TokenTemplate:
    def build(n: int) -> QuerySet[Any]:
        rows = token_status_queryset(
            token_model,
            f"\x1fkernel-status-key-{n}",
            _sample_session_id(n),
            now=_sample_moment(n),
        )
        if rows is None:
            raise _Uncompilable
        return rows

    def inputs(n: int) -> dict[Slot, Any]:
        return _token_inputs(
            f"\x1fkernel-status-key-{n}", _sample_session_id(n), _sample_moment(n), connection
        )

    template, compiler = _locate_slots(build, inputs, alias, connection)
    # Where each model's columns are, as select_related() lays them out for the ORM.
    klass_info = compiler.klass_info
    if klass_info is None or len(klass_info["related_klass_infos"]) != 1:
        raise _Uncompilable
    related = klass_info["related_klass_infos"][0]

    def attnames(indexes: list[int]) -> tuple[str, ...]:
        return tuple(compiler.select[i][0].target.attname for i in indexes)

    annotations = compiler.annotation_col_map
    if annotations is None or set(_TOKEN_STATUS_ANNOTATIONS) - set(annotations):
        raise _Uncompilable
    return TokenTemplate(
        template,
        tuple(klass_info["select_fields"]),
        attnames(klass_info["select_fields"]),
        tuple(related["select_fields"]),
        attnames(related["select_fields"]),
        tuple(annotations[name] for name in _TOKEN_STATUS_ANNOTATIONS),
    )


def clear_cache() -> None:
    """Forget every compiled shape (they are rebuilt on demand)."""
    _templates.clear()
    _token_templates.clear()


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
    """Compile the user's shape (see :func:`_locate_slots`)."""
    samples = [_sample(user, n) for n in range(3)]

    def build(n: int) -> QuerySet[Any]:
        stand_in, session_id, now = samples[n]
        return status_queryset(stand_in, session_id, now=now)

    def inputs(n: int) -> dict[Slot, Any]:
        return _prepared_inputs(samples[n], connection, window)

    template, compiler = _locate_slots(build, inputs, alias, connection)
    if compiler.col_count != len(COLUMNS):
        raise _Uncompilable
    return template


def _locate_slots(
    build: Callable[[int], QuerySet[Any]],
    inputs: Callable[[int], dict[Slot, Any]],
    alias: str,
    connection: BaseDatabaseWrapper,
) -> tuple[Template, SQLCompiler]:
    """Compile a shape with two sets of stand-in values, and find the parameters that differ.

    A parameter that differs between the two compilations belongs to an input; which one is
    told by its value. A third compilation, with other values, must then equal the template
    with those values bound, or the shape is refused.
    """
    compilers = [build(n).using(alias).query.get_compiler(connection=connection) for n in range(3)]
    compiled = [compiler.as_sql() for compiler in compilers]
    (sql, params), (other_sql, other_params) = compiled[0], compiled[1]
    if sql != other_sql or len(params) != len(other_params):
        raise _Uncompilable
    prepared = inputs(0)
    slots: list[tuple[int, Slot]] = []
    for index, (value, other) in enumerate(zip(params, other_params, strict=True)):
        if value == other:
            continue
        names = [name for name, candidate in prepared.items() if candidate == value]
        if len(names) != 1:
            raise _Uncompilable
        slots.append((index, names[0]))
    compiler = compilers[0]
    columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
    converters = tuple(
        (index, tuple(functions), expression)
        for index, (functions, expression) in compiler.get_converters(columns).items()
    )
    template = Template(sql, tuple(params), tuple(slots), converters)
    check_sql, check_params = compiled[2]
    if (check_sql, list(check_params)) != (sql, _bind_inputs(template, inputs(2))):
        raise _Uncompilable
    return template, compiler


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
    return stand_in, _sample_session_id(n), _sample_moment(n)


def _sample_session_id(n: int) -> str:
    return f"\x1fkernel-status-sample-{n}"


def _sample_moment(n: int) -> datetime:
    return datetime(2000 + n, 1 + n, 1 + n, 1, 2, 3, 456789 + n, tzinfo=UTC)


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
    return _bind_inputs(
        template, _prepared_inputs((user, session_id, now), connection, conf.liveness_window)
    )


def _bind_inputs(template: Template, inputs: dict[Slot, Any]) -> list[Any]:
    params = list(template.params)
    for index, slot in template.slots:
        params[index] = inputs[slot]
    return params
