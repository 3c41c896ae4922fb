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
from django.db import DatabaseError

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

    def start(self) -> None:
        self.task = self.hub.loop.create_task(self._run(), name="kernel_status listener")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF
        position = await self._position()
        while True:
            try:
                if await reads.read(reads.vendor) == "postgresql":
                    await self._listen()
                else:
                    position = await self._poll_forever(position)
                backoff = FIRST_BACKOFF
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.listening or backoff == FIRST_BACKOFF:
                    logger.warning("kernel_status listener lost (%s); retrying", error)
                self.listening = False
                # While the listener is down, the change counter stands in for it.
                with contextlib.suppress(Exception):
                    position = await self._poll_for(backoff, position)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _position(self) -> int:
        try:
            return await reads.read(reads.change_position)
        except DatabaseError:
            return 0

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
            self.listening = False
            with contextlib.suppress(Exception):
                await connection.close()

    async def _poll_forever(self, position: int) -> int:
        self.connects += 1
        self.hub.wake_all()
        while True:
            position = await self._poll_for(conf.KERNEL_STATUS_WATCH_POLL_INTERVAL, position)

    async def _poll_for(self, seconds: float, position: int) -> int:
        """Poll the change counter for ``seconds`` (at least once); returns the position."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        summary = await reads.read(reads.poll_summary, position)
        while True:
            interval = max(0.01, conf.KERNEL_STATUS_WATCH_POLL_INTERVAL)
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())) or interval)
            seen = await reads.read(reads.poll_summary, position)
            self.polls += 1
            if seen != summary:
                for change_id, session_pk in await reads.read(reads.poll_rows, position):
                    self.hub.dispatch(change_id, None if session_pk is None else [session_pk])
                summary = seen
                position = seen[0]
            if loop.time() >= deadline:
                return position


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
