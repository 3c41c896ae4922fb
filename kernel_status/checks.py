"""System checks for kernel_status settings. Error ids are stable: never reuse one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register
from django.utils.module_loading import import_string

from kernel_status.conf import conf


@register(Tags.compatibility)
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    return [*_check_liveness_window(), *_check_access_policy(), *_check_max_batch_size()]


def _check_max_batch_size() -> list[CheckMessage]:
    value = conf.KERNEL_STATUS_MAX_BATCH_SIZE
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [
            Error(
                f"KERNEL_STATUS_MAX_BATCH_SIZE must be a positive integer; got {value!r}.",
                id="kernel_status.E005",
            )
        ]
    return []


def _check_liveness_window() -> list[CheckMessage]:
    value = conf.KERNEL_STATUS_LIVENESS_WINDOW
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        return [
            Error(
                "KERNEL_STATUS_LIVENESS_WINDOW must be a number of seconds, a timedelta, "
                f"or None; got {value!r}.",
                id="kernel_status.E001",
            )
        ]
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not seconds > 0:  # also catches NaN
        return [
            Error(
                f"KERNEL_STATUS_LIVENESS_WINDOW must be positive; got {value!r}.",
                hint="Set it to None to turn the liveness window off.",
                id="kernel_status.E002",
            )
        ]
    return []


def _check_access_policy() -> list[CheckMessage]:
    from kernel_status.access import AccessPolicy

    path = conf.KERNEL_STATUS_ACCESS_POLICY
    try:
        policy_class = import_string(path)
    except ImportError as exc:
        return [
            Error(
                f"KERNEL_STATUS_ACCESS_POLICY {path!r} cannot be imported: {exc}",
                id="kernel_status.E003",
            )
        ]
    if not (isinstance(policy_class, type) and issubclass(policy_class, AccessPolicy)):
        return [
            Error(
                f"KERNEL_STATUS_ACCESS_POLICY {path!r} is not a subclass of "
                "kernel_status.access.AccessPolicy.",
                id="kernel_status.E004",
            )
        ]
    return []
