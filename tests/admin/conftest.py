"""Fixtures of the admin tests: a logged-in superuser, and sessions in each situation."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from kernel_status.models import Session
from tests.admin.situations import SITUATIONS
from tests.utils import (
    MakeSession,
)


@pytest.fixture
def admin_client_(client: Client, users: dict[str, User]) -> Client:
    """The test client, logged in as the superuser."""
    client.force_login(users["superuser"])
    return client


@pytest.fixture
def situations(make_session: MakeSession, users: dict[str, User]) -> dict[str, Session]:
    """One session per entry of SITUATIONS, keyed by session id."""
    made = {}
    for session_id, situation in SITUATIONS.items():
        kwargs = dict(situation.kwargs)
        if "owner" in kwargs:
            kwargs["owner"] = users[kwargs["owner"]]
        made[session_id] = make_session(session_id, **kwargs)
    return made
