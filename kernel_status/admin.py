"""Admin for operators: sessions with their derived state, kernel process and cells.

Mirror rows are written by the platform, so their fields are read-only here; only access
grants are editable. A session's page lists its busy cells and counts the rest; all of its
cells are in the (paginated) cell status list, filtered by session.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import django
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Collate
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from kernel_status import mirror
from kernel_status.choices import BUSY_CELL_STATES, CellRuntimeState, SessionState
from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess

# The admin classes are generic only in django-stubs, not at run time.
if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Session]
    CellModelAdmin = admin.ModelAdmin[CellStatus]
    KernelInline = admin.StackedInline[KernelProcess, Session]
    CellInline = admin.TabularInline[CellStatus, Session]
    AccessInline = admin.TabularInline[SessionAccess, Session]
    AccessForm = forms.ModelForm[SessionAccess]
else:
    ModelAdmin = CellModelAdmin = admin.ModelAdmin
    KernelInline = admin.StackedInline
    CellInline = AccessInline = admin.TabularInline
    AccessForm = forms.ModelForm


def _binary_ids(model: type[Session]) -> bool:
    """MariaDB and MySQL store ids in a binary collation (migration 0006), with which LIKE is
    case-sensitive; the admin's search should not be, so it searches a case-insensitive
    view of the id there."""
    return connections[router.db_for_read(model)].vendor == "mysql"


def any_case(expression: F) -> Collate:
    return Collate(expression, "utf8mb4_unicode_ci")


class DerivedStateFilter(admin.SimpleListFilter):
    """The session's state as the API answers it (not its kernel process's own state)."""

    title = _("derived state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in SessionState.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in SessionState.values:
            # The changelist queryset is annotated by SessionAdmin.get_queryset.
            return queryset.filter(state=self.value())
        return queryset


class KernelProcessFilter(admin.ChoicesFieldListFilter):
    """``kernel__state``, titled apart from the derived state: "By kernel process"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = str(_("kernel process"))


