"""The events that keep the mirror true, as the write API takes them.

Timestamps order everything: an event never overwrites what a newer one wrote. Events check
themselves when they are made (``ValueError``), so a bad one never reaches the database.
"""

from __future__ import annotations

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


# --- the cell-op rules, written once ---------------------------------------------------------
# CellNotification, read_cell_op (the fast path) and the wire format's fields
# (kernel_status.mirror.wire) all decide with these. Each answers None when the value is fine,
# else the DRF error code of the wire field that refuses it (its message is DRF's).

#: The bounds of an epoch timestamp on the wire (9999-12-31, the end of ``datetime``).
MIN_EPOCH_SECONDS = 0
MAX_EPOCH_SECONDS = 253402300799


def timestamp_problem(value: object) -> str | None:
    """A wire timestamp: a JSON number of seconds since the epoch (not a boolean), finite,
    from ``MIN_EPOCH_SECONDS`` to ``MAX_EPOCH_SECONDS``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "invalid"
    try:
        seconds = float(value)  # DRF's FloatField reads every number so
    except OverflowError:
        return "overflow"
    if not math.isfinite(seconds):
        return "invalid"
    if seconds < MIN_EPOCH_SECONDS:
        return "min_value"
    if seconds > MAX_EPOCH_SECONDS:
        return "max_value"
    return None


def status_problem(value: object) -> str | None:
    """A cell's status: one of :class:`CellRuntimeState`'s values, or ``None`` (keep)."""
    if value is None or (isinstance(value, str) and value in CellRuntimeState.values):
        return None
    return "invalid_choice"


def stale_inputs_problem(value: object) -> str | None:
    """A cell's stale flag: JSON ``true`` or ``false``, or ``None`` (keep)."""
    return None if value is None or isinstance(value, bool) else "invalid"


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
        if status_problem(self.status) is not None:
            raise ValueError(f"status must be one of {CellRuntimeState.values} or None")
        if stale_inputs_problem(self.stale_inputs) is not None:
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
def read_cell_op(
    data: Mapping[str, Any], horizon: datetime | None = None
) -> CellNotification | None:
    """The event of a ``cell-op``'s data, or ``None`` if it is not plainly valid.

    One strict reader for the two places that take cell-ops in bulk: the ingestion endpoint's
    fast path (:mod:`kernel_status.mirror.ingest`) and the marimo bridge. It applies the rules
    above, as the wire format does, and reads the data into the same event; anything else is
    ``None``, for the caller to reject or to hand to the serializer, which says why.

    ``horizon``: the latest timestamp accepted (the server clock plus
    ``KERNEL_STATUS_MAX_CLOCK_SKEW``), or ``None`` for no limit. Other keys are ignored.
    """
    timestamp = data.get("timestamp")
    if timestamp_problem(timestamp) is not None:
        return None
    assert isinstance(timestamp, int | float)  # for the type checker: the rule says a number
    cell_id, status, stale_inputs = (
        data.get("cell_id"),
        data.get("status"),
        data.get("stale_inputs"),
    )
    # The event applies the cell id's, the status's and the flag's rules itself.
    if not isinstance(cell_id, str):
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
