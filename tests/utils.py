"""Helpers shared by the test modules (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from kernel_status.choices import CellRuntimeState, ProcessState
from kernel_status.models import Session

# The checkout: pyproject.toml, schema.yml, clients/, docs/.
REPO = Path(__file__).resolve().parent.parent

STATUS_URL = "/api/kernel/status"
# The session that the `session` fixture registers.
SESSION_ID = "s1"


class MakeSession(Protocol):
    def __call__(
        self,
        session_id: str = ...,
        *,
        kernel: ProcessState | None = ...,
        heartbeat_age: timedelta | None = ...,
        cells: Iterable[tuple[str, bool]] = ...,
        owner: User | None = ...,
    ) -> Session: ...


def get_status(client: APIClient, session_id: str | None, **extra: Any) -> Any:
    headers = {} if session_id is None else {"Marimo-Session-Id": session_id}
    return client.get(STATUS_URL, headers=headers, **extra)


def cells(*statuses: CellRuntimeState, stale: bool = False) -> list[tuple[str, bool]]:
    return [(status, stale) for status in statuses]


def moment(seconds_ago: float) -> datetime:
    return timezone.now() - timedelta(seconds=seconds_ago)


def free_port() -> int:
    """A port that was free a moment ago, for a server the test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def eventually(
    check: Callable[[], bool], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.02)
