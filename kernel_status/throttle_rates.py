"""The throttle scopes of kernel_status, their default rates, and what a valid rate is.

Kept for its import path; the names live in :mod:`kernel_status.conf`. Safe to import from a
settings module (``NO_THROTTLES``).
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "DEFAULT_RATES",
    "EVENTS_SCOPE",
    "FAILED_AUTH_SCOPE",
    "NO_THROTTLES",
    "SESSIONS_SCOPE",
    "STATUS_SCOPE",
    "parse_rate",
]

from kernel_status.conf import (
    DEFAULT_RATES,
    EVENTS_SCOPE,
    FAILED_AUTH_SCOPE,
    NO_THROTTLES,
    SESSIONS_SCOPE,
    STATUS_SCOPE,
    parse_rate,
)
