"""Seed the example project with users, tokens and one session in each situation.

Idempotent: running it again resets the demo rows to the same situations and keeps the
users' tokens, so curl lines printed earlier keep working.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from kernel_status.choices import AccessRole, CellRuntimeState, ProcessState
from kernel_status.events import from_epoch
from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess

USERS = ["owner", "editor", "viewer", "stranger", "reporter"]
# A kernel host's service account: it may post events, and has no access to any session.
REPORTER = "reporter"
OPERATOR = "admin"
# Cells per session, as (cell id, status, stale).
SESSIONS: dict[str, dict[str, Any]] = {
    "idle": {
        "kernel": ProcessState.RUNNING,
        "cells": [
            ("imports", CellRuntimeState.IDLE, False),
            ("plot", CellRuntimeState.DISABLED_TRANSITIVELY, False),
            ("table", CellRuntimeState.IDLE, True),
        ],
    },
    "running": {
        "kernel": ProcessState.RUNNING,
        "cells": [
            ("imports", CellRuntimeState.IDLE, False),
            ("train", CellRuntimeState.RUNNING, False),
            ("report", CellRuntimeState.QUEUED, True),  # stale and queued: busy, as marimo
        ],
    },
    "stopped": {
        "kernel": ProcessState.STOPPED,
        "cells": [("imports", CellRuntimeState.IDLE, False)],
    },
    "not_started": {"kernel": ProcessState.NOT_STARTED, "cells": []},
}


class Command(BaseCommand):
    help = "Seed demo users (with API tokens) and sessions, and print curl lines to try them."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print tokens and ids as JSON.")
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Server URL for the curl lines."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            self.seed_operator()
            tokens = {name: self.seed_user(name) for name in USERS}
            self.seed_reporter()
            session_ids = {situation: self.seed_session(situation) for situation in SESSIONS}
        # The POST line's cell notifications must be newer than the seeded ones to apply.
        report_at = round(timezone.now().timestamp() + 1, 3)
        if options["json"]:
            self.stdout.write(json.dumps({"users": tokens, "sessions": session_ids}, indent=2))
            return
        self.print_curl_lines(options["base_url"].rstrip("/"), tokens, session_ids, report_at)

    def seed_user(self, username: str) -> str:
        user_model = get_user_model()
        lookup: dict[str, Any] = {user_model.USERNAME_FIELD: username}
        user, _ = user_model._default_manager.get_or_create(**lookup)
        if not user.has_usable_password():
            user.set_password(username)  # demo only: the password is the username
            user.save(update_fields=["password"])
        token, _ = Token.objects.get_or_create(user=user)
        return str(token.key)

    def seed_reporter(self) -> None:
        user_model = get_user_model()
        reporter = user_model._default_manager.get(**{user_model.USERNAME_FIELD: REPORTER})
        reporter.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="kernel_status", codename="report_kernel_events"
            )
        )

    def seed_operator(self) -> None:
        """A superuser to browse the admin with (demo only: password "admin")."""
        user_model = get_user_model()
        lookup: dict[str, Any] = {user_model.USERNAME_FIELD: OPERATOR}
        if not user_model._default_manager.filter(**lookup).exists():
            user_model._default_manager.create_superuser(**lookup, email="", password=OPERATOR)

    def seed_session(self, situation: str) -> str:
        spec = SESSIONS[situation]
        user_model = get_user_model()
        users = {
            name: user_model._default_manager.get(**{user_model.USERNAME_FIELD: name})
            for name in USERS
        }
        session_id = f"demo-{situation.replace('_', '-')}"
        session, _ = Session.objects.update_or_create(
            session_id=session_id,
            defaults={"owner": users["owner"], "notebook": f"notebooks/{situation}.py"},
        )
        session.full_clean()
        now = timezone.now()
        kernel_state = spec["kernel"]
        KernelProcess.objects.update_or_create(
            session=session,
            defaults={
                "state": kernel_state,
                "started_at": None if kernel_state == ProcessState.NOT_STARTED else now,
                "last_heartbeat_at": None if kernel_state == ProcessState.NOT_STARTED else now,
                "stopped_at": now if kernel_state == ProcessState.STOPPED else None,
                "exit_code": 137 if kernel_state == ProcessState.STOPPED else None,
                "exit_cause": "killed" if kernel_state == ProcessState.STOPPED else "",
            },
        )
        session.cells.all().delete()
        CellStatus.objects.bulk_create(
            CellStatus(
                session=session, cell_id=cell_id, status=status, stale=stale, notified_at=now
            )
            for cell_id, status, stale in spec["cells"]
        )
        for name, role in [("editor", AccessRole.EDIT), ("viewer", AccessRole.VIEW)]:
            SessionAccess.objects.update_or_create(
                session=session, user=users[name], defaults={"role": role}
            )
        SessionAccess.objects.filter(session=session, user=users["stranger"]).delete()
        return session_id

    def print_curl_lines(
        self, base_url: str, tokens: dict[str, str], session_ids: dict[str, str], report_at: float
    ) -> None:
        url = f"{base_url}/api/kernel/status"

        def curl(token: str, session_id: str | None) -> str:
            header = f" -H 'Marimo-Session-Id: {session_id}'" if session_id is not None else ""
            auth = f" -H 'Authorization: Token {token}'" if token else ""
            return f"curl -s -i{auth}{header} {url}"

        self.stdout.write("Demo users (password = username): " + ", ".join(USERS))
        self.stdout.write("")
        self.stdout.write("As the editor, each session's state:")
        for situation, session_id in session_ids.items():
            expected = "stopped" if situation == "not_started" else situation
            # Seeded rows, not events through the write API: no activity is recorded.
            body = f'{{"state": "{expected}", "last_activity": null}}'
            self.stdout.write(f"  # expect 200 {body}")
            self.stdout.write(f"  {curl(tokens['editor'], session_id)}")
        self.stdout.write("")
        self.stdout.write("Errors:")
        running = session_ids["running"]
        for comment, line in [
            ("400: header missing", curl(tokens["editor"], None)),
            ("401: not authenticated", curl("", running)),
            ("403: the viewer may not edit", curl(tokens["viewer"], running)),
            ("404: the stranger has no access", curl(tokens["stranger"], running)),
            ("404: no such session", curl(tokens["editor"], "no-such-session")),
        ]:
            self.stdout.write(f"  # expect {comment}")
            self.stdout.write(f"  {line}")
        self.stdout.write("")
        self.stdout.write(
            f"As the {REPORTER} (a kernel host's account with kernel_status.report_kernel_events),"
            " report that the running session's busy cells finished (it applies once: sent again,"
            " the same events are already stored and apply 0):"
        )
        batch = {
            "events": [
                {
                    "op": "cell-op",
                    "data": {"cell_id": cell_id, "status": "idle", "timestamp": report_at},
                }
                for cell_id in ["train", "report"]
            ]
        }
        self.stdout.write('  # expect 200 {"applied": 2, "ignored_older": 0}')
        self.stdout.write(
            f"  curl -s -i -X POST -H 'Authorization: Token {tokens[REPORTER]}'"
            f" -H 'Marimo-Session-Id: {running}' -H 'Content-Type: application/json'"
            f" -d {shlex.quote(json.dumps(batch, separators=(',', ':')))}"
            f" {base_url}/api/kernel/events"
        )
        # The cells becoming idle is the session's last activity.
        finished = from_epoch(report_at).isoformat().replace("+00:00", "Z")
        self.stdout.write(f'  # expect 200 {{"state": "idle", "last_activity": "{finished}"}}')
        self.stdout.write(f"  {curl(tokens['editor'], running)}")
        self.stdout.write("")
        self.stdout.write(f"Admin: {base_url}/admin/ (user {OPERATOR}, password {OPERATOR})")
        self.stdout.write(f"API docs: {base_url}/api/docs/  Schema: {base_url}/api/schema/")
        self.stdout.write("")
        self.stdout.write(f"Tokens as JSON: {python_command()} manage.py kernel_status_demo --json")


def python_command() -> str:
    """This interpreter, as a shell can run it from the current directory: a venv's python
    by its path (``.venv/bin/python``), since a bare ``python`` may lack Django."""
    path = os.path.relpath(sys.executable)
    if path.startswith(os.pardir) or os.path.isabs(path):
        path = sys.executable
    elif os.sep not in path:
        path = os.path.join(os.curdir, path)
    return shlex.quote(path)
