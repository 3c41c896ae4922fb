"""The write API: how a platform keeps the mirror true.

Every write to a session runs in one transaction that first locks the session's row, so
writers of the same session queue up instead of racing: no IntegrityError, no deadlock (one
lock, always taken first). The rules a batch follows, and the invariant they keep, are in
:mod:`kernel_status.mirror.batch`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import OperationalError, connections, router, transaction
from django.utils import timezone

from kernel_status.mirror.batch import BatchState, cell_ids_of, in_apply_order
from kernel_status.mirror.changes import note_changed
from kernel_status.mirror.events import (
    ApplyResult,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
    check_clock_skew,
)
from kernel_status.mirror.statements import fetch_kernel_and_cells, lock_session
from kernel_status.models import CellStatus, KernelProcess, Session
from kernel_status.validators import session_id_problem, validate_session_id

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

CLOSED_CAUSE = "session closed"


class UnknownSession(LookupError):
    """No session has this id."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"No session with id {session_id!r}.")
        self.session_id = session_id


class SessionOwnerMismatch(ValueError):
    """A session id is already registered to another owner."""


def _db() -> str:
    return router.db_for_write(Session)


def register_session(session_id: str, *, owner: AbstractBaseUser, notebook: str) -> Session:
    """Create the session, or update its notebook if it is already registered to ``owner``.

    Raises :class:`django.core.exceptions.ValidationError` for a bad id and
    :class:`SessionOwnerMismatch` when the id belongs to someone else.
    """
    validate_session_id(session_id)  # before any query: PostgreSQL refuses NUL bytes
    # AUTH_USER_MODEL may be any user model; the stubs only know the default one.
    new = Session(session_id=session_id, owner=owner, notebook=notebook)  # type: ignore[misc]
    new.full_clean(validate_unique=False)
    using = _db()
    with transaction.atomic(using=using):
        # Insert-or-nothing first, so two registrations of a new id cannot both insert; the
        # row then exists and the lock below orders them.
        if connections[using].vendor == "mysql":
            # InnoDB: INSERT IGNORE share-locks an existing row, and two registrations that
            # both hold it deadlock on the FOR UPDATE below. A no-op ON DUPLICATE KEY UPDATE
            # takes the exclusive lock at once (session_id is compared byte for byte, so it
            # writes back the same value).
            Session.objects.using(using).bulk_create(
                [new], update_conflicts=True, update_fields=["session_id"]
            )
        else:
            Session.objects.using(using).bulk_create([new], ignore_conflicts=True)
        session = Session.objects.using(using).select_for_update().get(session_id=session_id)
        if session.owner_id != owner.pk:
            raise SessionOwnerMismatch(f"Session {session_id!r} belongs to another owner.")
        if session.notebook != notebook:
            session.notebook = notebook
            session.full_clean()
            session.save(using=using, update_fields=["notebook", "updated_at"])
        # A new session appears in its owner's change streams.
        note_changed([session.pk], using=using)
        return session


def close_session(session_id: str, *, at: datetime | None = None) -> ApplyResult:
    """The browser tab is gone: record the kernel as stopped, keep the rows for inspection."""
    return apply_events(session_id, [KernelStopped(at or timezone.now(), cause=CLOSED_CAUSE)])


def delete_session(session_id: str) -> bool:
    """Remove the session and everything mirrored for it. ``False`` if it did not exist."""
    if session_id_problem(session_id) is not None:
        return False
    using = _db()
    with transaction.atomic(using=using):
        # Wait for writers of this session first: deleting under them would make their
        # new cell rows point at a deleted session.
        sessions = Session.objects.using(using).filter(session_id=session_id)
        pks = list(sessions.select_for_update().values_list("pk", flat=True))
        if not pks:
            return False
        sessions.delete()
        note_changed(pks, using=using, access=True)
    return True


