"""The demo command seeds idempotently, and its printed curl lines answer as printed."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shlex
import sys
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess
from tests.utils import get_status

pytestmark = pytest.mark.django_db


def run_demo(*args: str) -> str:
    out = io.StringIO()
    call_command("kernel_status_demo", *args, stdout=out)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    models: list[Any] = [Session, KernelProcess, CellStatus, SessionAccess]
    return {model.__name__: model.objects.count() for model in models}


def test_json_output_and_idempotence() -> None:
    first = json.loads(run_demo("--json"))
    counts = row_counts()
    second = json.loads(run_demo("--json"))
    assert first == second  # same tokens and ids: earlier curl lines keep working
    assert row_counts() == counts
    assert set(first) == {"users", "sessions"}
    assert set(first["users"]) == {"owner", "editor", "viewer", "stranger", "reporter"}
    assert set(first["sessions"]) == {"idle", "running", "stopped", "not_started"}


def test_each_session_has_its_state_for_the_editor() -> None:
    seeded = json.loads(run_demo("--json"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {seeded['users']['editor']}")
    states = {
        situation: client.get(
            "/api/kernel/status", headers={"Marimo-Session-Id": session_id}
        ).json()["state"]
        for situation, session_id in seeded["sessions"].items()
    }
    assert states == {
        "idle": "idle",
        "running": "running",
        "stopped": "stopped",
        "not_started": "stopped",
    }


def test_printed_curl_lines_answer_as_printed() -> None:
    lines = run_demo().splitlines()
    checked = 0
    for comment, command in itertools.pairwise(lines):
        expectation = re.match(r"\s*# expect (\d{3})(.*)", comment)
        if not expectation:
            continue
        argv = shlex.split(command)
        assert argv[:3] == ["curl", "-s", "-i"]
        pairs = list(zip(argv[3:-1:2], argv[4:-1:2], strict=True))
        assert {option for option, _ in pairs} <= {"-H", "-X", "-d"}, command
        options = dict(pairs)
        headers = dict(value.split(": ", 1) for option, value in pairs if option == "-H")
        url = argv[-1].removeprefix("http://127.0.0.1:8000")
        response = APIClient().generic(
            options.get("-X", "GET"),
            url,
            options.get("-d", ""),
            content_type=headers.pop("Content-Type", "application/octet-stream"),
            headers=headers,
        )
        assert response.status_code == int(expectation[1]), command
        body = re.search(r"(\{.*\})", expectation[2])
        if body:
            assert response.json() == json.loads(body[1]), command
        checked += 1
    # Each state, five errors, the reporter's POST and its effect on the running session.
    assert checked == 11
    assert Session.objects.with_state().get(session_id="demo-running").state == "idle"


def test_the_reporter_may_post_events_and_sees_no_session() -> None:
    seeded = json.loads(run_demo("--json"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {seeded['users']['reporter']}")
    assert get_status(client, "demo-running").status_code == 404


def test_the_json_hint_names_this_interpreter() -> None:
    hint = run_demo().splitlines()[-1]
    command = shlex.split(hint.removeprefix("Tokens as JSON: "))
    assert command[1:] == ["manage.py", "kernel_status_demo", "--json"]
    assert os.path.samefile(command[0], sys.executable)


def test_base_url_option_is_used() -> None:
    assert "http://127.0.0.1:8123/api/kernel/status" in run_demo(
        "--base-url", "http://127.0.0.1:8123"
    )
