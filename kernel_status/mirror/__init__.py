"""The write side: how kernel hosts keep the mirror true.

The public write API is importable from here (``from kernel_status import mirror``):
registering and closing sessions, kernel lifecycle reports and batches of events. Inside live
the event types with their rules (:mod:`~kernel_status.mirror.events`), the per-field
ordering rule (:mod:`~kernel_status.mirror.ordering`), the batch application
(:mod:`~kernel_status.mirror.batch`), its set-based SQL statements
(:mod:`~kernel_status.mirror.statements`), the wire format of a batch
(:mod:`~kernel_status.mirror.wire`) and the ingestion of a posted batch
(:mod:`~kernel_status.mirror.ingest`). It builds on the models and the bottom layer, never on
the HTTP layer (:mod:`kernel_status.api`). The guarantees a batch keeps (its invariant, the
per-field ordering, equal timestamps, the clock guard, last activity) are stated in
:mod:`kernel_status.mirror.batch` and in docs/mirror.md.
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

from typing import TYPE_CHECKING, Any

from kernel_status.mirror.events import ClockSkewError

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # The write API needs the models, so it loads on first use: the event types
    # (kernel_status.mirror.events, kernel_status.events) import before django.setup(), as
    # a bridge or a settings module may need them.
    if name in __all__:
        from kernel_status.mirror import writes

        return getattr(writes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
