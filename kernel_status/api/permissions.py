"""DRF permission classes, reusable on a host platform's own session views."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission

from kernel_status.choices import AccessLevel
from kernel_status.conf import REPORT_PERMISSION
from kernel_status.exceptions import SessionNotFound
from kernel_status.queries.access import get_access_policy

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

    from kernel_status.models import Session


class IsActiveUser(BasePermission):
    """Allows access only to authenticated, active users."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        # Anonymous callers fail here, before any session is looked up; DRF answers 401.
        user = request.user
        return bool(user and user.is_authenticated and user.is_active)


class CanReportKernelEvents(IsActiveUser):
    """Allows access only to users (service accounts) with the report_kernel_events permission."""

    message = _("The kernel_status.report_kernel_events permission is required.")
    code = "report_permission_required"

    def has_permission(self, request: Request, view: APIView) -> bool:
        # Active superusers hold every permission, this one included.
        return super().has_permission(request, view) and request.user.has_perm(REPORT_PERMISSION)


class HasSessionEditAccess(IsActiveUser):
    """Allows access only to active users with edit access to the session."""

    message = _("Edit access to this session is required.")
    code = "edit_access_required"

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        level = self.get_access_level(request, obj)
        if level < AccessLevel.VIEW:
            # Like a queryset scoped with visible_to(): a 403 would say the session exists.
            raise SessionNotFound()
        return level >= AccessLevel.EDIT

    def get_access_level(self, request: Request, session: Session) -> int:
        # Sessions loaded through Session.objects.with_access_level() carry the answer already.
        level = getattr(session, "access_level", None)
        if level is None:
            level = get_access_policy().get_access_level(request.user, session)
        return int(level)
