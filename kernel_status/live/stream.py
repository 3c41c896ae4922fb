"""A change stream's engine: snapshot, resume, one event per change, heartbeats, and a
bounded queue between the database reads and the client.

The HTTP layer gives it ``read_rows``: the caller's sessions under its filters, re-read with
the caller's permission on every change (a session that the caller may no longer edit is
simply not in the answer). The engine keeps what it last sent per session and sends an event
only when that changes: ``status`` (the listing's item), or ``removed`` (once, for a session
it had sent, when it left the caller's view: deleted, share revoked, filtered out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, NamedTuple

from django.db import DatabaseError
from django.utils import timezone

from kernel_status.live import reads
from kernel_status.live.hub import Hub, Subscription

logger = logging.getLogger("kernel_status.live")

# A resume replays at most this many changes; more get a fresh snapshot.
MAX_REPLAY = 5000


class Row(NamedTuple):
    session_id: str
    item: dict[str, Any]  # the event's data, as the listing shows the session
    expiry: datetime | None  # when its running kernel leaves the liveness window


# Reads the caller's visible sessions, all of them (None) or these pks: under the stream's
# filters, or (filtered=False) all that the caller may edit.
ReadRows = Callable[[set[int] | None, bool], dict[int, Row]]


def event(name: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"{head}event: {name}\ndata: {body}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"


class CallerGone(Exception):
    """``read_rows`` found the caller no longer authenticated (a token deleted, a user
    deactivated, a session logged out): the stream ends with an ``error`` event."""


class _End:
    pass


END = _End()


class Stream:
    def __init__(
        self,
        hub: Hub,
        read_rows: ReadRows,
        *,
        last_event_id: str | None,
        queue_size: int,
        heartbeat: float,
        max_seconds: float | None = None,
        retry_ms: int = 2000,
    ) -> None:
        self.hub = hub
        self.read_rows = read_rows
        self.last_event_id = last_event_id
        self.queue: asyncio.Queue[bytes | _End] = asyncio.Queue(maxsize=max(2, queue_size))
        self.heartbeat = heartbeat
        self.max_seconds = max_seconds
        self.retry_ms = retry_ms
        self.sent: dict[int, Row] = {}
        self.position = 0
        self.dropped = False

    # --- the consumer: what the response iterates -----------------------------------------

    async def events(self) -> AsyncIterator[bytes]:
        subscription = self.hub.subscribe(None)
        producer = asyncio.ensure_future(self._produce(subscription))
        loop = asyncio.get_running_loop()
        deadline = None if self.max_seconds is None else loop.time() + self.max_seconds
        # The id of the last event sent, and whether the snapshot (or replay) is all out: the
        # lifetime never cuts a snapshot, which a resume could not complete.
        sent_id: int | None = None
        ready = False
        try:
            yield f"retry: {self.retry_ms}\n\n".encode()
            while True:
                timeout = self.heartbeat
                if deadline is not None and ready:
                    left = deadline - loop.time()
                    if left <= 0:
                        detail = (
                            "This stream reached its lifetime (KERNEL_STATUS_STREAM_MAX_SECONDS)."
                            " Reconnect with Last-Event-ID."
                        )
                        yield event("reconnect", {"detail": detail}, sent_id)
                        return
                    timeout = min(timeout, left)
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:
                    if deadline is None or not ready or loop.time() < deadline:
                        yield HEARTBEAT
                    continue
                if isinstance(item, _End):
                    return
                sent_id = _event_id(item, sent_id)
                ready = ready or b"event: ready\n" in item.split(b"data: ", 1)[0]
                yield item
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
            subscription.close()

    # --- the producer ---------------------------------------------------------------------

    def _put(self, chunk: bytes) -> bool:
        """Queue an event; a client too far behind is dropped with a final "reconnect"."""
        try:
            self.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            detail = "This stream fell too far behind its client. Reconnect with Last-Event-ID."
            self.queue.put_nowait(event("reconnect", {"detail": detail}, self.position))
            self.queue.put_nowait(END)
            return False
        return True

    def _end(self, name: str, detail: str) -> None:
        while self.queue.full():
            self.queue.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(event(name, {"detail": detail}, self.position or None))
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(END)

    async def _produce(self, subscription: Subscription) -> None:
        try:
            if not await self._start():
                return
            while not subscription.closing:
                woke = await subscription.wait(self._timeout())
                if subscription.closing:
                    break
                changed, everything = subscription.take() if woke else (set(), False)
                self.position = max(self.position, subscription.newest_change)
                expired = self._expired()
                if (everything or changed or expired) and not await self._refresh(
                    None if everything else changed | expired
                ):
                    return
            self._end("reconnect", "The server is shutting down. Reconnect with Last-Event-ID.")
        except CallerGone as gone:
            self._end("error", f"{gone} Reconnect with valid credentials.")
        except DatabaseError as error:
            logger.warning("Change stream ended: database unavailable: %s", error)
            self._end("error", "Database unavailable. Reconnect with Last-Event-ID.")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Change stream failed")
            self._end("error", "Internal server error. Reconnect.")

    async def _start(self) -> bool:
        """The snapshot, or the replay of a resume; ``False`` if the client was dropped."""
        self.position = await reads.read(reads.change_position)
        resumed = _parse_id(self.last_event_id)
        if resumed is not None:
            since = await reads.read(reads.changes_since, resumed, MAX_REPLAY)
            pks = since.sessions
            if since.covered and pks is not None:
                rows = await reads.read(self.read_rows, pks, True)
                hidden = pks - set(rows)
                # Changed sessions out of the filters but the caller's: it may have had them.
                left = await reads.read(self.read_rows, hidden, False) if hidden else {}
                # Out of its view altogether: another user's session, unless its access
                # changed (then the client may have had it: start afresh, naming nothing).
                if not (hidden - set(left)) & since.access:
                    return await self._replay(rows, left, max(self.position, since.newest))
            detail = (
                f"Last-Event-ID {self.last_event_id} cannot be replayed: a fresh snapshot "
                "follows; forget what you had."
            )
            if not self._put(event("reset", {"detail": detail}, self.position)):
                return False
        elif self.last_event_id is not None and self.last_event_id.strip():
            detail = f"Last-Event-ID {self.last_event_id!r} is not an id of this stream."
            if not self._put(event("reset", {"detail": detail}, self.position)):
                return False
        rows = await reads.read(self.read_rows, None, True)
        for pk, row in rows.items():
            self.sent[pk] = row
            if not self._put(event("status", row.item, self.position)):
                return False
        ready = {"resumed": False, "replayed": 0, "sessions": len(rows)}
        return self._put(event("ready", ready, self.position))

    async def _replay(self, rows: dict[int, Row], left: dict[int, Row], position: int) -> bool:
        self.position = position
        for pk, row in rows.items():
            self.sent[pk] = row
            if not self._put(event("status", row.item, self.position)):
                return False
        for row in left.values():
            if not self._put(event("removed", {"session_id": row.session_id}, self.position)):
                return False
        # What the client kept of the others is still current: the stream must know them to
        # tell their later changes and removals apart.
        known = await reads.read(self.read_rows, None, True)
        self.sent.update({pk: row for pk, row in known.items() if pk not in rows})
        replay = {"resumed": True, "replayed": len(rows) + len(left), "sessions": len(known)}
        return self._put(event("ready", replay, self.position))

    async def _refresh(self, pks: set[int] | None) -> bool:
        rows = await reads.read(self.read_rows, pks, True)
        candidates = set(self.sent) | set(rows) if pks is None else pks
        for pk in sorted(candidates):
            new, old = rows.get(pk), self.sent.get(pk)
            if new is None:
                if old is not None:
                    del self.sent[pk]
                    data = {"session_id": old.session_id}
                    if not self._put(event("removed", data, self.position)):
                        return False
                continue
            self.sent[pk] = new
            changed = old is None or old.item != new.item
            if changed and not self._put(event("status", new.item, self.position)):
                return False
        return True

    def _timeout(self) -> float:
        expiries = [row.expiry for row in self.sent.values() if row.expiry is not None]
        if not expiries:
            return 3600.0
        return max(0.0, reads.until_expiry(min(expiries)))

    def _expired(self) -> set[int]:
        now = timezone.now()
        return {pk for pk, row in self.sent.items() if row.expiry is not None and row.expiry <= now}


async def stream_events(
    hub: Hub,
    read_rows: ReadRows,
    last_event_id: str | None,
    *,
    queue_size: int,
    heartbeat: float,
    max_seconds: float | None = None,
) -> AsyncIterator[bytes]:
    """The bytes of one change stream (see :class:`Stream`)."""
    stream = Stream(
        hub,
        read_rows,
        last_event_id=last_event_id,
        queue_size=queue_size,
        heartbeat=heartbeat,
        max_seconds=max_seconds,
    )
    async for chunk in stream.events():
        yield chunk


def _parse_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _event_id(chunk: bytes, previous: int | None) -> int | None:
    """The ``id:`` of an event as :func:`event` writes it (its first line), else ``previous``."""
    if not chunk.startswith(b"id: "):
        return previous
    return int(chunk[4 : chunk.index(b"\n")])
