"""marimo's websocket frames as write-API events: pure, no I/O, no clock.

Every marimo frame is a JSON text ``{"op": ..., "data": {...}}``. The bridge attaches to a
session read-only (kiosk), so what it receives is, in order:

- ``kernel-ready`` with ``kiosk: true``: marimo attached the bridge to a running session.
  It is the kernel's start as far as the mirror knows: :class:`KernelStarted` and a
  :class:`KernelHeartbeat`, stamped when the frame was received. With ``resumed: true``
  (an existing kernel, which a kiosk attach always is) and a start this kernel was already
  reported with (``known_start``: by an earlier bridge process, which the bridge remembers
  in its health file), the start keeps that stamp: a mirror that has it takes it as
  already applied, so a restarted bridge neither resets the cells nor counts as activity;
  a mirror that lost it gets the kernel's first reported start. The heartbeat keeps the
  kernel alive and the replay below restores the cells.
- marimo's replay of the session: its latest ``cell-op`` per cell, carrying the time the
  kernel sent it, which can be long before the attach (a cell that has been running for an
  hour). Cell-ops older than the start would be dropped by the mirror's ordering rules, so
  they are re-stamped just after the start, in the order they arrive: "as of the attach,
  this cell was running".
- live ``cell-op`` frames (``cell_id``, ``status``, ``stale_inputs``, ``timestamp``), which
  become :class:`CellNotification` events, stamped by marimo.
- ``banner`` titled ``Kernel stopped``: the kernel process died; its description says why.
  :class:`KernelStopped`. marimo then closes the session.

Every other op (outputs, variables, executions, ...) says nothing about busy or idle.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kernel_status.mirror.events import (
    CellNotification,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
    read_cell_op,
)

__all__ = [
    "KERNEL_STOPPED_CAUSE",
    "SESSION_CLOSED_CAUSE",
    "Frame",
    "SessionTranslator",
    "Translation",
    "cell_notification",
    "parse_frame",
]

logger = logging.getLogger("kernel_status.contrib.marimo")

SESSION_CLOSED_CAUSE = "session closed in marimo"
KERNEL_STOPPED_CAUSE = "kernel stopped (reported by marimo)"
KERNEL_STOPPED_BANNER = "Kernel stopped"
RESTART_HINT = "Click Restart to start a fresh kernel."  # UI advice in marimo's banner
TICK = timedelta(microseconds=1)  # the mirror's timestamp resolution


@dataclass(frozen=True)
class Frame:
    op: str
    data: Mapping[str, Any]


def parse_frame(raw: str | bytes) -> Frame | None:
    """One marimo frame, or ``None`` if the text is not one."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    op, data = message.get("op"), message.get("data")
    if not isinstance(op, str) or not isinstance(data, dict):
        return None
    return Frame(op, data)


@dataclass
class Translation:
    """What some frames mean: events for the mirror, and what happened to the session."""

    events: list[KernelEvent] = field(default_factory=list)
    #: ``kernel-ready`` arrived: marimo attached the bridge, with these cells.
    attached: tuple[str, ...] | None = None
    #: marimo attached the bridge as a main consumer (not kiosk): it must leave at once.
    not_read_only: bool = False
    #: The kernel stopped (the events end with the stop).
    stopped: bool = False
    #: Frames that were not marimo JSON, or cell-ops that failed validation.
    malformed: int = 0


