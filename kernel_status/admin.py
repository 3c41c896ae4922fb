"""Admin for operators: sessions with their derived status, kernel and cells.

Mirror rows are written by the platform, so their fields are read-only here; only access
grants are editable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import django
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from kernel_status import mirror
from kernel_status.choices import SessionState
from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess

# The admin classes are generic only in django-stubs, not at run time.
if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Session]
    KernelInline = admin.StackedInline[KernelProcess, Session]
    CellInline = admin.TabularInline[CellStatus, Session]
    AccessInline = admin.TabularInline[SessionAccess, Session]
    AccessForm = forms.ModelForm[SessionAccess]
else:
    ModelAdmin = admin.ModelAdmin
    KernelInline = admin.StackedInline
    CellInline = AccessInline = admin.TabularInline
    AccessForm = forms.ModelForm


class DerivedStatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in SessionState.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in SessionState.values:
            # The changelist queryset is annotated by SessionAdmin.get_queryset.
            return queryset.filter(state=self.value())
        return queryset


class ReadOnlyInlineMixin:
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class KernelProcessInline(ReadOnlyInlineMixin, KernelInline):
    model = KernelProcess
    fields = readonly_fields = (
        "state",
        "started_at",
        "last_heartbeat_at",
        "stopped_at",
        "exit_code",
        "exit_cause",
    )


class CellStatusInline(ReadOnlyInlineMixin, CellInline):
    model = CellStatus
    fields = readonly_fields = ("cell_id", "status", "stale", "notified_at")
    ordering = ["cell_id"]


class GrantForm(AccessForm):
    """A grant row whose one-grant-per-user constraint is checked before saving."""

    def validate_unique(self) -> None:
        super().validate_unique()
        # Django 5.2 leaves constraints on an inline's foreign key out of form validation
        # (ticket #35676, fixed in Django 6.0), so a second grant for the same user reached
        # the database and failed there with IntegrityError. Check them here instead. Django
        # 6.0+ checks them in super().validate_unique(); checking again would repeat the error.
        if django.VERSION >= (6, 0):
            return
        exclude = {
            field.name
            for field in self.instance._meta.fields
            if field.name not in self.fields or field.name in self.errors
        }
        try:
            self.instance.validate_constraints(exclude=exclude)
        except ValidationError as error:
            self.add_error(None, error)


class GrantInline(AccessInline):
    model = SessionAccess
    form = GrantForm
    extra = 0
    verbose_name = _("access grant")
    verbose_name_plural = _("access grants")


class ExistingGrantInline(GrantInline):
    """Existing grants: change the role or delete the grant. The user is shown, not picked,
    so the page costs no query per grant."""

    fields = ["user", "role"]
    readonly_fields = ["user"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[SessionAccess]:
        return super().get_queryset(request).select_related("user")


class NewGrantInline(GrantInline):
    """Rows to add grants; existing grants are listed by :class:`ExistingGrantInline`."""

    fields = ["user", "role"]
    raw_id_fields = ["user"]
    verbose_name_plural = _("new access grants")
    extra = 1
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[SessionAccess]:
        return super().get_queryset(request).none()


@admin.register(Session)
class SessionAdmin(ModelAdmin):
    list_display = [
        "session_id",
        "owner",
        "notebook",
        "kernel_state",
        "status_badge",
        "last_heartbeat_at",
    ]
    list_filter = [DerivedStatusFilter, "kernel__state"]
    list_select_related = ["owner", "kernel"]
    readonly_fields = (
        "session_id",
        "owner",
        "notebook",
        "status_badge",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields
    inlines = [KernelProcessInline, CellStatusInline, ExistingGrantInline, NewGrantInline]
    ordering = ["-created_at"]
    actions = ["reset_mirror"]

    class Media:
        css = {"all": ["kernel_status/admin.css"]}

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # Works with custom user models whatever their username field is called.
        return ["session_id", f"owner__{get_user_model().USERNAME_FIELD}"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Session]:
        return super().get_queryset(request).with_state()  # type: ignore[attr-defined,no-any-return]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions are registered by the platform

    def has_delete_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        return False  # the platform closes sessions; deleting here would desync the mirror

    @admin.action(
        description=_("Reset mirror (stopped until the next kernel start)"),
        permissions=["change"],
    )
    def reset_mirror(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        """For a mirror stuck by events the write API cannot undo: forget its kernel and
        cells (see :func:`kernel_status.mirror.reset_session`)."""
        ids = list(queryset.values_list("session_id", flat=True))
        done = [session_id for session_id in ids if mirror.reset_session(session_id)]
        self.message_user(
            request,
            ngettext(
                "Reset the mirror of %(count)d session.",
                "Reset the mirror of %(count)d sessions.",
                len(done),
            )
            % {"count": len(done)},
            messages.SUCCESS,
        )

    @admin.display(description=_("kernel state"), ordering="kernel__state")
    def kernel_state(self, session: Session) -> str:
        kernel = getattr(session, "kernel", None)
        if kernel is None:
            return str(_("not started"))
        return str(kernel.get_state_display())

    @admin.display(description=_("status"), ordering="state")
    def status_badge(self, session: Session) -> SafeString:
        status = SessionState(session.state)  # type: ignore[attr-defined]
        return format_html(
            '<span class="kernel-status-badge kernel-status-{}">{}</span>',
            status.value,
            status.label,
        )

    @admin.display(description=_("last heartbeat"), ordering="kernel__last_heartbeat_at")
    def last_heartbeat_at(self, session: Session) -> Any:
        kernel = getattr(session, "kernel", None)
        return kernel.last_heartbeat_at if kernel is not None else None
