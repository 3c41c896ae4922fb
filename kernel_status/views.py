"""``GET /api/kernel/status``: is this session's kernel busy right now?"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from kernel_status.exceptions import SessionNotFound
from kernel_status.headers import SESSION_ID_HEADER, get_session_id
from kernel_status.models import Session, SessionQuerySet
from kernel_status.permissions import HasSessionEditAccess
from kernel_status.serializers import ErrorSerializer, KernelStatusResponseSerializer


def _error(example_name: str, description: str, detail: str) -> OpenApiResponse:
    return OpenApiResponse(
        response=ErrorSerializer,
        description=description,
        examples=[OpenApiExample(example_name, value={"detail": detail})],
    )


class KernelStatusView(GenericAPIView[Session]):
    """Answer ``{"state": "running" | "idle" | "stopped"}`` for the session in the header.

    Order of checks: authentication (401), then the header (400), then one query that
    loads the session only if the caller may see it (404 otherwise, whether or not it
    exists), then edit access (403), then the answer (200).
    """

    permission_classes = [HasSessionEditAccess]
    serializer_class = KernelStatusResponseSerializer
    http_method_names = ["get"]
    pagination_class = None
    filter_backends = []

    def get_queryset(self) -> SessionQuerySet:
        return Session.objects.visible_to(self.request.user).with_status()

    def get_object(self) -> Session:
        session_id = get_session_id(self.request)
        # One query: access level and derived status come back as annotations.
        try:
            session = self.get_queryset().only("pk").get(session_id=session_id)
        except Session.DoesNotExist:
            raise SessionNotFound() from None
        self.check_object_permissions(self.request, session)
        return session

    @extend_schema(
        operation_id="kernel_status",
        summary="Is this session's kernel busy?",
        description=(
            "Derived state of the kernel of the session named by the `Marimo-Session-Id` "
            "header. Requires edit access to that session. Responses are never cached."
        ),
        tags=["kernel"],
        parameters=[
            OpenApiParameter(
                SESSION_ID_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="Id of the notebook session (1 to 128 characters, no control "
                "characters).",
            ),
        ],
        responses={
            200: OpenApiResponse(
                response=KernelStatusResponseSerializer,
                description="The kernel's state.",
                examples=[OpenApiExample("Running", value={"state": "running"})],
            ),
            400: _error(
                "MissingHeader",
                "Header missing, empty, too long or with control characters.",
                f"The {SESSION_ID_HEADER} header is required.",
            ),
            401: _error(
                "NotAuthenticated",
                "Not authenticated.",
                "Authentication credentials were not provided.",
            ),
            403: _error(
                "EditAccessRequired",
                "Authenticated, may view the session but not edit it.",
                "Edit access to this session is required.",
            ),
            404: _error(
                "SessionNotFound",
                "No such session, or the caller has no access to it.",
                "Session not found.",
            ),
            405: _error("MethodNotAllowed", "Method other than GET.", 'Method "POST" not allowed.'),
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # A status is stale the moment it is read; errors must not be cached either.
        response["Cache-Control"] = "no-store"
        return response
