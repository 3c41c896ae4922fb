"""The events that keep the mirror true, as the write API takes them.

Kept for its import path; they live in :mod:`kernel_status.mirror.events`.
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
]

from kernel_status.mirror.events import (
    ApplyResult,
    CellNotification,
    ClockSkewError,
    KernelEvent,
    KernelHeartbeat,
    KernelStarted,
    KernelStopped,
    from_epoch,
)
from kernel_status.validators import EXIT_CAUSE_MAX_LENGTH
