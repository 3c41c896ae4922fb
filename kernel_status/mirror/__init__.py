"""The write side: how kernel hosts keep the mirror true.

The public write API is importable from here (``from kernel_status import mirror``):
registering and closing sessions, kernel lifecycle reports and batches of events. Inside live
the event types with their rules (:mod:`~kernel_status.mirror.events`), the per-field
ordering rule (:mod:`~kernel_status.mirror.ordering`), the batch application
(:mod:`~kernel_status.mirror.batch`), its set-based SQL statements
(:mod:`~kernel_status.mirror.statements`), the wire format of a batch
(:mod:`~kernel_status.mirror.wire`) and the ingestion of a posted batch
(:mod:`~kernel_status.mirror.ingest`). It builds on the models and the bottom layer, never on
the HTTP layer (:mod:`kernel_status.api`).
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "ClockSkewError",
    "SessionOwnerMismatch",
    "UnknownSession",
    "apply_events",
    "close_session",
    "delete_session",
    "kernel_heartbeat",
    "kernel_started",
    "kernel_stopped",
    "register_session",
    "reset_session",
]

from kernel_status.mirror.events import ClockSkewError
from kernel_status.mirror.writes import (
    CLOSED_CAUSE as CLOSED_CAUSE,  # importable as before; not a public name
)
from kernel_status.mirror.writes import (
    SessionOwnerMismatch,
    UnknownSession,
    apply_events,
    close_session,
    delete_session,
    kernel_heartbeat,
    kernel_started,
    kernel_stopped,
    register_session,
    reset_session,
)
