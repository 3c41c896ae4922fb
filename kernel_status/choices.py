"""The vocabularies shared by the models, the API and the admin."""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "BUSY_CELL_STATES",
    "AccessLevel",
    "AccessRole",
    "CellRuntimeState",
    "ProcessState",
    "SessionState",
]

from django.db import models
from django.utils.translation import gettext_lazy as _


class ProcessState(models.TextChoices):
    """A kernel process's lifecycle, with marimo's ``ProcessState`` values."""

    NOT_STARTED = "not_started", _("not started")
    RUNNING = "running", _("running")
    STOPPED = "stopped", _("stopped")


class CellRuntimeState(models.TextChoices):
    """A cell's latest execution status, with marimo's runtime state values."""

    IDLE = "idle", _("idle")
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    DISABLED_TRANSITIVELY = "disabled-transitively", _("disabled transitively")


# A cell in one of these states makes its kernel busy, whatever its stale flag (as marimo).
BUSY_CELL_STATES: tuple[str, ...] = (CellRuntimeState.QUEUED, CellRuntimeState.RUNNING)


class SessionState(models.TextChoices):
    """Derived state of a session's kernel, as `GET /api/kernel/status` answers it."""

    IDLE = "idle", _("idle")
    RUNNING = "running", _("running")
    STOPPED = "stopped", _("stopped")


class AccessRole(models.TextChoices):
    """The role a grant gives a user on one session."""

    VIEW = "view", _("view")
    EDIT = "edit", _("edit")


class AccessLevel(models.IntegerChoices):
    """What a user may do with a session; ordered, so ``>=`` compares levels."""

    NONE = 0, _("no access")
    VIEW = 1, _("view")
    EDIT = 2, _("edit")
