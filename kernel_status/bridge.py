"""Follow one session of a running marimo server and keep the mirror true, live.

The bridge connects to marimo's websocket (``/ws?session_id=...``) as that session's
frontend and turns what marimo sends into write-API events (:mod:`kernel_status.mirror`).
Every frame is a JSON text ``{"op": ..., "data": {...}}``. What marimo 0.25 sends, and
what the bridge makes of it:

- ``kernel-ready`` (``cell_ids``, ``codes``, ``resumed``, ``kiosk``, ...) is the first frame
  when marimo creates the session: a new kernel, so :class:`KernelStarted`, stamped with the
  time the connection was opened (the kernel's first cell-ops can be older than the moment
  kernel-ready is read). With ``resumed: true`` the kernel was already running (marimo
  handed over an orphaned session); nothing restarted, so the bridge only reconciles (see
  below) and never resets the cells.
- ``reconnected`` is the first frame when marimo already has a session with this id, for
  example after the bridge lost its connection. marimo replays nothing then: cell changes
  made while the bridge was away are not sent again. So the bridge asks marimo's
  ``GET /api/kernel/status`` and reconciles: ``stopped`` stops the mirrored kernel, ``idle``
  makes every cell the mirror has busy idle, and a kernel the mirror does not have running
  is recorded as started. A cell that started running while the bridge was away is only
  seen at its next cell-op (marimo's own frontend has the same gap).
- ``cell-op`` (``cell_id``, ``status``, ``stale_inputs``, ``timestamp`` in epoch seconds,
  plus output and console) becomes a :class:`CellNotification`. Frames that arrive together
  are written in one batch.
- ``banner`` titled ``Kernel stopped`` is marimo's word that the kernel process died; its
  description says why. marimo then closes the session and the socket (code 1000, reason
  ``MARIMO_SHUTDOWN``). ``kernel-startup-error`` (then 1011 ``MARIMO_KERNEL_STARTUP_ERROR``)
  means the kernel never came up. Both record :class:`KernelStopped` and end the bridge.
- A close with ``MARIMO_SHUTDOWN`` and no banner means the session was closed, or that
  another client took the session over. marimo's status endpoint tells which: a closed
  session records a stop; a taken-over one ends the bridge and leaves the mirror alone.
- Refusals (``MARIMO_UNAUTHORIZED``, ``MARIMO_NO_SESSION``, ...) are fatal. Any other loss
  of the connection is retried with exponential backoff; when the connection stays lost for
  ``give_up_after`` seconds, the kernel is recorded as stopped, cause ``connection lost``.

While the kernel is known to be alive and the connection is up, the bridge sends a
:class:`KernelHeartbeat` every ``heartbeat_interval`` seconds; websocket pings at the same
interval notice a dead connection.

marimo keys a session's frontend by the session id: connecting takes the session over from a
browser tab that has it open (marimo closes the tab's socket), and a tab that reconnects takes
it back (the bridge then ends with :attr:`Outcome.DISPLACED`). If marimo has no session with
this id, connecting creates one and starts its kernel, as opening a tab does. Timestamps
from marimo (cell-ops) and from the bridge (start, heartbeats) are compared, so the two
machines' clocks must agree.
"""

from __future__ import annotations

import enum
import html
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.db import DatabaseError, connections, router
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from kernel_status import mirror
from kernel_status.choices import BUSY_CELL_STATES, CellRuntimeState, ProcessState
from kernel_status.events import (
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
)
from kernel_status.models import CellStatus, KernelProcess, Session
from kernel_status.serializers import CellOpDataSerializer
from kernel_status.validators import session_id_problem

__all__ = [
    "CONNECTION_LOST_CAUSE",
    "BridgeConfig",
    "BridgeError",
    "MarimoBridge",
    "Outcome",
    "fetch_marimo_status",
    "parse_frame",
]

logger = logging.getLogger("kernel_status.bridge")

