"""The mirror: sessions, their kernel process, their cells' latest status, and access grants.

The hosting platform writes these rows; kernel_status only reads them to answer
``GET /api/kernel/status``. The queries that read them (the state and access expressions
behind ``SessionQuerySet``) are in :mod:`kernel_status.queries`, which knows these models
only through the app registry, so that imports run one way.
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "CellStatus",
    "KernelProcess",
    "Session",
    "SessionAccess",
    "SessionQuerySet",
]

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from kernel_status.choices import (
    BUSY_CELL_STATES,
    AccessLevel,
    AccessRole,
    CellRuntimeState,
    ProcessState,
)
from kernel_status.queries.access import get_access_policy
from kernel_status.queries.state import session_state_expression
from kernel_status.validators import (
    CELL_ID_MAX_LENGTH,
    EXIT_CAUSE_MAX_LENGTH,
    SESSION_ID_MAX_LENGTH,
    validate_session_id,
)

if TYPE_CHECKING:
    from datetime import datetime

    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor
    from django.db.backends.ddl_references import Statement


class SessionQuerySet(models.QuerySet["Session"]):
    def with_state(self, *, now: datetime | None = None) -> SessionQuerySet:
        """Annotate ``state``: the derived :class:`~kernel_status.choices.SessionState`."""
        return self.annotate(state=session_state_expression(now=now))

    def with_access_level(self, user: AbstractBaseUser | AnonymousUser) -> SessionQuerySet:
        """Annotate ``access_level``: the user's :class:`~kernel_status.choices.AccessLevel`."""
        return self.annotate(access_level=get_access_policy().access_level_expression(user))

    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> SessionQuerySet:
        """Sessions the user may at least view, annotated with ``access_level``."""
        return self.with_access_level(user).filter(access_level__gte=AccessLevel.VIEW)  # type: ignore[misc]


class Session(models.Model):
    """One notebook session (a browser tab), as the platform knows it."""

    session_id = models.CharField(
        _("session id"),
        max_length=SESSION_ID_MAX_LENGTH,
        unique=True,
        validators=[validate_session_id],
        help_text=_("The id clients send in the Marimo-Session-Id header."),
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kernel_sessions",
        verbose_name=_("owner"),
    )
    notebook = models.CharField(_("notebook"), max_length=1024)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    last_activity = models.DateTimeField(
        _("last activity"),
        null=True,
        blank=True,
        help_text=_(
            "The latest timestamp of a kernel start or of a cell notification with a status "
            "(a cell queued, starting to run or finishing) of the current kernel process. "
            "Heartbeats, stops, status-less notifications and reads never change it."
        ),
    )

    objects = SessionQuerySet.as_manager()

    class Meta:
        verbose_name = _("notebook session")
        verbose_name_plural = _("notebook sessions")
        permissions = [
            # Granted to the service accounts of kernel hosts; edit access does not imply it.
            ("report_kernel_events", _("Can report kernel and cell events of any session")),
            # Granted to cullers and dashboards: GET /api/kernel/sessions lists every session.
            ("view_all_sessions", _("Can list every session and its state")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(session_id=""), name="kernel_status_session_id_not_empty"
            ),
        ]
        indexes = [
            # The idle_for rule of the listing and the culler: "last activity before the
            # cutoff, or none and registered before it" is two ranges of this one index, so
            # its cost follows the quiet sessions, not all of them.
            models.Index(fields=["last_activity", "created_at"], name="kernel_status_quiet_since"),
        ]

    def __str__(self) -> str:
        return self.session_id


class KernelProcess(models.Model):
    """The kernel process of a session. No row means the kernel was never started."""

    session = models.OneToOneField(
        Session,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="kernel",
        verbose_name=_("session"),
    )
    state = models.CharField(
        _("state"), max_length=16, choices=ProcessState.choices, default=ProcessState.NOT_STARTED
    )
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(_("last heartbeat at"), null=True, blank=True)
    stopped_at = models.DateTimeField(_("stopped at"), null=True, blank=True)
    exit_code = models.IntegerField(_("exit code"), null=True, blank=True)
    exit_cause = models.CharField(_("exit cause"), max_length=EXIT_CAUSE_MAX_LENGTH, blank=True)
    # When the stop that reported exit_code / exit_cause happened: each field keeps its own
    # order, so stops of one process arriving in any order leave the same report.
    exit_code_at = models.DateTimeField(_("exit code reported at"), null=True, blank=True)
    exit_cause_at = models.DateTimeField(_("exit cause reported at"), null=True, blank=True)

    class Meta:
        verbose_name = _("kernel process")
        verbose_name_plural = _("kernel processes")
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=ProcessState.values), name="kernel_status_kernel_state_valid"
            ),
        ]

    def __str__(self) -> str:
        # Read as "Kernel process: s_abc (running)" in the admin; the key is the session.
        return f"{self.session.session_id} ({self.get_state_display()})"


