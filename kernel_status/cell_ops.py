"""marimo's ``cell-op`` data read straight into a :class:`CellNotification`, without DRF.

One strict reader for the two places that take cell-ops in bulk: the ingestion endpoint's
fast path (:mod:`kernel_status.ingest`) and the marimo bridge. It accepts a subset of what
``CellOpDataSerializer`` accepts, and reads it into the same event; anything else is
``None``, for the caller to reject or to hand to the serializer, which says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kernel_status.events import CellNotification, from_epoch

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
