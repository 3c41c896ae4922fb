"""Getting the bridge's events into the mirror: queues per session, retries, two sinks.

:class:`Writer` keeps one queue of events per marimo session. Events submitted while a
session's previous batch is being written wait and go together in the next batch, so frames
that arrive together are written together. What a batch meets:

- written: the next batch goes at once;
- the mirror does not know the session (the platform has not registered it yet): the events
  are kept, a log line says so, and the batch is tried again every ``unknown_retry`` seconds.
  A live session's events are never dropped for good. Once the session has ended in marimo,
  its queue is given up ``unknown_give_up`` seconds after the end if the mirror still does
  not know it (a notebook the platform never registered), with a log line;
- the mirror is busy or unreachable (HTTP 503, 429, other 5xx, connection failures, database
  errors): tried again with exponential backoff, honouring ``Retry-After``. Repeating or
  reordering a batch is safe: the mirror applies an event only when it is newer than what
  it stored;
- refused for good (HTTP 401 or 403: the token or its permission): :class:`FatalWriteError`,
  which stops the bridge; a batch the server calls invalid (400) is logged and dropped.

Two sinks: :class:`HttpSink` posts to ``POST /api/kernel/events`` (kernel hosts without
database credentials); :class:`DirectSink` calls :func:`kernel_status.mirror.apply_events`
from one worker thread (hosts beside the database).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx
from django.utils.http import parse_http_date_safe

from kernel_status.contrib.marimo.backoff import backoff_delay
from kernel_status.mirror.events import (
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
)
from kernel_status.mirror.ordering import STATUS_TIE_RANK, stale_tie_rank

__all__ = [
    "DirectSink",
    "FatalWriteError",
    "HttpSink",
    "SendResult",
    "Sent",
    "Sink",
    "Writer",
    "WriterStats",
    "compact",
    "to_wire",
]

logger = logging.getLogger("kernel_status.contrib.marimo")


class FatalWriteError(Exception):
    """The mirror refuses the bridge for good (bad token, missing permission)."""


class Sent(enum.Enum):
    WRITTEN = "written"
    UNKNOWN_SESSION = "unknown session"
    RETRY = "retry"
    DROPPED = "dropped"


@dataclass(frozen=True)
class SendResult:
    outcome: Sent
    retry_after: float | None = None  # seconds, from the server's Retry-After
    detail: str = ""


class Sink(Protocol):
    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult: ...

    async def aclose(self) -> None: ...


# --- the wire format of POST /api/kernel/events ---------------------------------------------


def to_wire(event: KernelEvent) -> dict[str, Any]:
    """One event as the ingestion endpoint takes it (timestamps in epoch seconds)."""
    timestamp = event.timestamp.timestamp()
    if isinstance(event, CellNotification):
        data: dict[str, Any] = {"cell_id": event.cell_id, "timestamp": timestamp}
        if event.status is not None:
            data["status"] = event.status
        if event.stale_inputs is not None:
            data["stale_inputs"] = event.stale_inputs
        return {"op": "cell-op", "data": data}
    if isinstance(event, KernelStarted):
        return {"op": "kernel-started", "data": {"timestamp": timestamp}}
    if isinstance(event, KernelHeartbeat):
        return {"op": "kernel-heartbeat", "data": {"timestamp": timestamp}}
    data = {"timestamp": timestamp, "cause": event.cause}
    if event.exit_code is not None:
        data["exit_code"] = event.exit_code
    return {"op": "kernel-stopped", "data": data}


def compact(events: Sequence[KernelEvent]) -> list[KernelEvent]:
    """The same outcome in the mirror from fewer events, for a backlog that cannot be written.

    The mirror keeps, per field, the value of the newest notification that sets it (see
    :mod:`kernel_status.mirror.ordering`), among those of the current kernel process. So:

    - events older than the backlog's newest kernel start are dropped: once that start is
      applied, the mirror ignores them;
    - of the rest, the events that decide what the mirror ends with are kept, unchanged, each
      with its own timestamp. Per kernel: the newest start, heartbeat and stop, and the stops
      with the newest exit code and cause. Per cell: the newest status, stale flag and
      notification (up to three events). The newest status also carries the newest
      timestamp with a status, which is what ``last_activity`` takes from the cell.

    Every other event is older than a kept one in each field it sets, so the mirror ends as
    the whole backlog leaves it, whatever it stored before
    (tests/contrib/marimo/test_marimo_writer.py holds this against
    :func:`kernel_status.mirror.apply_events`).
    """
    starts = [e.timestamp for e in events if isinstance(e, KernelStarted)]
    floor = max(starts) if starts else None
    kept: dict[tuple[str, ...], tuple[tuple[datetime, int | str], KernelEvent]] = {}

    def keep(key: tuple[str, ...], rank: int | str, event: KernelEvent) -> None:
        order = (event.timestamp, rank)
        held = kept.get(key)
        if held is None or order > held[0]:
            kept[key] = (order, event)

    for event in events:
        if floor is not None and event.timestamp < floor:
            continue
        if isinstance(event, CellNotification):
            cell = event.cell_id
            keep(("notified", cell), 0, event)
            if event.status is not None:
                keep(("status", cell), STATUS_TIE_RANK[event.status], event)
            if event.stale_inputs is not None:
                keep(("stale", cell), stale_tie_rank(event.stale_inputs), event)
        elif isinstance(event, KernelStopped):
            keep(("stopped",), 0, event)
            if event.exit_code is not None:
                keep(("exit_code",), event.exit_code, event)
            if event.cause:
                keep(("exit_cause",), event.cause, event)
        else:
            keep((type(event).__name__,), 0, event)
    # One event may decide several fields: keep it once, in timestamp order.
    unique = {id(event): event for _, event in kept.values()}
    return sorted(unique.values(), key=lambda e: e.timestamp)


# --- the queues ------------------------------------------------------------------------------


@dataclass
class _Queue:
    events: list[KernelEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    in_flight: int = 0  # events of the batch being sent
    unknown: bool = False
    attempt: int = 0
    closed: bool = False  # the session ended: drop the queue once it is written
    closed_at: float | None = None  # the writer's clock when the session ended


@dataclass
class WriterStats:
    batches: int = 0
    events: int = 0
    last_written_at: float | None = None  # time.time()
    failures: int = 0


class Writer:
    """Queues per session in front of a :class:`Sink`; at most ``concurrency`` sends at once."""

    def __init__(
        self,
        sink: Sink,
        *,
        concurrency: int = 4,
        max_batch: int = 500,
        max_queued: int = 5000,
        unknown_retry: float = 10.0,
        unknown_give_up: float = 600.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self._clock = clock  # times unknown_give_up; tests move it instead of waiting
        self.max_batch = max_batch
        self.max_queued = max_queued
        self.unknown_retry = unknown_retry
        self.unknown_give_up = unknown_give_up
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stats = WriterStats()
        self._queues: dict[str, _Queue] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._fatal: FatalWriteError | None = None
        self._fatal_event = asyncio.Event()
        # Set, and replaced by a fresh one, whenever a queue may have become written, unknown
        # or gone, or a fatal error came: what drain waits on.
        self._changed = asyncio.Event()

    # --- for the bridge --------------------------------------------------------------------

    def submit(self, session_id: str, events: Sequence[KernelEvent]) -> None:
        """Queue events; written by a task of the writer as soon as the session's turn comes."""
        if not events:
            return
        queue = self._queues.setdefault(session_id, _Queue())
        queue.events.extend(events)
        if len(queue.events) > self.max_queued:
            before = len(queue.events)
            queue.events = compact(queue.events)
            logger.warning(
                "Session %r: %d events waiting; folded into %d",
                session_id,
                before,
                len(queue.events),
            )
        if queue.task is None or queue.task.done():
            queue.task = asyncio.create_task(
                self._flush(session_id, queue), name=f"write {session_id}"
            )

    def session_ended(self, session_id: str) -> None:
        """No more events will come for the session: forget it once its queue is written."""
        queue = self._queues.get(session_id)
        if queue is None:
            return
        queue.closed, queue.closed_at = True, self._clock()
        if not queue.events and (queue.task is None or queue.task.done()):
            del self._queues[session_id]

    @property
    def unknown_sessions(self) -> list[str]:
        return sorted(sid for sid, queue in self._queues.items() if queue.unknown)

    @property
    def queued_events(self) -> int:
        """Events not written yet, the batches being sent included."""
        return sum(len(queue.events) + queue.in_flight for queue in self._queues.values())

    async def wait_fatal(self) -> FatalWriteError:
        await self._fatal_event.wait()
        assert self._fatal is not None
        return self._fatal

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every known session's queue to be written.

        ``True`` once no session the mirror knows has events left (those of sessions it does
        not know are not waited for: they may never be written); ``False`` after ``timeout``,
        or as soon as the mirror refuses the bridge for good.
        """
        try:
            async with asyncio.timeout(timeout):
                while self._fatal is None:
                    if not any(
                        (q.events or q.in_flight) and not q.unknown for q in self._queues.values()
                    ):
                        return True
                    # No await between the check and here: no change can be missed.
                    await self._changed.wait()
        except TimeoutError:
            pass
        return False

    async def aclose(self) -> None:
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.sink.aclose()

    def _notify(self) -> None:
        """Wake every drain waiting now; each checks its condition again."""
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the session's writing task --------------------------------------------------------

    async def _flush(self, session_id: str, queue: _Queue) -> None:
        try:
            await self._write_queue(session_id, queue)
        finally:  # written, given up, forgotten, fatal or cancelled
            self._notify()

    async def _write_queue(self, session_id: str, queue: _Queue) -> None:
        while queue.events and self._fatal is None:
            batch = queue.events[: self.max_batch]
            del queue.events[: len(batch)]
            queue.in_flight = len(batch)
            async with self._slots:
                try:
                    result = await self.sink.send(session_id, batch)
                except FatalWriteError as error:
                    queue.events[:0] = batch
                    self._fatal = error
                    self._fatal_event.set()
                    return
                except Exception as error:  # a bug must not stop the session's writes for good
                    logger.exception("Session %r: writing failed unexpectedly", session_id)
                    result = SendResult(Sent.RETRY, detail=f"{type(error).__name__}: {error}")
                finally:
                    queue.in_flight = 0
            delay = self._after(session_id, queue, batch, result)
            self._notify()  # the batch is done with: written, dropped, or back in the queue
            if delay:
                await asyncio.sleep(delay)
        if queue.closed and not queue.events and self._queues.get(session_id) is queue:
            del self._queues[session_id]

    def _after(
        self, session_id: str, queue: _Queue, batch: list[KernelEvent], result: SendResult
    ) -> float:
        """Account for a send; the seconds to wait before the next one."""
        if result.outcome is Sent.WRITTEN:
            if queue.unknown:
                logger.info("Session %r is in the mirror now; writing its events", session_id)
            queue.unknown, queue.attempt = False, 0
            self.stats.batches += 1
            self.stats.events += len(batch)
            self.stats.last_written_at = time.time()
            return 0.0
        if result.outcome is Sent.DROPPED:
            logger.error(
                "Session %r: the mirror refused a batch of %d events; dropped it: %s",
                session_id,
                len(batch),
                result.detail,
            )
            return 0.0
        if result.outcome is Sent.UNKNOWN_SESSION and self._give_up(session_id, queue, batch):
            return 0.0
        queue.events[:0] = batch  # in front: the order of a session's events is kept
        self.stats.failures += 1
        if result.outcome is Sent.UNKNOWN_SESSION:
            if not queue.unknown:
                logger.warning(
                    "Session %r is not in the mirror (not registered yet?); keeping its "
                    "events and trying again every %g s",
                    session_id,
                    self.unknown_retry,
                )
            queue.unknown = True
            return self.unknown_retry
        backoff = backoff_delay(queue.attempt, self.backoff_initial, self.backoff_max)
        queue.attempt += 1
        # Retry-After is the server's floor; the backoff still spreads the sessions out.
        delay = max(backoff, result.retry_after or 0.0)
        logger.warning(
            "Session %r: could not write %d events (%s); retrying in %.1f s",
            session_id,
            len(batch),
            result.detail or "no detail",
            delay,
        )
        return delay

    def _give_up(self, session_id: str, queue: _Queue, batch: list[KernelEvent]) -> bool:
        """Drop the events of a session that ended in marimo and that the mirror still does
        not know ``unknown_give_up`` seconds later: nobody will register it now."""
        if queue.closed_at is None or self._clock() - queue.closed_at < self.unknown_give_up:
            return False
        logger.warning(
            "Session %r ended in marimo %g s ago and is still not in the mirror; dropping "
            "its %d unwritten events",
            session_id,
            self.unknown_give_up,
            len(batch) + len(queue.events),
        )
        queue.events.clear()
        queue.unknown = False
        return True


# --- the sinks -------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_MAX = 300.0  # seconds: the longest Retry-After the writer honours


class HttpSink:
    """Posts batches to ``POST /api/kernel/events`` with a service account's token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        scheme: str = "Token",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._client = httpx.AsyncClient(
            timeout=timeout,
            headers={"Authorization": f"{scheme} {token}", "Accept": "application/json"},
            follow_redirects=False,
            transport=transport,
        )

    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult:
        body = {"events": [to_wire(event) for event in events]}
        try:
            response = await self._client.post(
                self.url, json=body, headers={b"Marimo-Session-Id": session_id.encode()}
            )
        except httpx.HTTPError as error:
            return SendResult(Sent.RETRY, detail=f"{type(error).__name__}: {error}".strip())
        status = response.status_code
        detail = _detail(response.content)
        if status == 200:
            return SendResult(Sent.WRITTEN)
        if status == 404:
            return SendResult(Sent.UNKNOWN_SESSION)
        if status in RETRY_STATUSES:
            return SendResult(
                Sent.RETRY, _retry_after(response.headers.get("Retry-After")), f"HTTP {status}"
            )
        if status in {401, 403}:
            raise FatalWriteError(f"{self.url} answered {status}: {detail or '-'}")
        return SendResult(Sent.DROPPED, detail=f"HTTP {status}: {detail or '-'}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _detail(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    detail = decoded.get("detail") if isinstance(decoded, dict) else None
    return detail if isinstance(detail, str) else ""


def _retry_after(value: str | None, now: float | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks for, from now (``time.time()`` unless given).

    Either form of RFC 9110: delta-seconds, or an HTTP date (which a proxy or a load balancer
    may send). Clamped to [0, ``RETRY_AFTER_MAX``]: a date in the past asks for no wait (the
    backoff decides), and a far one must not park the session's events for hours. ``None``
    when there is no header or it reads as neither form: the backoff alone decides.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        date = parse_http_date_safe(value)  # the three formats of RFC 9110, GMT
        if date is None:
            return None
        seconds = date - (time.time() if now is None else now)
    if not math.isfinite(seconds):  # "nan", "inf": not delta-seconds
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


class DirectSink:
    """Applies batches with the Python write API, from one thread (one database connection)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel-status-db")

    async def send(self, session_id: str, events: Sequence[KernelEvent]) -> SendResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _apply, session_id, list(events))

    async def aclose(self) -> None:
        from django.db import connections

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, connections.close_all)
        self._executor.shutdown(wait=True)


def _apply(session_id: str, events: list[KernelEvent]) -> SendResult:
    from django.db import DatabaseError, connections, router

    from kernel_status import mirror
    from kernel_status.models import Session

    connection = connections[router.db_for_write(Session)]
    connection.close_if_unusable_or_obsolete()
    try:
        mirror.apply_events(session_id, events)
    except mirror.UnknownSession:
        return SendResult(Sent.UNKNOWN_SESSION)
    except mirror.ClockSkewError as error:  # as the endpoint's 400: the clocks disagree
        return SendResult(Sent.DROPPED, detail=str(error))
    except DatabaseError as error:
        return SendResult(Sent.RETRY, detail=f"{type(error).__name__}: {error}".strip())
    return SendResult(Sent.WRITTEN)
