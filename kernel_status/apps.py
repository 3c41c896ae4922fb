from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KernelStatusConfig(AppConfig):
    name = "kernel_status"
    verbose_name = _("Kernel status")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks and the drf-spectacular extensions.
        from kernel_status import checks  # noqa: F401
        from kernel_status.api.openapi import extensions  # noqa: F401
        from kernel_status.live import hub
        from kernel_status.mirror.changes import connect_model_signals

        # Writes made with the ORM (grants, owners) tell watchers too; the hub hears this
        # process's commits.
        connect_model_signals()
        hub.connect()
