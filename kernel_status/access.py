"""Who may do what with a session: the pluggable access policy.

Kept for its import path, which ``KERNEL_STATUS_ACCESS_POLICY`` names by default; the policy
lives in :mod:`kernel_status.queries.access`.
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "AccessPolicy",
    "DefaultAccessPolicy",
    "TokenUser",
    "get_access_policy",
]

from kernel_status.queries.access import (
    AccessPolicy,
    DefaultAccessPolicy,
    TokenUser,
    get_access_policy,
)