CONNECTION_LOST_CAUSE = "connection lost"
SESSION_CLOSED_CAUSE = "session closed by marimo"
KERNEL_STOPPED_CAUSE = "kernel stopped (reported by marimo)"

# marimo's close reasons (marimo._server.codes.WebSocketCloseReason).
SHUTDOWN_REASON = "MARIMO_SHUTDOWN"
STARTUP_ERROR_REASON = "MARIMO_KERNEL_STARTUP_ERROR"
REFUSAL_REASONS = frozenset(
    {
        "MARIMO_UNAUTHORIZED",
        "MARIMO_NOT_ALLOWED",
        "MARIMO_NO_SESSION_ID",
        "MARIMO_NO_FILE_KEY",
        "MARIMO_NO_SESSION",
        "MARIMO_KIOSK_NOT_ALLOWED",
        "MARIMO_LORO_NOT_INSTALLED",
    }
)
KERNEL_STOPPED_BANNER = "Kernel stopped"
RESTART_HINT = "Click Restart to start a fresh kernel."  # UI advice in marimo's messages
# Handshake answers that retrying will not change.
FATAL_HTTP_STATUSES = frozenset({400, 401, 403, 404, 405, 410})

POLL_SECONDS = 0.25  # how long a receive waits before the stop flag is checked again
MAX_FRAMES_PER_BATCH = 200
MAX_QUEUED_EVENTS = 10_000


class BridgeError(Exception):
    """The bridge cannot work: bad configuration, refused by marimo, or unknown session."""


class Outcome(enum.Enum):
    """Why :meth:`MarimoBridge.run` returned."""

    STOP_REQUESTED = "stop requested"
    KERNEL_STOPPED = "kernel stopped"
    CONNECTION_LOST = "connection lost"
    DISPLACED = "session taken over by another client"


class MarimoState(enum.Enum):
    """marimo's ``GET /api/kernel/status`` answer, plus "no such session"."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"
    GONE = "gone"


@dataclass(frozen=True)
class BridgeConfig:
    """Where marimo is, which session to follow, and the timing."""

    url: str
    session_id: str
    token: str | None = None
    heartbeat_interval: float = 15.0
    give_up_after: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    open_timeout: float = 10.0
    http_timeout: float = 5.0

    def __post_init__(self) -> None:
        problem = session_id_problem(self.session_id)
        if problem is not None:
            raise BridgeError(f"The session id {problem}.")
        if not self.heartbeat_interval > 0:
            raise BridgeError("The heartbeat interval must be positive.")
        if not self.give_up_after >= 0:
            raise BridgeError("give_up_after must be zero or positive.")
        _split_base_url(self.url)  # raises BridgeError

    @property
    def ws_url(self) -> str:
        query = [("session_id", self.session_id)]
        if self.token:
            query.append(("access_token", self.token))  # marimo's query parameter
        return _join(self.url, "/ws", "ws", urlencode(query))

    @property
    def ws_url_for_logs(self) -> str:
        url = _join(self.url, "/ws", "ws", urlencode([("session_id", self.session_id)]))
        return url + "&access_token=***" if self.token else url

    @property
    def status_url(self) -> str:
        return _join(self.url, "/api/kernel/status", "http")


def _split_base_url(url: str) -> tuple[bool, str, str]:
    """(secure, netloc, path) of marimo's base URL; http(s) and ws(s) are accepted."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https", "ws", "wss"} or not parts.hostname:
        raise BridgeError(f"{url!r} is not an http(s) URL of a marimo server.")
    if parts.query or parts.fragment:
        raise BridgeError(f"{url!r}: give marimo's base URL, without a query or fragment.")
    return scheme in {"https", "wss"}, parts.netloc, parts.path.rstrip("/")


def _join(url: str, path: str, kind: str, query: str = "") -> str:
    secure, netloc, base_path = _split_base_url(url)
    scheme = kind + ("s" if secure else "")
    return urlunsplit((scheme, netloc, base_path + path, query, ""))


