"""Where a hub hears of writes made by other processes: PostgreSQL ``LISTEN``, or the
change counter.

On PostgreSQL, one ``LISTEN kernel_status`` connection per hub (per server process, whatever
the number of waiters), opened with psycopg 3's async driver on
``KERNEL_STATUS_LISTEN_DATABASE`` (by default the mirror's own database settings). It needs a
session-level connection: not through a pooler in transaction mode (see the check
``kernel_status.W003``). Each notification is dispatched to the hub as it arrives.

Elsewhere (SQLite, MariaDB), and on PostgreSQL while the listening connection is down, the
hub polls the change counter every ``KERNEL_STATUS_WATCH_POLL_INTERVAL`` seconds (one range
read of the change log's primary key) and dispatches the rows it had not seen.

After every (re)connection every subscription re-reads once, so that a change made while
nobody listened is not missed. Reconnection backs off from 0.5 s to 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from typing import Any, Protocol

from django.conf import settings

from kernel_status.conf import conf
from kernel_status.live import reads
from kernel_status.mirror.changes import CHANNEL, decode


class Hub(Protocol):
    """What the listener needs of :class:`kernel_status.live.hub.Hub`."""

    loop: asyncio.AbstractEventLoop

    def dispatch(self, change_id: int | None, session_pks: Collection[int] | None) -> None: ...

    def wake_all(self, change_id: int | None = None) -> None: ...


logger = logging.getLogger("kernel_status.live")

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
# Connection settings of DATABASES entries that are not libpq parameters.
NOT_LIBPQ = {"pool", "isolation_level", "server_side_binding", "prepare_threshold", "assume_role"}


def listen_conninfo() -> str:
    """The libpq connection string of the LISTEN connection."""
    from psycopg.conninfo import make_conninfo

    target = conf.KERNEL_STATUS_LISTEN_DATABASE
    if isinstance(target, str) and ("=" in target or "://" in target):
        return make_conninfo(target, application_name="kernel_status listener")
    from django.db import connections

    entry = connections[target or reads.alias()].settings_dict
    options = {
        key: value
        for key, value in (entry.get("OPTIONS") or {}).items()
        if key not in NOT_LIBPQ and isinstance(value, str | int)
    }
    params = {
        "dbname": entry.get("NAME") or "postgres",
        "user": entry.get("USER") or None,
        "password": entry.get("PASSWORD") or None,
        "host": entry.get("HOST") or None,
        "port": entry.get("PORT") or None,
        "application_name": "kernel_status listener",
        **options,
    }
    given: dict[str, Any] = {key: value for key, value in params.items() if value is not None}
    return make_conninfo("", **given)


class Listener:
    """The hub's one source of other processes' writes."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.task: asyncio.Task[None] | None = None
        self.listening = False  # a LISTEN connection is up
        self.connects = 0  # (re)connections so far, for tests and logs
        self.polls = 0
        # The poller's place in the change log: the newest id it has seen, the summary
        # (reads.poll_summary) that the next poll compares with, and the ids it has seen
        # near the top (a late commit is one that is not among them).
        self.position = 0
        self.summary: tuple[int, int] | None = None
        self.known: set[int] = set()

    def start(self) -> None:
        self.task = self.hub.loop.create_task(self._run(), name="kernel_status listener")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF
        while True:
            try:
                if await reads.read(reads.vendor) == "postgresql":
                    await self._listen()
                else:
                    await self._poll_forever()
                backoff = FIRST_BACKOFF
            except asyncio.CancelledError:
                raise
            except Exception as error:
                lost = self.listening
                if lost or backoff == FIRST_BACKOFF:
                    logger.warning("kernel_status listener lost (%s); retrying", error)
                self.listening = False
                if lost:
                    self.summary = None  # what it polled before LISTEN is stale: rebase
                # While the listener is down, the change counter stands in for it.
                with contextlib.suppress(Exception):
                    if self.summary is None:
                        await self._rebase()
                    await self._poll_for(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _rebase(self) -> None:
        """Read the change counter afresh, then make every subscription re-read once: what
        committed before this read, they see; what commits after it, the next poll sees."""
        position, rows = await reads.read(reads.poll_start)
        self._seen(rows, position)
        self.hub.wake_all()

    async def _listen(self) -> None:
        import psycopg

        connection = await psycopg.AsyncConnection.connect(listen_conninfo(), autocommit=True)
        try:
            await connection.execute(f"LISTEN {CHANNEL}")
            self.listening = True
            self.connects += 1
            logger.info("kernel_status listener connected (LISTEN %s)", CHANNEL)
            # A change that committed while nobody listened: every waiter re-reads once.
            self.hub.wake_all()
            async for notify in connection.notifies():
                self.hub.dispatch(*decode(notify.payload))
        finally:
            # `listening` stays set: the caller tells a lost connection from a failed attempt.
            with contextlib.suppress(Exception):
                await connection.close()

    async def _poll_forever(self) -> None:
        self.connects += 1
        if self.summary is None:  # after a failed poll, go on from the kept summary
            await self._rebase()
        while True:
            await self._poll_for(conf.KERNEL_STATUS_WATCH_POLL_INTERVAL)

    async def _poll_for(self, seconds: float) -> None:
        """Poll the change counter for ``seconds`` (at least once), dispatching what moved.

        The summary to compare with is the one the last dispatch left (or the rebase's),
        never one read afresh: a commit between two polls would be in a fresh one, and lost.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            interval = max(0.01, conf.KERNEL_STATUS_WATCH_POLL_INTERVAL)
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())) or interval)
            seen = await reads.read(reads.poll_summary, self.position)
            self.polls += 1
            if seen != self.summary:
                rows = await reads.read(reads.poll_rows, self.position)
                for change_id, session_pk in rows:
                    if change_id not in self.known:
                        pks = None if session_pk is None else [session_pk]
                        self.hub.dispatch(change_id, pks)
                self._seen(rows, self.position)
            if loop.time() >= deadline:
                return

    def _seen(self, rows: list[tuple[int, int | None]], position: int) -> None:
        # From the rows just read, not from the poll before them: a commit between the two
        # reads is in the rows, so it must be in the summary too.
        self.summary = reads.summarize(rows, position)
        self.position = self.summary[0]
        self.known = {change_id for change_id, _ in rows}


def listener_database_problem() -> str | None:
    """Why the LISTEN connection's setting cannot work, or None (for the system check)."""
    target = conf.KERNEL_STATUS_LISTEN_DATABASE
    if target is None:
        return None
    if not isinstance(target, str) or not target:
        return f"must be a DATABASES alias or a PostgreSQL connection string, not {target!r}"
    if "=" in target or "://" in target:
        try:
            from psycopg.conninfo import conninfo_to_dict

            conninfo_to_dict(target)
        except Exception as error:
            return f"is not a PostgreSQL connection string psycopg can read: {error}"
        return None
    entry: Any = settings.DATABASES.get(target)
    if entry is None:
        return f"names {target!r}, which is not an alias of DATABASES"
    if "postgresql" not in str(entry.get("ENGINE", "")):
        return f"names {target!r}, which is not a PostgreSQL database"
    return None
