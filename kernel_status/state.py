"""The one place where a session's kernel status is derived.

Kept for its import path; the expression lives in :mod:`kernel_status.queries.state`.
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "busy_cells_exist",
    "kernel_alive_q",
    "session_state_expression",
]

from kernel_status.queries.state import busy_cells_exist, kernel_alive_q, session_state_expression
