"""The recommended deployment, started for real: nginx (project/deploy/nginx.conf) in front of
gunicorn gthread (plain reads and writes) and uvicorn (blocking reads and the change stream),
over one database.

Which upstream answered is read from the access log of the test's nginx (its format records
``$upstream_addr``; production's log format is its own). Without nginx the module is skipped
(``apt-get install nginx-light``); under ``CI=true`` it fails instead, because ``.ci/run``
installs nginx. No timed assertions: the slow clients' latency is printed, not checked.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token

from kernel_status import mirror
from kernel_status.events import CellNotification
from kernel_status.models import Session
from project.deploy import nginx_binary, nginx_running
from scripts.slow_clients import run_slow_clients
from tests.utils import (
    EVENTS_URL,
    STATUS_URL,
    eventually,
    free_port,
    gunicorn_server,
    uvicorn_server,
)

IN_CI = os.environ.get("CI") == "true"
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        nginx_binary() is None and not IN_CI,
        reason="nginx is not installed (apt-get install nginx-light); CI=true makes this a failure",
    ),
]

STREAM_URL = "/api/kernel/sessions/stream"
WAIT = 50  # longer than the client's timeout: a wait that answers at all answered early
CLIENT_TIMEOUT = 20


@dataclass
class Deployment:
    url: str
    wsgi: str
    asgi: str
    access_log: Path
    logged_before: int = 0  # lines of the access log from earlier tests

    def upstreams(self, method: str, path: str) -> list[str]:
        """The upstream addresses of this test's logged requests ``method path``, oldest
        first."""
        found = []
        for line in self.access_log.read_text().splitlines()[self.logged_before :]:
            logged_method, logged_path, _status, upstream = line.split(" ", 3)
            if (logged_method, logged_path) == (method, path):
                found.append(upstream)
        return found


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: None, django_db_blocker: Any
) -> Iterator[Deployment]:
    """The three servers, started once for the module on the test database (each test's
    rows are its own: the transactional tests empty the tables after each)."""
    assert nginx_binary() is not None, "nginx is not installed: .ci/run installs it"
    tmp_path = tmp_path_factory.mktemp("deployment")
    port = free_port()
    with (
        gunicorn_server(
            log=tmp_path / "gunicorn.log",
            options=("--worker-class", "gthread", "--threads", "4"),
        ) as wsgi,
        uvicorn_server(log=tmp_path / "uvicorn.log") as (asgi, _),
    ):
        wsgi_address, asgi_address = wsgi.removeprefix("http://"), asgi.removeprefix("http://")
        with nginx_running(tmp_path / "nginx", port, wsgi_address, asgi_address):
            url = f"http://127.0.0.1:{port}"
            eventually(lambda: _answers(url), timeout=15, what="nginx to listen")
            yield Deployment(url, wsgi_address, asgi_address, tmp_path / "nginx" / "access.log")
    for name in ("gunicorn.log", "uvicorn.log", "nginx/error.log"):
        path = tmp_path / name
        if path.exists():
            print(name, path.read_text()[-3000:])  # shown when the test fails


@pytest.fixture
def deployment(served: Deployment, transactional_db: None) -> Deployment:
    lines = served.access_log.read_text().splitlines() if served.access_log.exists() else []
    return replace(served, logged_before=len(lines))


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/api/schema/", timeout=2)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture
def started(users: dict[str, User]) -> Session:
    session = mirror.register_session("d1", owner=users["owner"], notebook="nb.py")
    mirror.kernel_started("d1")
    return session


def headers(user: User, session_id: str | None = "d1", **extra: str) -> dict[str, str]:
    found = {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}", **extra}
    if session_id is not None:
        found["Marimo-Session-Id"] = session_id
    return found


def test_a_plain_read_is_answered_by_gunicorn(
    deployment: Deployment, started: Session, users: dict[str, User]
) -> None:
    response = httpx.get(
        deployment.url + STATUS_URL, headers=headers(users["owner"]), timeout=CLIENT_TIMEOUT
    )
    assert response.status_code == 200
    assert response.json()["state"] == "idle"
    assert "Preference-Applied" not in response.headers
    # A Prefer wait without If-None-Match has nothing to wait on: WSGI answers it too.
    prefer_only = headers(users["owner"], Prefer="wait=5")
    response = httpx.get(deployment.url + STATUS_URL, headers=prefer_only, timeout=CLIENT_TIMEOUT)
    assert response.status_code == 200
    eventually(lambda: len(deployment.upstreams("GET", STATUS_URL)) == 2, what="the access log")
    assert deployment.upstreams("GET", STATUS_URL) == [deployment.wsgi, deployment.wsgi]


def test_a_blocking_read_goes_to_uvicorn_and_a_posted_change_wakes_it(
    deployment: Deployment, started: Session, users: dict[str, User]
) -> None:
    first = httpx.get(
        deployment.url + STATUS_URL, headers=headers(users["owner"]), timeout=CLIENT_TIMEOUT
    )
    assert first.status_code == 200
    answer: dict[str, httpx.Response] = {}
    waiting = headers(users["owner"], **{"If-None-Match": first.headers["ETag"]})
    waiting["Prefer"] = f"wait={WAIT}"

    def wait() -> None:
        answer["response"] = httpx.get(
            deployment.url + STATUS_URL, headers=waiting, timeout=CLIENT_TIMEOUT
        )

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    # The waiter is held once a plain request sent to uvicorn after it has been answered.
    httpx.get(f"http://{deployment.asgi}/api/schema/", timeout=CLIENT_TIMEOUT)
    time.sleep(0.2)  # not a timing assertion: a late wake-up still answers the new state
    reporter = User.objects.create_superuser("host")
    body = {"events": [{"op": "kernel-stopped", "data": {"timestamp": time.time()}}]}
    posted = httpx.post(
        deployment.url + EVENTS_URL, json=body, headers=headers(reporter), timeout=CLIENT_TIMEOUT
    )
    assert posted.status_code == 200, posted.text
    thread.join(CLIENT_TIMEOUT + 5)
    assert "response" in answer, "the blocking read did not answer"
    response = answer["response"]
    assert response.status_code == 200
    assert response.json()["state"] == "stopped"
    assert response.headers["Preference-Applied"] == f"wait={WAIT}"
    assert response.headers["ETag"] != first.headers["ETag"]
    eventually(lambda: len(deployment.upstreams("GET", STATUS_URL)) == 2, what="the access log")
    assert deployment.upstreams("GET", STATUS_URL) == [deployment.wsgi, deployment.asgi]
    assert deployment.upstreams("POST", EVENTS_URL) == [deployment.wsgi]


def test_the_stream_goes_to_uvicorn_unbuffered(
    deployment: Deployment, started: Session, users: dict[str, User]
) -> None:
    with httpx.stream(
        "GET",
        deployment.url + STREAM_URL,
        headers=headers(users["owner"], session_id=None),
        timeout=CLIENT_TIMEOUT,
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events: list[tuple[str, object]] = []
        name = ""
        # The stream stays open: these events can only arrive if nginx does not buffer them.
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("event:"):
                name = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.partition(":")[2])))
                if name == "ready":
                    break
        statuses = [data for kind, data in events if kind == "status"]
        assert [s["session_id"] for s in statuses if isinstance(s, dict)] == ["d1"]
        assert events[-1] == ("ready", {"resumed": False, "replayed": 0, "sessions": 1})
        # A change after the snapshot is delivered through nginx as it happens.
        mirror.apply_events("d1", [CellNotification("a", timezone.now(), "running")])
        for line in lines:
            if line.startswith("data:"):
                data = json.loads(line.partition(":")[2])
                assert data["session_id"] == "d1"
                assert data["state"] == "running"
                break
    # Logged once nginx has seen the client go.
    eventually(lambda: bool(deployment.upstreams("GET", STREAM_URL)), what="the access log")
    assert deployment.upstreams("GET", STREAM_URL) == [deployment.asgi]


def test_slow_and_idle_clients_do_not_block_a_status_read(
    deployment: Deployment, started: Session, users: dict[str, User]
) -> None:
    token = Token.objects.get_or_create(user=users["owner"])[0].key
    figures = run_slow_clients(
        deployment.url, token=token, session_id="d1", slow=100, idle=100, reads=10
    )
    print("slow clients through nginx:", figures)
    assert figures["ok"] == 10
    assert figures["failed"] == 0
    # nginx held every connection: none was refused or dropped during the reads.
    assert figures["slow_held"] == 100
    assert figures["idle_held"] == 100
