"""Settings of kernel_status, read live from ``django.conf.settings``.

Each property reads the setting on every access, so ``override_settings`` works in tests.
Bad values are reported by the system checks in :mod:`kernel_status.checks`.
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "DEFAULT_ACCESS_POLICY",
    "DEFAULT_LIVENESS_WINDOW",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_CLOCK_SKEW",
    "Settings",
    "conf",
]

from datetime import timedelta
from typing import Any

from django.conf import settings

DEFAULT_LIVENESS_WINDOW = timedelta(seconds=60)
DEFAULT_ACCESS_POLICY = "kernel_status.access.DefaultAccessPolicy"
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_CLOCK_SKEW = timedelta(seconds=300)


class Settings:
    @property
    def KERNEL_STATUS_LIVENESS_WINDOW(self) -> Any:
        """Raw setting: seconds (int or float), a ``timedelta``, or ``None`` to turn it off."""
        return getattr(settings, "KERNEL_STATUS_LIVENESS_WINDOW", DEFAULT_LIVENESS_WINDOW)

    @property
    def liveness_window(self) -> timedelta | None:
        """How long a running kernel may stay silent before it counts as stopped."""
        value = self.KERNEL_STATUS_LIVENESS_WINDOW
        if value is None or isinstance(value, timedelta):
            return value
        return timedelta(seconds=value)

    @property
    def KERNEL_STATUS_ACCESS_POLICY(self) -> str:
        """Dotted path of the :class:`~kernel_status.access.AccessPolicy` to use."""
        return str(getattr(settings, "KERNEL_STATUS_ACCESS_POLICY", DEFAULT_ACCESS_POLICY))

    @property
    def KERNEL_STATUS_MAX_BATCH_SIZE(self) -> int:
        """Most events one ingestion request may carry; more get 413."""
        return getattr(settings, "KERNEL_STATUS_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE)

    @property
    def KERNEL_STATUS_MAX_CLOCK_SKEW(self) -> Any:
        """Raw setting: seconds (int or float), a ``timedelta``, or ``None`` to turn it off."""
        return getattr(settings, "KERNEL_STATUS_MAX_CLOCK_SKEW", DEFAULT_MAX_CLOCK_SKEW)

    @property
    def max_clock_skew(self) -> timedelta | None:
        """How far ahead of the server clock an event's timestamp may be."""
        value = self.KERNEL_STATUS_MAX_CLOCK_SKEW
        if value is None or isinstance(value, timedelta):
            return value
        return timedelta(seconds=value)


conf = Settings()