def parse_frame(raw: str | bytes) -> tuple[str, Mapping[str, Any]] | None:
    """``(op, data)`` of one marimo frame, or ``None`` if it is not one."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    op, data = message.get("op"), message.get("data")
    if not isinstance(op, str) or not isinstance(data, dict):
        return None
    return op, data


def cell_notification(data: Mapping[str, Any]) -> CellNotification | None:
    """A ``cell-op`` frame's data as an event, checked like the ingestion endpoint does."""
    serializer = CellOpDataSerializer(data=data)
    if not serializer.is_valid():
        logger.warning("Ignored a malformed cell-op: %s", dict(serializer.errors))
        return None
    return serializer.to_event(timezone.now())


def fetch_marimo_status(config: BridgeConfig) -> MarimoState | None:
    """Ask marimo's ``GET /api/kernel/status``; ``None`` when there is no usable answer."""
    headers = {"Marimo-Session-Id": config.session_id, "Accept": "application/json"}
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"
    request = urllib.request.Request(config.status_url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=config.http_timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        detail = _json_detail(error.read())
        if detail.startswith("Invalid session id"):  # marimo's 500 for an unknown session
            return MarimoState.GONE
        logger.warning("marimo's status endpoint answered %s: %s", error.code, detail or "-")
        return None
    except (OSError, ValueError) as error:
        logger.warning("marimo's status endpoint did not answer: %s", error)
        return None
    state = body.get("state") if isinstance(body, dict) else None
    try:
        return MarimoState(state)
    except ValueError:
        logger.warning("marimo's status endpoint answered an unknown state: %r", state)
        return None


def _json_detail(body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return ""
    detail = decoded.get("detail") if isinstance(decoded, dict) else None
    return detail if isinstance(detail, str) else ""


def _stop_cause(message: str, default: str) -> str:
    cause = html.unescape(message).replace(RESTART_HINT, "").strip()
    return cause or default


class _LinkDown(Exception):
    """The connection could not be opened, for a reason that may go away."""


class MarimoBridge:
    """Follows one marimo session until its kernel stops, the link is lost, or stop().

    :meth:`run` blocks; call :meth:`stop` (or set the event passed as ``stop``) from another
    thread or a signal handler to end it. Django's ORM is used directly from the calling
    thread.
    """

    def __init__(self, config: BridgeConfig, *, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop_event = stop or threading.Event()
        # The notebook's cells in order, from the last kernel-ready frame.
        self.cell_ids: tuple[str, ...] = ()
        self._pending: list[KernelEvent] = []
        self._attached = False  # marimo attached this connection to the session
        self._alive = False  # marimo's kernel is known to be alive on this connection
        self._next_tick = 0.0  # monotonic time of the next heartbeat or reconcile retry
        # When the current connection was opened. A kernel that marimo starts for it starts
        # later, so its cell-ops are all newer than this, however late kernel-ready is read.
        self._opened_at = timezone.now()

    def stop(self) -> None:
        self.stop_event.set()

    # --- the connection loop ------------------------------------------------------------------

    def run(self) -> Outcome:
        self._check_session()
        sid = self.config.session_id
        logger.info("Bridging marimo session %r from %s", sid, self.config.url)
        down_since = time.monotonic()
        attempt = 0
        while not self.stop_event.is_set():
            try:
                outcome = self._connect_and_follow()
            except _LinkDown as down:
                logger.warning("Could not connect to marimo: %s", down)
                outcome = None
            if outcome is not None:
                self._report_unwritten()
                return outcome
            if self.stop_event.is_set():
                break
            if self._attached:
                down_since, attempt = time.monotonic(), 0
            self._attached = self._alive = False
            delay = self._retry_delay(down_since, attempt)
            if delay is None:
                return self._give_up(time.monotonic() - down_since)
            logger.info(
                "Reconnecting to session %r in %.2f s (attempt %d)", sid, delay, attempt + 1
            )
            attempt += 1
            self.stop_event.wait(delay)
        logger.info("Stopped following session %r on request", sid)
        self._report_unwritten()
        return Outcome.STOP_REQUESTED

    def _connect_and_follow(self) -> Outcome | None:
        """Follow one connection: an outcome ends the bridge, ``None`` means reconnect."""
        websocket = self._open()
        with websocket:
            try:
                return self._follow(websocket)
            except ConnectionClosed as closed:
                self._write()
                return self._closed(closed)

    def _open(self) -> ClientConnection:
        interval = self.config.heartbeat_interval
        logger.info("Connecting to %s", self.config.ws_url_for_logs)
        self._opened_at = timezone.now()
        try:
            return connect(
                self.config.ws_url,
                open_timeout=self.config.open_timeout,
                ping_interval=interval,
                ping_timeout=max(interval, 20.0),
                max_size=None,  # cell outputs can be large; marimo's own frontend has no cap
                close_timeout=3.0,
            )
        except InvalidURI as error:
            raise BridgeError(f"Not a usable websocket URL: {error}") from error
        except InvalidStatus as error:
            status = error.response.status_code
            if status in FATAL_HTTP_STATUSES:
                raise BridgeError(f"marimo refused the websocket: HTTP {status}") from error
            raise _LinkDown(f"HTTP {status}") from error
        except (OSError, TimeoutError, InvalidHandshake) as error:
            raise _LinkDown(str(error) or type(error).__name__) from error

    def _follow(self, websocket: ClientConnection) -> Outcome | None:
        logger.info("Connected; waiting for marimo to attach session %r", self.config.session_id)
        while not self.stop_event.is_set():
            for raw in self._receive(websocket):
                outcome = self._handle(raw)
                if outcome is not None:
                    return outcome
            self._write()
            outcome = self._tick()
            if outcome is not None:
                return outcome
        self._write()
        return None

    def _receive(self, websocket: ClientConnection) -> list[str | bytes]:
        """The next frame and any that arrived with it; ``[]`` after a quiet poll."""
        wait = POLL_SECONDS
        if self._attached:
            wait = max(0.0, min(wait, self._next_tick - time.monotonic()))
        try:
            frames = [websocket.recv(timeout=wait)]
        except TimeoutError:
            return []
        while len(frames) < MAX_FRAMES_PER_BATCH:
            try:
                frames.append(websocket.recv(timeout=0))
            except (TimeoutError, ConnectionClosed):
                break  # a close is raised again by the next recv(), after these frames
        return frames

    def _retry_delay(self, down_since: float, attempt: int) -> float | None:
        remaining = self.config.give_up_after - (time.monotonic() - down_since)
        if remaining <= 0:
            return None
        backoff = min(self.config.backoff_max, self.config.backoff_initial * 2.0**attempt)
        return min(backoff * random.uniform(0.5, 1.0), remaining)

    def _give_up(self, seconds: float) -> Outcome:
        sid = self.config.session_id
        if self._mirrored_kernel_state() == ProcessState.STOPPED:
            logger.error("Lost the connection to marimo for %.1f s; %r was stopped", seconds, sid)
        else:
            logger.error(
                "Lost the connection to marimo for %.1f s; recording the kernel of session %r "
                "as stopped",
                seconds,
                sid,
            )
            self._record_stop(CONNECTION_LOST_CAUSE)
        self._report_unwritten()
        return Outcome.CONNECTION_LOST

    # --- frames -------------------------------------------------------------------------------

    def _handle(self, raw: str | bytes) -> Outcome | None:
        frame = parse_frame(raw)
        if frame is None:
            logger.warning("Ignored a frame that is not marimo's {op, data} JSON")
            return None
        op, data = frame
        if op == "cell-op":
            event = cell_notification(data)
            logger.debug(
                "cell-op %s status=%s stale_inputs=%s",
                data.get("cell_id"),
                data.get("status"),
                data.get("stale_inputs"),
            )
            if event is not None:
                self._pending.append(event)
            return None
        logger.debug("%s frame", op)
        if op == "kernel-ready":
            return self._on_kernel_ready(data)
        if op == "reconnected":
            return self._on_reconnected()
        if op == "banner" and data.get("title") == KERNEL_STOPPED_BANNER:
            cause = _stop_cause(str(data.get("description") or ""), KERNEL_STOPPED_CAUSE)
            logger.info("marimo reports the kernel stopped: %s", cause)
            self._record_stop(cause)
            return Outcome.KERNEL_STOPPED
        if op == "kernel-startup-error":
            error = str(data.get("error") or "").strip()
            logger.error("marimo could not start the kernel: %s", error or "-")
            self._record_stop(
                f"kernel startup failed: {error}" if error else "kernel startup failed"
            )
            return Outcome.KERNEL_STOPPED
        return None

    def _on_kernel_ready(self, data: Mapping[str, Any]) -> Outcome | None:
        cell_ids = data.get("cell_ids")
        if isinstance(cell_ids, list | tuple):
            self.cell_ids = tuple(str(cell_id) for cell_id in cell_ids)
        self._attached = True
        if data.get("kiosk") is True:
            logger.info("marimo attached the bridge as a read-only (kiosk) viewer")
        if data.get("resumed") is True:
            logger.info(
                "Attached to the running kernel of session %r (%d cells)",
                self.config.session_id,
                len(self.cell_ids),
            )
            if not self._alive:
                return self._reconcile()
            self._heartbeat()
            return None
        logger.info(
            "marimo started a kernel for session %r (%d cells)",
            self.config.session_id,
            len(self.cell_ids),
        )
        self._write([KernelStarted(self._opened_at)])
        self._mark_alive()
        return None

    def _on_reconnected(self) -> Outcome | None:
        self._attached = True
        logger.info(
            "Reattached to session %r; marimo replays nothing, so asking it for the status",
            self.config.session_id,
        )
        return self._reconcile()

    def _closed(self, closed: ConnectionClosed) -> Outcome | None:
        code, reason = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (1006, "")
        logger.info("marimo closed the connection: %s %s", code, reason or "(no reason)")
        self._alive = False
        if reason in REFUSAL_REASONS:
            raise BridgeError(f"marimo refused the connection: {code} {reason}")
        if reason == STARTUP_ERROR_REASON:
            self._record_stop("kernel startup failed")
            return Outcome.KERNEL_STOPPED
        if reason == SHUTDOWN_REASON:
            return self._after_shutdown()
        return None

    def _after_shutdown(self) -> Outcome | None:
        """A close without a kernel-stopped banner: session closed, or taken over?"""
        state = fetch_marimo_status(self.config)
        if state in {MarimoState.GONE, MarimoState.STOPPED}:
            logger.info("marimo closed session %r", self.config.session_id)
            self._record_stop(SESSION_CLOSED_CAUSE)
            return Outcome.KERNEL_STOPPED
        if state in {MarimoState.IDLE, MarimoState.RUNNING}:
            logger.warning(
                "Another client took session %r over (its kernel is %s); reconnecting would "
                "take it back, so the bridge stops and leaves the mirror as it is",
                self.config.session_id,
                state.value,
            )
            return Outcome.DISPLACED
        return None  # no answer: treat it as a lost connection

    # --- liveness -------------------------------------------------------------------------------

    def _tick(self) -> Outcome | None:
        """Heartbeat when due; retry reconciling when the last attempt got no answer."""
        if not self._attached or time.monotonic() < self._next_tick:
            return None
        if not self._alive:
            return self._reconcile()
        self._heartbeat()
        return None

    def _heartbeat(self) -> None:
        self._write([KernelHeartbeat(timezone.now())])
        self._next_tick = time.monotonic() + self.config.heartbeat_interval

    def _mark_alive(self) -> None:
        self._alive = True
        self._next_tick = time.monotonic() + self.config.heartbeat_interval

    def _reconcile(self) -> Outcome | None:
        """Make the mirror agree with marimo's status after attaching to a running kernel."""
        at = timezone.now()
        self._write()
        state = fetch_marimo_status(self.config)
        if state is None:
            logger.warning(
                "No status from marimo; retrying in %s s", self.config.heartbeat_interval
            )
            self._alive = False
            self._next_tick = time.monotonic() + self.config.heartbeat_interval
            return None
        if state in {MarimoState.GONE, MarimoState.STOPPED}:
            logger.info("marimo reports the kernel of session %r stopped", self.config.session_id)
            self._record_stop(KERNEL_STOPPED_CAUSE, at=at)
            return Outcome.KERNEL_STOPPED
        events: list[KernelEvent] = []
        mirrored = self._mirrored_kernel_state()
        if mirrored != ProcessState.RUNNING:
            logger.info("marimo's kernel is %s; recording it as started", state.value)
            events.append(KernelStarted(at))
        else:
            events.append(KernelHeartbeat(at))
        if state is MarimoState.IDLE:
            busy = self._mirrored_busy_cells()
            if busy:
                logger.info("marimo is idle; marking cells idle: %s", ", ".join(busy))
            idle = CellRuntimeState.IDLE.value
            events.extend(CellNotification(cell_id, at, status=idle) for cell_id in busy)
        self._write(events)
        self._mark_alive()
        return None

    # --- the mirror -----------------------------------------------------------------------------

    def _check_session(self) -> None:
        using = router.db_for_write(Session)
        if not Session.objects.using(using).filter(session_id=self.config.session_id).exists():
            raise BridgeError(f"No session with id {self.config.session_id!r} in the mirror.")

    def _record_stop(self, cause: str, *, at: datetime | None = None) -> None:
        self._alive = False
        self._write([KernelStopped(at or timezone.now(), cause=cause)])

    def _write(self, events: Sequence[KernelEvent] = ()) -> None:
        """Apply pending events; on a database error keep them for the next write."""
        self._pending.extend(events)
        if not self._pending:
            return
        using = router.db_for_write(Session)
        connection = connections[using]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
        try:
            result = mirror.apply_events(self.config.session_id, self._pending)
        except mirror.UnknownSession as error:
            raise BridgeError(f"{error} It was removed from the mirror.") from error
        except DatabaseError:
            logger.exception("Could not write %d events; keeping them", len(self._pending))
            kept: list[KernelEvent] = [
                e for e in self._pending if not isinstance(e, KernelHeartbeat)
            ]
            self._pending = kept[-MAX_QUEUED_EVENTS:]
            return
        logger.debug(
            "Wrote %d events (%d applied, %d older than the mirror)",
            len(self._pending),
            result.applied,
            result.ignored_older,
        )
        self._pending.clear()

    def _report_unwritten(self) -> None:
        if self._pending:
            self._write()
        if self._pending:
            logger.error("%d events could not be written to the mirror", len(self._pending))

    def _mirrored_kernel_state(self) -> str | None:
        try:
            return (
                KernelProcess.objects.using(router.db_for_write(KernelProcess))
                .filter(session__session_id=self.config.session_id)
                .values_list("state", flat=True)
                .first()
            )
        except DatabaseError:
            logger.exception("Could not read the mirrored kernel")
            return ProcessState.RUNNING  # heartbeat rather than reset the cells

    def _mirrored_busy_cells(self) -> list[str]:
        try:
            return list(
                CellStatus.objects.using(router.db_for_write(CellStatus))
                .filter(session__session_id=self.config.session_id, status__in=BUSY_CELL_STATES)
                .order_by("cell_id")
                .values_list("cell_id", flat=True)
            )
        except DatabaseError:
            logger.exception("Could not read the mirrored cells")
            return []
