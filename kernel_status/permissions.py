"""DRF permission classes, reusable on a host platform's own session views.

Kept for its import path; the classes live in :mod:`kernel_status.api.permissions`.
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "REPORT_PERMISSION",
    "CanReportKernelEvents",
    "HasSessionEditAccess",
    "IsActiveUser",
]

from kernel_status.api.permissions import CanReportKernelEvents, HasSessionEditAccess, IsActiveUser
from kernel_status.conf import REPORT_PERMISSION
