"""Telling watchers that a write changed sessions: inside the writer's transaction.

Every write that can change an answer (a batch of events, a reset, a close, a deletion, a
registration, a grant or an owner changed) calls :func:`note_changed` inside its transaction.
That writes one row of the change log (:class:`~kernel_status.models.Change`) per session and,
on PostgreSQL, issues ``NOTIFY kernel_status, '<payload>'``: both in one statement (a
data-modifying CTE; a batch of events folds it into its upsert, :func:`pg_note_sql`). Both
are part of the transaction: a batch that rolls back leaves no row and sends no
notification, and PostgreSQL delivers the notification only once the transaction commits.
In this process, the :data:`sessions_changed` signal is sent on commit
(``transaction.on_commit``), never for a rolled-back write; :mod:`kernel_status.live` fans
it out to the waiters.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.dispatch import Signal
from django.utils import timezone

from kernel_status.conf import conf
from kernel_status.models import Change, Session, SessionAccess

# The PostgreSQL channel every server process listens on.
CHANNEL = "kernel_status"
# More sessions than this in one write are sent as "many changed" (one row, payload "<id>:*"):
# 100 primary keys of up to 19 digits stay far below PostgreSQL's 8,000-byte payload limit.
MAX_LISTED = 100
# Prune the log when an id is a multiple of this; pruning is one indexed range delete.
PRUNE_EVERY = 500

# Sent on commit, in the writer's thread: change_id (the newest log id of the write),
# session_pks (a frozenset, or None for "many changed").
sessions_changed = Signal()


def encode(change_id: int, session_pks: Collection[int] | None) -> str:
    """The notification payload: ``"<change id>:<pk>,<pk>"`` or ``"<change id>:*"``."""
    listed = "*" if session_pks is None else ",".join(map(str, sorted(session_pks)))
    return f"{change_id}:{listed}"


def decode(payload: str) -> tuple[int | None, frozenset[int] | None]:
    """The inverse of :func:`encode`; anything unreadable counts as "many changed"."""
    head, _, listed = payload.partition(":")
    try:
        change_id: int | None = int(head)
    except ValueError:
        change_id = None
    if listed == "*" or not listed:
        return change_id, None
    try:
        return change_id, frozenset(int(pk) for pk in listed.split(","))
    except ValueError:
        return change_id, None


@dataclass(frozen=True)
class Note:
    """A change about to be logged: its sessions (``None``: many), when, and whether access
    changed."""

    pks: frozenset[int] | None
    at: datetime
    access: bool = False


def note_of(session_pks: Collection[int] | None, *, access: bool = False) -> Note:
    """The note of a write to these sessions (``None``: an unknown, large set)."""
    pks = None if session_pks is None or len(session_pks) > MAX_LISTED else frozenset(session_pks)
    return Note(pks, timezone.now(), access)


def pg_note_sql(note: Note, connection: BaseDatabaseWrapper) -> tuple[str, str, list[Any]]:
    """PostgreSQL: the change log's rows and their NOTIFY as ``(cte, select, params)``.

    ``cte`` is one ``WITH`` item (named ``change``) and ``select`` the statement's final
    ``SELECT``, which returns the newest change id; ``params`` are both's, in order. The
    notification is queued by the statement and delivered on commit only.
    """
    quote = connection.ops.quote_name
    meta = Change._meta
    table = quote(meta.db_table)
    pk, session_pk, at, access = (
        quote(str(meta.get_field(name).column))  # type: ignore[union-attr]
        for name in ("id", "session_pk", "at", "access")
    )
    # Sorted, so the ids follow the sessions' order; NULL alone for "many changed".
    pks: list[int | None] = [*sorted(note.pks)] if note.pks else [None]
    listed = "*" if note.pks is None else ",".join(map(str, sorted(note.pks)))
    cte = (
        f"change AS (INSERT INTO {table} ({session_pk}, {at}, {access}) "
        f"SELECT unnest(%s::bigint[]), %s, %s RETURNING {pk} AS id)"
    )
    select = "SELECT max(id), pg_notify(%s, max(id)::text || ':' || %s) FROM change"
    return cte, select, [pks, note.at, note.access, CHANNEL, listed]


def noted(note: Note, change_id: int, *, using: str) -> int:
    """After the note's rows are written (``change_id``: the newest): prune the log now and
    then, and send :data:`sessions_changed` on commit. Returns ``change_id``."""
    if change_id % PRUNE_EVERY == 0:
        keep = max(conf.KERNEL_STATUS_CHANGE_LOG_SIZE, PRUNE_EVERY)
        Change.objects.using(using).filter(pk__lte=change_id - keep).delete()
    transaction.on_commit(partial(_committed, change_id, note.pks), using=using)
    return change_id


def note_changed(session_pks: Collection[int] | None, *, using: str, access: bool = False) -> int:
    """Record that these sessions (``None``: an unknown, large set) may answer differently;
    ``access``: who may see them changed (a grant, the owner, a deletion).

    Call it inside the write's transaction (one is opened if there is none). Returns the
    newest change id written.
    """
    note = note_of(session_pks, access=access)
    connection = connections[using]
    with transaction.atomic(using=using, savepoint=False):
        if connection.vendor == "postgresql":
            cte, select, params = pg_note_sql(note, connection)
            with connection.cursor() as cursor:
                cursor.execute(f"WITH {cte} {select}", params)
                change_id = int(cursor.fetchone()[0])
        else:
            rows = [
                Change(session_pk=pk, at=note.at, access=note.access)
                for pk in sorted(note.pks or ())
            ]
            if not rows:
                rows = [Change(session_pk=None, at=note.at, access=note.access)]
            for row in rows:
                row.save(using=using, force_insert=True)
            change_id = int(rows[-1].pk)
        return noted(note, change_id, using=using)


def _committed(change_id: int, session_pks: frozenset[int] | None) -> None:
    sessions_changed.send(sender=Change, change_id=change_id, session_pks=session_pks)


def latest_change_id(*, using: str) -> int:
    """The newest id of the change log, 0 when empty: one read of the primary key index."""
    newest = Change.objects.using(using).order_by("-pk").values_list("pk", flat=True).first()
    return int(newest or 0)


def _grant_saved_or_deleted(
    sender: object, instance: SessionAccess, using: str, **_: object
) -> None:
    # A grant given, changed or revoked (the admin's inlines, a host's own code) changes who
    # may see the session: its waiters and streams re-check their permission.
    note_changed([instance.session_id], using=using, access=True)


def _session_saved_or_deleted(sender: object, instance: Session, using: str, **_: object) -> None:
    # The owner changed (the admin), or the session was deleted with the ORM (a user deleted
    # with their sessions); the write API's own statements note their changes themselves.
    note_changed([instance.pk], using=using, access=True)


def connect_model_signals() -> None:
    """Note the changes made through the ORM's model signals (called by the app's ready())."""
    from django.db.models.signals import post_delete, post_save

    for model, receiver in (
        (SessionAccess, _grant_saved_or_deleted),
        (Session, _session_saved_or_deleted),
    ):
        for signal in (post_save, post_delete):
            signal.connect(receiver, sender=model, dispatch_uid=f"kernel_status.{signal!r}.{model}")