def kernel_started(session_id: str, *, at: datetime | None = None) -> ApplyResult:
    return apply_events(session_id, [KernelStarted(at or timezone.now())])


def kernel_heartbeat(session_id: str, *, at: datetime | None = None) -> ApplyResult:
    return apply_events(session_id, [KernelHeartbeat(at or timezone.now())])


def kernel_stopped(
    session_id: str,
    *,
    at: datetime | None = None,
    exit_code: int | None = None,
    cause: str = "",
) -> ApplyResult:
    return apply_events(
        session_id, [KernelStopped(at or timezone.now(), exit_code=exit_code, cause=cause)]
    )


def reset_session(session_id: str) -> bool:
    """Forget what was mirrored for the session: its cells, its kernel process and its last
    activity.

    The session itself (owner, notebook, grants) stays; its state is ``stopped`` until the
    next ``kernel-started``. For a mirror stuck for a reason the write API cannot undo.
    ``False`` if no session has this id.
    """
    if session_id_problem(session_id) is not None:
        return False
    using = _db()
    with transaction.atomic(using=using):
        session = (
            Session.objects.using(using)
            .select_for_update()
            .filter(session_id=session_id)
            .values_list("pk", flat=True)
            .first()
        )
        if session is None:
            return False
        CellStatus.objects.using(using).filter(session_id=session).delete()
        KernelProcess.objects.using(using).filter(session_id=session).delete()
        # Activity only moves forward: left in place, a future one would pin the session.
        Session.objects.using(using).filter(pk=session).update(last_activity=None)
        note_changed([session], using=using)
    return True


def apply_events(session_id: str, events: Iterable[KernelEvent]) -> ApplyResult:
    """Apply a batch of events to one session in one transaction.

    Raises :class:`UnknownSession` when no session has this id, and
    :class:`~kernel_status.mirror.events.ClockSkewError` when an event is stamped too far
    ahead of the server clock; either way nothing is written.
    """
    if session_id_problem(session_id) is not None:
        raise UnknownSession(session_id)  # no session can have such an id
    events = list(events)
    check_clock_skew(events)
    batch = in_apply_order(events)
    using = _db()
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            return _apply_batch(session_id, batch, using)
        except OperationalError as error:
            if attempt == DEADLOCK_RETRIES or not _retryable_deadlock(error, using):
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


# InnoDB (MariaDB, MySQL) may pick a batch as a deadlock victim even though writers of one
# session queue on its row: the unique-index checks of concurrent upserts of other sessions'
# cells take gap locks. It rolls the whole transaction back, and applying a batch again is
# safe (the mirror's invariant), so the batch is retried, as InnoDB's manual advises.
DEADLOCK_RETRIES = 3
_MYSQL_DEADLOCK = 1213


def _retryable_deadlock(error: OperationalError, using: str) -> bool:
    connection = connections[using]
    # Inside a caller's transaction the rollback took the caller's work too: not ours to redo.
    return (
        connection.vendor == "mysql"
        and not connection.in_atomic_block
        and bool(error.args)
        and error.args[0] == _MYSQL_DEADLOCK
    )


def _apply_batch(session_id: str, batch: list[KernelEvent], using: str) -> ApplyResult:
    with transaction.atomic(using=using):
        session_pk = lock_session(session_id, using=using)
        if session_pk is None:
            raise UnknownSession(session_id)
        session = Session.from_db(using, [Session._meta.pk.attname], [session_pk])
        # Read after the lock is held: a join in the locking query would see the kernel row
        # as it was before a concurrent writer committed.
        kernel, cells = fetch_kernel_and_cells(session_pk, cell_ids_of(batch), using=using)
        batch_state = BatchState(session, kernel, using, cells)
        result = batch_state.apply(batch)
        # Every batch that wrote something, even a heartbeat, is noted: it moves the liveness
        # expiry that waiters keep. Waiters re-check and go on waiting when the answer is the
        # same.
        batch_state.save(note=bool(result.applied))
    return result
