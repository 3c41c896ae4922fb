"""Sessions in each situation the admin must show, and what it must show for each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState, SessionState
from tests.utils import (
    cells,
)


@dataclass(frozen=True)
class Situation:
    """A session in one situation, and what the changelist must show for it."""

    kwargs: dict[str, Any]
    status: SessionState
    kernel_state: str
    owner: str = "owner"


# Session id -> situation. Ids share no substring with usernames, so searches are exact.
SITUATIONS: dict[str, Situation] = {
    "idle-no-cells": Situation({}, SessionState.IDLE, "running"),
    "idle-quiet-cells": Situation(
        {
            "cells": [
                *cells(Cell.IDLE, Cell.DISABLED_TRANSITIVELY),
                # Stale cells that are not queued or running do not make the kernel busy.
                *cells(Cell.IDLE, Cell.DISABLED_TRANSITIVELY, stale=True),
            ]
        },
        SessionState.IDLE,
        "running",
    ),
    "idle-recent-heartbeat": Situation(
        {"heartbeat_age": timedelta(seconds=20), "cells": cells(Cell.IDLE)},
        SessionState.IDLE,
        "running",
    ),
    "busy-queued": Situation(
        {"cells": cells(Cell.IDLE, Cell.QUEUED, Cell.DISABLED_TRANSITIVELY)},
        SessionState.RUNNING,
        "running",
    ),
    "busy-running": Situation(
        {"cells": cells(Cell.RUNNING, Cell.IDLE), "owner": "editor"},
        SessionState.RUNNING,
        "running",
        owner="editor",
    ),
    "down-stopped": Situation(
        {"kernel": ProcessState.STOPPED, "cells": cells(Cell.RUNNING, Cell.QUEUED)},
        SessionState.STOPPED,
        "stopped",
    ),
    "down-not-started": Situation(
        {"kernel": ProcessState.NOT_STARTED, "heartbeat_age": None, "cells": cells(Cell.QUEUED)},
        SessionState.STOPPED,
        "not started",
    ),
    "down-no-kernel-row": Situation(
        {"kernel": None, "cells": cells(Cell.RUNNING)}, SessionState.STOPPED, "not started"
    ),
    # Past the default 60 s liveness window: a running kernel that went silent is stopped.
    "down-silent": Situation(
        {"heartbeat_age": timedelta(minutes=5), "cells": cells(Cell.RUNNING)},
        SessionState.STOPPED,
        "running",
    ),
}