class BusyCellsIndex(models.Index):
    """``kernel_status_busy_cells``: where "is any cell of this session busy?" is answered.

    Partial (only busy cells, on ``session``) where the database has partial indexes:
    PostgreSQL and SQLite. MariaDB and MySQL have none (Django would drop the condition and
    leave an index on ``session`` alone, through which the probe reads every cell of the
    session), so there it is on ``(session, status)``: the probe reads the index range of the
    busy statuses only. One index, chosen when it is created, so that the migrations' state is
    the same on every database.
    """

    def __init__(self, *, name: str = "kernel_status_busy_cells") -> None:
        super().__init__(fields=["session"], name=name)

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        return "kernel_status.models.BusyCellsIndex", (), {"name": self.name}

    def create_sql(
        self,
        model: type[models.Model],
        schema_editor: BaseDatabaseSchemaEditor,
        using: str = "",
        **kwargs: Any,
    ) -> Statement:
        if schema_editor.connection.features.supports_partial_indexes:
            index = models.Index(
                fields=["session"], condition=Q(status__in=BUSY_CELL_STATES), name=self.name
            )
        else:
            index = models.Index(fields=["session", "status"], name=self.name)
        return index.create_sql(model, schema_editor, using, **kwargs)


class CellStatus(models.Model):
    """The latest execution status of one cell of a session."""

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="cells", verbose_name=_("session")
    )
    cell_id = models.CharField(_("cell id"), max_length=CELL_ID_MAX_LENGTH)
    status = models.CharField(
        _("status"), max_length=32, choices=CellRuntimeState.choices, default=CellRuntimeState.IDLE
    )
    stale = models.BooleanField(
        _("stale"), default=False, help_text=_("The cell's inputs changed since it last ran.")
    )
    notified_at = models.DateTimeField(
        _("notified at"), help_text=_("Timestamp of the newest notification seen for this cell.")
    )
    # Each field is ordered by the notification that set it (see kernel_status.mirror). NULL:
    # not set by a notification of the current kernel process, so any newer one replaces it.
    status_at = models.DateTimeField(
        _("status at"),
        null=True,
        blank=True,
        help_text=_("Timestamp of the notification this status came from."),
    )
    stale_at = models.DateTimeField(
        _("stale at"),
        null=True,
        blank=True,
        help_text=_("Timestamp of the notification this stale flag came from."),
    )

    class Meta:
        verbose_name = _("cell status")
        verbose_name_plural = _("cell statuses")
        constraints = [
            models.UniqueConstraint(
                fields=["session", "cell_id"], name="kernel_status_cell_unique_per_session"
            ),
            models.CheckConstraint(
                condition=Q(status__in=CellRuntimeState.values),
                name="kernel_status_cell_status_valid",
            ),
        ]
        indexes = [
            # Holds only busy cells (or, on MySQL, sorts them together), so "is any cell
            # busy?" is one small index probe however many idle cells the session has. Stale
            # cells count: marimo queues a stale cell first and clears its flag afterwards.
            BusyCellsIndex(),
        ]

    def __str__(self) -> str:
        return f"{self.cell_id}: {self.status}"


class SessionAccess(models.Model):
    """A grant of view or edit access on one session to one user (besides its owner)."""

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="grants", verbose_name=_("session")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kernel_session_grants",
        verbose_name=_("user"),
    )
    role = models.CharField(_("role"), max_length=8, choices=AccessRole.choices)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("session access grant")
        verbose_name_plural = _("session access grants")
        constraints = [
            models.UniqueConstraint(
                fields=["session", "user"], name="kernel_status_one_grant_per_user"
            ),
            models.CheckConstraint(
                condition=Q(role__in=AccessRole.values), name="kernel_status_role_valid"
            ),
        ]

    def __str__(self) -> str:
        # "alice may edit s_abc": the names an operator knows, not primary keys.
        return f"{self.user} may {self.get_role_display()} {self.session.session_id}"


class Change(models.Model):
    """One committed write that may have changed answers: the change log behind blocking
    reads and change streams (:mod:`kernel_status.mirror.changes` writes it).

    Other server processes read its newest id to learn of writes (one index read on the
    primary key), and streams replay it for ``Last-Event-ID``. ``session_pk`` is not a foreign
    key, so that a deleted session's change stays; ``None`` means "many sessions changed".
    Old rows are pruned as new ones are written.
    """

    id = models.BigAutoField(primary_key=True)
    session_pk = models.BigIntegerField(_("session primary key"), null=True, blank=True)
    at = models.DateTimeField(_("at"))
    # Who may see the session changed (a grant, the owner, a deletion), not only its state.
    access = models.BooleanField(_("access changed"), default=False)

    class Meta:
        verbose_name = _("change")
        verbose_name_plural = _("changes")

    def __str__(self) -> str:
        return f"change {self.pk} of session {self.session_pk or 'many'}"
