"""The example project's URLs plus the benchmark floors.

- ``floor0``: a DRF view returning a constant body, no authentication;
- ``floor1``: the same body behind ``TokenAuthentication`` and ``IsAuthenticated``, which is
  what every status request pays before the app does anything of its own.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from project.urls import urlpatterns as project_urlpatterns

# The status endpoint's body for an idle session that saw no activity yet.
BODY = {"state": "idle", "last_activity": None}


class Floor0View(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(BODY)


class Floor1View(Floor0View):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]


urlpatterns = [
    path("bench/floor0", Floor0View.as_view()),
    path("bench/floor1", Floor1View.as_view()),
    *project_urlpatterns,
]
