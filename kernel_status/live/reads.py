"""The database reads of waits and streams, run on a small shared pool of threads.

A waiter holds no thread and no connection while it waits: it only borrows one of these
threads for each read (``KERNEL_STATUS_WATCH_READERS``, 4 by default), so the connections
that waits and streams use are bounded by the pool, however many clients wait. After each
read the thread's connection is closed unless the project keeps connections
(``CONN_MAX_AGE``, or a pool), as Django does at the end of a request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections, router
from django.db.models import Count, Max, Min
from django.db.models.functions import Coalesce
from django.utils import timezone

from kernel_status.choices import ProcessState
from kernel_status.conf import conf
from kernel_status.deadline import bounded
from kernel_status.mirror.changes import latest_change_id
from kernel_status.models import Change, KernelProcess, Session

_T = TypeVar("_T")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, conf.KERNEL_STATUS_WATCH_READERS),
                thread_name_prefix="kernel-status-reader",
            )
        return _pool


def _in_thread(function: Callable[..., _T], *args: Any) -> _T:
    close_old_connections()  # drop a connection that broke or outlived CONN_MAX_AGE
    try:
        # A frozen database holds a reader for KERNEL_STATUS_QUERY_DEADLINE at most.
        with bounded(tuple(dict.fromkeys([alias(), router.db_for_write(Session)]))):
            return function(*args)
    finally:
        close_old_connections()


async def read(function: Callable[..., _T], *args: Any) -> _T:
    """Run ``function(*args)`` on a reader thread."""
    runner = sync_to_async(_in_thread, thread_sensitive=False, executor=pool())
    return await runner(function, *args)


def alias() -> str:
    return router.db_for_read(Session)


def vendor() -> str:
    return connections[alias()].vendor


# Past a liveness expiry, read again this much later, so that the database sees it expired.
EXPIRY_MARGIN = 0.05


def until_expiry(expiry: datetime) -> float:
    """Seconds to wait before reading a liveness expiry again (negative: it passed)."""
    return (expiry - timezone.now()).total_seconds() + EXPIRY_MARGIN


def next_expiry(session_pks: Collection[int]) -> datetime | None:
    """When the first of these sessions' running kernels falls out of the liveness window
    (its last heartbeat, or its start, plus the window), if that is still ahead; else None."""
    window = conf.liveness_window
    if window is None or not session_pks:
        return None
    heard = Coalesce("last_heartbeat_at", "started_at")
    kernels = KernelProcess.objects.using(alias()).filter(
        session_id__in=list(session_pks), state=ProcessState.RUNNING
    )
    cutoff = timezone.now() - window
    earliest = (
        kernels.annotate(heard=heard).filter(heard__gte=cutoff).aggregate(first=Min("heard"))
    )["first"]
    return None if earliest is None else earliest + window


def change_position() -> int:
    """The newest change id (the stream's position before a snapshot)."""
    return latest_change_id(using=alias())


# How far below the newest id the poller looks for late commits (an id taken by a transaction
# that commits after a later one).
LATE_COMMITS = 1000


def poll_summary(newest: int) -> tuple[int, int]:
    """The poller's read, one range of the primary key index: the newest id and the number
    of rows from ``LATE_COMMITS`` below ``newest``. Either moves when a write commits."""
    recent = Change.objects.using(alias()).filter(pk__gt=max(0, newest - LATE_COMMITS))
    summary = recent.aggregate(newest=Max("pk"), rows=Count("pk"))
    return max(newest, int(summary["newest"] or 0)), int(summary["rows"])


def poll_rows(newest: int) -> list[tuple[int, int | None]]:
    """The rows behind a moved summary: ``(change id, session pk)``."""
    recent = Change.objects.using(alias()).filter(pk__gt=max(0, newest - LATE_COMMITS))
    return list(recent.order_by("pk").values_list("pk", "session_pk"))


def summarize(rows: list[tuple[int, int | None]], newest: int) -> tuple[int, int]:
    """What :func:`poll_summary` reads at the newest of ``rows`` (those of
    ``poll_rows(newest)``), had nothing committed since they were read."""
    position = max([newest, *(change_id for change_id, _ in rows)])
    floor = max(0, position - LATE_COMMITS)
    return position, sum(1 for change_id, _ in rows if change_id > floor)


def poll_start() -> tuple[int, list[tuple[int, int | None]]]:
    """The poller's baseline: the newest change id, and the rows it would look at there."""
    newest = change_position()
    return newest, poll_rows(newest)


class Since(NamedTuple):
    covered: bool  # the log still holds every change after the id
    sessions: set[int] | None  # changed after it; None: too many, or "many changed"
    access: set[int]  # of those, the ones whose access changed
    newest: int


def changes_since(change_id: int, limit: int) -> Since:
    """For a ``Last-Event-ID`` resume: what changed after ``change_id``."""
    using = alias()
    log = Change.objects.using(using)
    bounds = log.aggregate(oldest=Min("pk"), newest=Max("pk"))
    oldest, newest = bounds["oldest"], int(bounds["newest"] or 0)
    if change_id > newest or (oldest is not None and change_id < oldest - 1):
        return Since(False, None, set(), newest)  # another database, or pruned past it
    # Late commits: a transaction that took an id below change_id but committed after it.
    late_from = change_id
    moment = log.filter(pk__lte=change_id).order_by("-pk").values_list("at", flat=True).first()
    if moment is not None:
        earlier = moment - REPLAY_SLACK
        late = log.filter(pk__lte=change_id, at__gte=earlier).aggregate(first=Min("pk"))
        late_from = min(change_id, int(late["first"] or change_id) - 1)
    rows = list(log.filter(pk__gt=late_from).values_list("session_pk", "access")[: limit + 1])
    if len(rows) > limit or any(pk is None for pk, _ in rows):
        return Since(True, None, set(), newest)
    access = {int(pk) for pk, changed in rows if changed and pk is not None}
    return Since(True, {int(pk) for pk, _ in rows if pk is not None}, access, newest)


# How long before the resumed id a write may have taken a lower id and committed after it.
REPLAY_SLACK = timedelta(seconds=2)