class SessionFilter(admin.SimpleListFilter):
    """The cells of one session, linked from its page. It offers no list of sessions (there
    may be thousands): only the chosen one, to show and to clear."""

    title = _("session")
    parameter_name = "session"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        if not value or not value.isdigit():
            return []
        return [
            (value, session_id)
            for session_id in Session.objects.filter(pk=value).values_list("session_id", flat=True)
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(session_id=value)
        return queryset


# The session page's cell counts: busy states first.
COUNT_ORDER = [
    CellRuntimeState.RUNNING,
    CellRuntimeState.QUEUED,
    CellRuntimeState.IDLE,
    CellRuntimeState.DISABLED_TRANSITIVELY,
]


class StaleFlagMixin:
    @admin.display(description=_("stale"), ordering="stale")
    def stale_flag(self, cell: CellStatus) -> str:
        """Stale is information, not success: text rather than Django's green check."""
        return str(_("stale inputs")) if cell.stale else ""


def heartbeat_age(moment: datetime | None, now: datetime | None = None) -> SafeString | str:
    """ "12 s ago", with the exact time on hover: short, so the column is never clipped."""
    if moment is None:
        return "-"
    seconds = max(0, int(((now or timezone.now()) - moment).total_seconds()))
    for unit, size in [("d", 86400), ("h", 3600), ("min", 60)]:
        if seconds >= size:
            age = f"{seconds // size} {unit}"
            break
    else:
        age = f"{seconds} s"
    return format_html(
        '<time class="kernel-status-age" datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        date_format(timezone.localtime(moment), "DATETIME_FORMAT"),
        _("%(age)s ago") % {"age": age},
    )


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[KernelProcess]:
        return super().get_queryset(request).select_related("session")  # for its heading


class CellStatusInline(StaleFlagMixin, ReadOnlyInlineMixin, CellInline):
    """The busy cells only (queued or running): a session may have thousands of idle ones,
    which the cell status list pages through (see SessionAdmin.cell_counts)."""

    model = CellStatus
    fields = readonly_fields = ("cell_id", "status", "stale_flag", "notified_at")
    ordering = ["cell_id"]
    verbose_name_plural = _("busy cells")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CellStatus]:
        return super().get_queryset(request).filter(status__in=BUSY_CELL_STATES)


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
        # Both, for each row's label ("alice may edit s_abc") without a query per grant.
        return super().get_queryset(request).select_related("user", "session")


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
        "activity_age",
    ]
    list_filter = [DerivedStateFilter, ("kernel__state", KernelProcessFilter)]
    list_select_related = ["owner", "kernel"]
    readonly_fields = (
        "session_id",
        "owner",
        "notebook",
        "status_badge",
        "cell_counts",
        "last_activity",
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
        session_id = "session_id_any_case" if _binary_ids(Session) else "session_id"
        return [session_id, f"owner__{get_user_model().USERNAME_FIELD}"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Session]:
        queryset: QuerySet[Session] = super().get_queryset(request).with_state()  # type: ignore[attr-defined]
        if _binary_ids(Session):
            queryset = queryset.alias(session_id_any_case=any_case(F("session_id")))
        return queryset

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions are registered by the platform

    def has_delete_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        return False  # the platform closes sessions; deleting here would desync the mirror

    @admin.action(
        description=_("Reset mirror (stopped until the next kernel start)"),
        permissions=["change"],
    )
    def reset_mirror(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        """For a mirror stuck by events the write API cannot undo: forget its kernel,
        cells and last activity (see :func:`kernel_status.mirror.reset_session`)."""
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

    @admin.display(description=_("kernel process"), ordering="kernel__state")
    def kernel_state(self, session: Session) -> str:
        kernel = getattr(session, "kernel", None)
        if kernel is None:
            return str(_("not started"))
        return str(kernel.get_state_display())

    @admin.display(description=_("derived state"), ordering="state")
    def status_badge(self, session: Session) -> SafeString:
        status = SessionState(session.state)  # type: ignore[attr-defined]
        return format_html(
            '<span class="kernel-status-badge kernel-status-{}">{}</span>',
            status.value,
            status.label,
        )

    @admin.display(description=_("last heartbeat"), ordering="kernel__last_heartbeat_at")
    def last_heartbeat_at(self, session: Session) -> SafeString | str:
        kernel = getattr(session, "kernel", None)
        return heartbeat_age(kernel.last_heartbeat_at if kernel is not None else None)

    @admin.display(description=_("last activity"), ordering="last_activity")
    def activity_age(self, session: Session) -> SafeString | str:
        return heartbeat_age(session.last_activity)

    @admin.display(description=_("cells"))
    def cell_counts(self, session: Session) -> SafeString | str:
        """Counts by status in one query, and a link to all of the session's cells."""
        rows = (
            CellStatus.objects.filter(session=session)
            .values_list("status")
            .annotate(cells=Count("pk"), stale=Count("pk", filter=Q(stale=True)))
        )
        counts = {status: (cells, stale) for status, cells, stale in rows}
        total = sum(cells for cells, _stale in counts.values())
        if not total:
            return str(_("no cells"))
        parts = format_html_join(
            ", ",
            "{} {}",
            (
                (counts[status][0], CellRuntimeState(status).label)
                for status in COUNT_ORDER
                if status in counts
            ),
        )
        stale = sum(stale for _cells, stale in counts.values())
        url = reverse("admin:kernel_status_cellstatus_changelist")
        return format_html(
            '{} ({}{}) <a href="{}?{}={}">{}</a>',
            total,
            parts,
            format_html("; {} {}", stale, _("with stale inputs")) if stale else "",
            url,
            SessionFilter.parameter_name,
            session.pk,
            _("all cells"),
        )


@admin.register(CellStatus)
class CellStatusAdmin(StaleFlagMixin, CellModelAdmin):
    """Every cell, read-only and paginated; a session's page links here filtered to it."""

    list_display = ["cell_id", "session", "status", "stale_flag", "notified_at"]
    list_filter = [SessionFilter, "status", "stale"]
    list_select_related = ["session"]
    list_per_page = 100
    search_fields = ["cell_id"]
    ordering = ["session", "cell_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CellStatus | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CellStatus | None = None) -> bool:
        return False
