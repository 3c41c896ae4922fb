"""The events that keep the mirror true, as the write API takes them.

Timestamps order everything: an event never overwrites what a newer one wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def from_epoch(seconds: float) -> datetime:
    """marimo's timestamps (``time.time()`` floats) as aware datetimes."""
    return datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(frozen=True, slots=True)
class CellNotification:
    """marimo's ``cell-op``: ``None`` for status or stale_inputs keeps the stored value."""

    cell_id: str
    timestamp: datetime
    status: str | None = None
    stale_inputs: bool | None = None


@dataclass(frozen=True, slots=True)
class KernelStarted:
    """A new kernel process is up. It has run nothing, so every cell becomes idle."""

    timestamp: datetime


@dataclass(frozen=True, slots=True)
class KernelHeartbeat:
    """The kernel process is still alive."""

    timestamp: datetime


@dataclass(frozen=True, slots=True)
class KernelStopped:
    """The kernel process exited (or was found dead)."""

    timestamp: datetime
    exit_code: int | None = None
    cause: str = ""


KernelEvent = CellNotification | KernelStarted | KernelHeartbeat | KernelStopped


@dataclass(slots=True)
class ApplyResult:
    """What a batch did: events applied, events older than what was stored, unhandled ops."""

    applied: int = 0
    ignored_older: int = 0
    ignored_ops: int = 0
