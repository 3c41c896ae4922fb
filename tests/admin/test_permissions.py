"""Who may use the session admin: no adding or deleting, staff and permissions required."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertRedirects

from kernel_status.models import Session
from tests.utils import (
    CHANGE_URL,
    CHANGELIST_URL,
)

# --- Permissions ---------------------------------------------------------------------------


def test_no_add_permission(admin_client_: Client) -> None:
    assert admin_client_.get(reverse("admin:kernel_status_session_add")).status_code == 403


def test_no_delete_permission(admin_client_: Client, situations: dict[str, Session]) -> None:
    session = situations["busy-queued"]
    url = reverse("admin:kernel_status_session_delete", args=[session.pk])

    assert admin_client_.get(url).status_code == 403
    assert admin_client_.post(url, {"post": "yes"}).status_code == 403
    changelist = admin_client_.post(
        reverse(CHANGELIST_URL),
        {"action": "delete_selected", "_selected_action": [str(session.pk)], "post": "yes"},
    )
    assert changelist.status_code in {200, 302}
    assert Session.objects.filter(pk=session.pk).exists()


UrlFor = Callable[[Session], str]


@pytest.mark.parametrize(
    "url_for",
    [
        lambda session: reverse(CHANGELIST_URL),
        lambda session: reverse(CHANGE_URL, args=[session.pk]),
    ],
    ids=["changelist", "change"],
)
@pytest.mark.parametrize("username", ["owner", None])
def test_non_staff_is_redirected_to_login(
    client: Client,
    users: dict[str, User],
    situations: dict[str, Session],
    url_for: UrlFor,
    username: str | None,
) -> None:
    if username is not None:
        client.force_login(users[username])
    url = url_for(situations["busy-queued"])

    response = client.get(url)

    assertRedirects(response, f"{reverse('admin:login')}?next={url}")


def test_staff_without_permissions_is_forbidden(
    client: Client, users: dict[str, User], situations: dict[str, Session]
) -> None:
    staff = users["stranger"]
    staff.is_staff = True
    staff.save()
    client.force_login(staff)

    assert client.get(reverse(CHANGELIST_URL)).status_code == 403
    assert client.get(reverse(CHANGE_URL, args=[situations["idle-no-cells"].pk])).status_code == (
        403
    )