class SessionTranslator:
    """Turns the frames of one marimo session into events; state survives reconnections.

    ``received_at`` is when the frames arrived (the caller's clock), used for what marimo
    does not stamp: the attach (start) and the kernel-stopped banner.
    """

    def __init__(self, session_id: str, known_start: datetime | None = None) -> None:
        self.session_id = session_id
        #: The start this kernel was reported with by an earlier bridge process, if any.
        self.known_start = known_start
        self.started_at: datetime | None = None
        self.stopped = False
        # While replayed cell-ops are being re-stamped, the last stamp given.
        self._restamped_until: datetime | None = None

    def translate(self, frames: Iterable[Frame], received_at: datetime) -> Translation:
        result = Translation()
        for frame in frames:
            if self.stopped:
                break  # nothing after a stop belongs to this kernel
            self._one(frame, received_at, result)
        return result

    def translate_raw(self, raws: Iterable[str | bytes], received_at: datetime) -> Translation:
        frames: list[Frame] = []
        malformed = 0
        for raw in raws:
            frame = parse_frame(raw)
            if frame is None:
                malformed += 1
            else:
                frames.append(frame)
        result = self.translate(frames, received_at)
        result.malformed += malformed
        return result

    @property
    def reported_start(self) -> datetime | None:
        """The start this kernel is reported with, for a later bridge process; ``None``
        once it stopped."""
        return None if self.stopped else self.started_at or self.known_start

    def heartbeat(self, at: datetime) -> list[KernelEvent]:
        """A heartbeat while attached to the live kernel; nothing before the attach or after
        the stop."""
        if self.started_at is None or self.stopped:
            return []
        return [KernelHeartbeat(max(at, self.started_at))]

    def session_closed(self, at: datetime, cause: str = SESSION_CLOSED_CAUSE) -> list[KernelEvent]:
        """marimo no longer has the session: its kernel is gone. Once only."""
        if self.stopped:
            return []
        self.stopped = True
        return [KernelStopped(self._not_before_start(at), cause=cause)]

    # --- one frame ------------------------------------------------------------------------

    def _one(self, frame: Frame, received_at: datetime, result: Translation) -> None:
        if frame.op == "cell-op":
            self._cell_op(frame.data, result)
        elif frame.op == "kernel-ready":
            self._kernel_ready(frame.data, received_at, result)
        elif frame.op == "banner" and frame.data.get("title") == KERNEL_STOPPED_BANNER:
            cause = _stop_cause(str(frame.data.get("description") or ""))
            self.stopped = True
            result.stopped = True
            result.events.append(KernelStopped(self._not_before_start(received_at), cause=cause))
        elif frame.op == "kernel-startup-error":
            error = str(frame.data.get("error") or "").strip()
            self.stopped = True
            result.stopped = True
            cause = f"kernel startup failed: {error}" if error else "kernel startup failed"
            result.events.append(
                KernelStopped(self._not_before_start(received_at), cause=cause[:255])
            )

    def _kernel_ready(self, data: Mapping[str, Any], at: datetime, result: Translation) -> None:
        cell_ids = data.get("cell_ids")
        result.attached = tuple(str(c) for c in cell_ids) if isinstance(cell_ids, list) else ()
        if data.get("kiosk") is not True:
            result.not_read_only = True
            return
        if self.started_at is None:
            resumed = data.get("resumed") is not False  # false: marimo made a new kernel
            self.started_at = self.known_start if resumed and self.known_start else at
        # Again on a reconnection: the same stamp, so the mirror takes it as already applied.
        result.events.append(KernelStarted(self.started_at))
        result.events.append(KernelHeartbeat(max(at, self.started_at)))
        self._restamped_until = None

    def _cell_op(self, data: Mapping[str, Any], result: Translation) -> None:
        event = cell_notification(data)
        if event is None:
            logger.warning(
                "Session %r: ignored a malformed cell-op for cell %r",
                self.session_id,
                data.get("cell_id"),
            )
            result.malformed += 1
            return
        started = self.started_at
        if started is None:
            result.events.append(event)
            return
        restamped = self._restamped_until
        if event.timestamp < started or (restamped is not None and event.timestamp <= restamped):
            # Sent before the attach (marimo's replay): as of the attach, in arrival order.
            stamp = (restamped or started) + TICK
            self._restamped_until = stamp
            event = CellNotification(
                event.cell_id, stamp, status=event.status, stale_inputs=event.stale_inputs
            )
        result.events.append(event)

    def _not_before_start(self, at: datetime) -> datetime:
        # A stop older than the recorded start would be ignored by the mirror.
        floor = self._restamped_until or self.started_at
        return at if floor is None or at > floor else floor + TICK


def cell_notification(data: Mapping[str, Any]) -> CellNotification | None:
    """A ``cell-op``'s data as an event, or ``None`` if it is malformed.

    The rules of the ingestion endpoint's ``CellOpData``, read by the core's strict reader
    (the endpoint's own fast path) without a DRF serializer, which costs more than the rest
    of the bridge per frame. No clock guard: the bridge has no server clock to hold it to.
    """
    return read_cell_op(data)


def _stop_cause(description: str) -> str:
    cause = html.unescape(description).replace(RESTART_HINT, "").strip()
    return (cause or KERNEL_STOPPED_CAUSE)[:255]
