"""How the mirror orders two values of one field: by timestamp, then by a fixed tie rank.

Every mirrored field (a cell's status, a cell's stale flag, a kernel's exit code and exit
cause) keeps the timestamp of the notification that set it. A notification sets a field
when its ``(timestamp, rank of its value)`` is greater than the stored pair, so the stored
value is always the greatest over every notification seen, and the result does not depend on
the order or batching they arrived in. A stored timestamp of ``None`` means "not set by a
notification of the current kernel process" and loses to any notification.

Equal timestamps (the same microsecond) are decided by the rank of the value:

- status: ``queued`` < ``running`` < ``disabled-transitively`` < ``idle``. The value that
  ends a run wins, so a tie can never pin a cell busy: a busy status is always followed by a
  later notification, an idle one may be the last;
- stale flag: ``True`` < ``False`` (marimo clears the flag after it queues the cell);
- exit code: ``None`` < any code, codes by value; exit cause: by text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, TypeVar

from kernel_status.choices import CellRuntimeState

STATUS_TIE_RANK: Final[dict[str, int]] = {
    CellRuntimeState.QUEUED: 0,
    CellRuntimeState.RUNNING: 1,
    CellRuntimeState.DISABLED_TRANSITIVELY: 2,
    CellRuntimeState.IDLE: 3,
}


Rank = TypeVar("Rank", int, str)


def stale_tie_rank(stale: bool) -> int:
    return 0 if stale else 1


def is_newer(
    timestamp: datetime, rank: Rank, stored_at: datetime | None, stored_rank: Rank
) -> bool:
    """Whether a value stamped ``timestamp`` replaces one stored at ``stored_at``."""
    if stored_at is None or timestamp > stored_at:
        return True
    return timestamp == stored_at and rank > stored_rank
