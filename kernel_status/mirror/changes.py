"""Telling watchers that a write changed sessions: inside the writer's transaction.

Every write that can change an answer (a batch of events, a reset, a close, a deletion, a
registration, a grant or an owner changed) calls :func:`note_changed` inside its transaction.
That writes one row of the change log (:class:`~kernel_status.models.Change`) per session and,
on PostgreSQL, issues ``NOTIFY kernel_status, '<payload>'``. Both are part of the
transaction: a batch that rolls back leaves no row and sends no notification, and PostgreSQL
delivers the notification only once the transaction commits. In this process, the
:data:`sessions_changed` signal is sent on commit (``transaction.on_commit``), never for a
rolled-back write; :mod:`kernel_status.live` fans it out to the waiters.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import partial

from django.db import connections, transaction
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


def note_changed(session_pks: Collection[int] | None, *, using: str, access: bool = False) -> int:
    """Record that these sessions (``None``: an unknown, large set) may answer differently;
    ``access``: who may see them changed (a grant, the owner, a deletion).

    Call it inside the write's transaction (one is opened if there is none). Returns the
    newest change id written.
    """
    pks = None if session_pks is None or len(session_pks) > MAX_LISTED else frozenset(session_pks)
    now = timezone.now()
    with transaction.atomic(using=using, savepoint=False):
        rows = [Change(session_pk=pk, at=now, access=access) for pk in sorted(pks or ())]
        if not rows:
            rows = [Change(session_pk=None, at=now, access=access)]
        for row in rows:
            row.save(using=using, force_insert=True)
        change_id = int(rows[-1].pk)
        connection = connections[using]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, encode(change_id, pks)])
        if change_id % PRUNE_EVERY == 0:
            keep = max(conf.KERNEL_STATUS_CHANGE_LOG_SIZE, PRUNE_EVERY)
            Change.objects.using(using).filter(pk__lte=change_id - keep).delete()
        transaction.on_commit(partial(_committed, change_id, pks), using=using)
    return change_id


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
