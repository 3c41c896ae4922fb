"""The access policy extension point and the reusable permission class."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.http import Http404
from django.test import override_settings
from django.urls import path
from rest_framework.generics import RetrieveAPIView
from rest_framework.serializers import ModelSerializer
from rest_framework.test import APIClient

from kernel_status.access import DefaultAccessPolicy, get_access_policy
from kernel_status.choices import AccessLevel
from kernel_status.exceptions import SessionNotFound
from kernel_status.models import Session
from kernel_status.permissions import HasSessionEditAccess
from tests.utils import MakeSession, NotebookPrefixPolicy, get_status


class SessionSerializer(ModelSerializer[Session]):
    class Meta:
        model = Session
        fields = ["session_id", "notebook"]


class HostSessionView(RetrieveAPIView[Session]):
    """A host platform's own view, reusing the permission without annotations."""

    permission_classes = [HasSessionEditAccess]
    serializer_class = SessionSerializer
    queryset = Session.objects.all()
    lookup_field = "session_id"

    def get_object(self) -> Session:
        # The permission answers SessionNotFound to strangers; say the same for no session.
        try:
            return super().get_object()
        except Http404:
            raise SessionNotFound() from None


urlpatterns = [path("host/sessions/<str:session_id>", HostSessionView.as_view())]


@pytest.fixture
def team_sessions(make_session: MakeSession, users: dict[str, User]) -> dict[str, Session]:
    team = make_session("team-1")
    team.notebook = "team/analysis.py"
    team.save()
    return {"team": team, "private": make_session("private-1")}


@override_settings(KERNEL_STATUS_ACCESS_POLICY="tests.utils.NotebookPrefixPolicy")
def test_host_policy_replaces_the_default(
    team_sessions: dict[str, Session], users: dict[str, User]
) -> None:
    assert isinstance(get_access_policy(), NotebookPrefixPolicy)
    staff = User.objects.create_user("staff", is_staff=True)
    answers: dict[str, list[int]] = {}
    for name, user in [
        ("staff", staff),
        ("stranger", users["stranger"]),
        ("owner", users["owner"]),
    ]:
        client = APIClient()
        client.force_authenticate(user)
        answers[name] = [
            get_status(client, session_id).status_code for session_id in ["team-1", "private-1"]
        ]
    # The owner's rights come from the default policy, which is replaced.
    assert answers == {"staff": [200, 404], "stranger": [403, 404], "owner": [403, 404]}


def test_default_policy_levels(team_sessions: dict[str, Session], users: dict[str, User]) -> None:
    policy = DefaultAccessPolicy()
    session = team_sessions["private"]
    levels = {name: policy.get_access_level(user, session) for name, user in users.items()}
    levels["anonymous"] = policy.get_access_level(AnonymousUser(), session)
    retired = User.objects.create_superuser("retired", is_active=False)
    levels["inactive superuser"] = policy.get_access_level(retired, session)
    assert levels == {
        "inactive superuser": AccessLevel.NONE,
        "owner": AccessLevel.EDIT,
        "editor": AccessLevel.EDIT,
        "viewer": AccessLevel.VIEW,
        "stranger": AccessLevel.NONE,
        "inactive": AccessLevel.NONE,
        "superuser": AccessLevel.EDIT,
        "anonymous": AccessLevel.NONE,
    }


def test_visible_to_lists_sessions_the_user_may_view(
    team_sessions: dict[str, Session], users: dict[str, User]
) -> None:
    def visible(name: str) -> set[str]:
        return set(Session.objects.visible_to(users[name]).values_list("session_id", flat=True))

    assert visible("viewer") == visible("editor") == {"team-1", "private-1"}
    assert visible("stranger") == set()


@override_settings(ROOT_URLCONF="tests.queries.test_access")
@pytest.mark.parametrize(
    ("username", "status"), [("owner", 200), ("editor", 200), ("viewer", 403), ("stranger", 404)]
)
def test_permission_class_on_a_host_view(
    team_sessions: dict[str, Session],
    users: dict[str, User],
    username: str,
    status: int,
    django_assert_num_queries: Any,
) -> None:
    client = APIClient()
    client.force_authenticate(users[username])
    # Without an access_level annotation, the permission costs one query of its own.
    with django_assert_num_queries(2):
        response = client.get("/host/sessions/private-1")
    assert response.status_code == status
    if status == 403:
        assert response.json() == {"detail": "Edit access to this session is required."}
    if status == 404:  # the same answer as for a session that does not exist
        missing = client.get("/host/sessions/no-such-session")
        assert (missing.status_code, missing.json()) == (404, response.json())


def test_permission_explains_itself() -> None:
    assert str(HasSessionEditAccess.message) == "Edit access to this session is required."
    assert HasSessionEditAccess.code == "edit_access_required"
