"""The events that keep the mirror true, as the write API takes them.

Timestamps order everything: an event never overwrites what a newer one wrote. Events check
themselves when they are made (``ValueError``), so a bad one never reaches the database.
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "EXIT_CAUSE_MAX_LENGTH",
    "ApplyResult",
    "CellNotification",
    "ClockSkewError",
    "KernelEvent",
    "KernelHeartbeat",
    "KernelStarted",
    "KernelStopped",
    "from_epoch",
    "read_cell_op",
]

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from kernel_status.choices import CellRuntimeState
from kernel_status.conf import conf
from kernel_status.validators import (
    EXIT_CAUSE_MAX_LENGTH,
    EXIT_CODE_MAX,
    EXIT_CODE_MIN,
    cell_id_problem,
)


def from_epoch(seconds: float) -> datetime:
    """marimo's timestamps (``time.time()`` floats) as aware datetimes."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def _check_timestamp(timestamp: datetime) -> None:
    if not isinstance(timestamp, datetime) or timestamp.tzinfo is None:
        raise ValueError(f"timestamp must be an aware datetime, not {timestamp!r}")


@dataclass(frozen=True, slots=True)
class CellNotification:
    """marimo's ``cell-op``: ``None`` for status or stale_inputs keeps the stored value."""

    cell_id: str
    timestamp: datetime
    status: str | None = None
    stale_inputs: bool | None = None

    def __post_init__(self) -> None:
        problem = cell_id_problem(self.cell_id)
        if problem is not None:
            raise ValueError(f"cell_id {problem}: {self.cell_id!r}")
        if self.status is not None and self.status not in CellRuntimeState.values:
            raise ValueError(f"status must be one of {CellRuntimeState.values} or None")
        if self.stale_inputs is not None and not isinstance(self.stale_inputs, bool):
            raise ValueError("stale_inputs must be a bool or None")
        _check_timestamp(self.timestamp)


@dataclass(frozen=True, slots=True)
class KernelStarted:
    """A new kernel process is up. It has run nothing, so every cell becomes idle."""

    timestamp: datetime

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp)


@dataclass(frozen=True, slots=True)
class KernelHeartbeat:
    """The kernel process is still alive."""

    timestamp: datetime

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp)


@dataclass(frozen=True, slots=True)
class KernelStopped:
    """The kernel process exited (or was found dead)."""

    timestamp: datetime
    exit_code: int | None = None
    cause: str = ""

    def __post_init__(self) -> None:
        _check_timestamp(self.timestamp)
        if self.exit_code is not None and not EXIT_CODE_MIN <= self.exit_code <= EXIT_CODE_MAX:
            raise ValueError(f"exit_code must fit in 32 bits, not {self.exit_code}")
        if len(self.cause) > EXIT_CAUSE_MAX_LENGTH:
            raise ValueError(f"cause is longer than {EXIT_CAUSE_MAX_LENGTH} characters")


KernelEvent = CellNotification | KernelStarted | KernelHeartbeat | KernelStopped


class ClockSkewError(ValueError):
    """An event is stamped further ahead of the server clock than
    ``KERNEL_STATUS_MAX_CLOCK_SKEW`` allows. Nothing of its batch was written."""

    def __init__(self, index: int, timestamp: datetime, horizon: datetime) -> None:
        super().__init__(
            f"event {index} is stamped {timestamp.isoformat()}, later than "
            f"{horizon.isoformat()} (the server clock plus KERNEL_STATUS_MAX_CLOCK_SKEW)"
        )
        self.index = index
        self.timestamp = timestamp
        self.horizon = horizon


def clock_horizon() -> datetime | None:
    """The latest timestamp accepted now, or ``None`` when the clock guard is off."""
    skew = conf.max_clock_skew
    return None if skew is None else timezone.now() + skew


def check_clock_skew(events: Sequence[KernelEvent]) -> None:
    """Raise :class:`ClockSkewError` for the first event stamped too far ahead."""
    horizon = clock_horizon()
    if horizon is None:
        return
    for index, event in enumerate(events):
        if event.timestamp > horizon:
            raise ClockSkewError(index, event.timestamp, horizon)


@dataclass(slots=True)
class ApplyResult:
    """What a batch did: events applied, and events older than what was stored."""

    applied: int = 0
    ignored_older: int = 0


# --- marimo's cell-op data, read without DRF ----------------------------------------------

#: The bounds of an epoch timestamp on the wire (9999-12-31, the end of ``datetime``).
MIN_EPOCH_SECONDS = 0
MAX_EPOCH_SECONDS = 253402300799


def read_cell_op(
    data: Mapping[str, Any], horizon: datetime | None = None
) -> CellNotification | None:
    """The event of a ``cell-op``'s data, or ``None`` if it is not plainly valid.

    ``horizon``: the latest timestamp accepted (the server clock plus
    ``KERNEL_STATUS_MAX_CLOCK_SKEW``), or ``None`` for no limit. Other keys are ignored.
    """
    timestamp = data.get("timestamp")
    # JSON numbers only (not booleans), finite, within the serializer's bounds.
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return None
    if not MIN_EPOCH_SECONDS <= timestamp <= MAX_EPOCH_SECONDS or not math.isfinite(timestamp):
        return None
    cell_id, status, stale_inputs = (
        data.get("cell_id"),
        data.get("status"),
        data.get("stale_inputs"),
    )
    # The event checks the cell id's rule, the status's values and the flag's type itself.
    if not isinstance(cell_id, str) or not (status is None or isinstance(status, str)):
        return None
    try:
        # float(): the serializer's FloatField reads every number so.
        event = CellNotification(
            cell_id, from_epoch(float(timestamp)), status=status, stale_inputs=stale_inputs
        )
    except (ValueError, OverflowError, OSError):
        return None
    if horizon is not None and event.timestamp > horizon:
        return None
    return event
