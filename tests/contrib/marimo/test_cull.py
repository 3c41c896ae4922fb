"""The culler's decisions, with a scripted marimo (tests/integration/test_cull_marimo.py uses a
real one), and the marimo client's home endpoints against a scripted HTTP transport."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState
from kernel_status.contrib.marimo import culler
from kernel_status.contrib.marimo.client import MarimoHome, MarimoUnavailable
from kernel_status.mirror.writes import CLOSED_CAUSE
from kernel_status.models import KernelProcess, Session
from tests.utils import MakeSession, cells


class ScriptedMarimo:
    """Answers like MarimoHome, from a set of open session ids."""

    base_url = "http://marimo.invalid"

    def __init__(self, open_ids: set[str], refuse: set[str] | None = None) -> None:
        self.open = set(open_ids)
        self.refuse = refuse or set()
        self.shut: list[str] = []
        self.closed = False

    def running_sessions(self) -> dict[str, str]:
        return dict.fromkeys(self.open, "nb.py")

    def shutdown_session(self, session_id: str) -> dict[str, str]:
        if session_id in self.refuse:
            raise MarimoUnavailable("POST /api/home/shutdown_session answered 403: Forbidden")
        self.shut.append(session_id)
        self.open.discard(session_id)
        return self.running_sessions()

    def __enter__(self) -> ScriptedMarimo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True


def quiet_for(session: Session, seconds: float) -> None:
    when = timezone.now() - timedelta(seconds=seconds)
    Session.objects.filter(pk=session.pk).update(last_activity=when)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[ScriptedMarimo, str]]:
    def run(marimo: ScriptedMarimo, *args: str) -> tuple[ScriptedMarimo, str]:
        monkeypatch.setattr(culler, "MarimoHome", lambda *a, **k: marimo)
        out = io.StringIO()
        try:
            call_command("kernel_status_cull", "--marimo-url", marimo.base_url, *args, stdout=out)
        finally:
            assert marimo.closed
        return marimo, out.getvalue()

    return run


@pytest.fixture
def sessions(make_session: MakeSession) -> dict[str, Session]:
    made = {
        "old": make_session("old", cells=cells(Cell.IDLE)),
        "older": make_session("older", kernel=ProcessState.STOPPED),
        "fresh": make_session("fresh", cells=cells(Cell.IDLE)),
        "busy": make_session("busy", cells=cells(Cell.RUNNING)),
        "elsewhere": make_session("elsewhere", cells=cells(Cell.IDLE)),
    }
    quiet_for(made["old"], 700)
    quiet_for(made["older"], 900)
    quiet_for(made["fresh"], 10)
    quiet_for(made["busy"], 5000)
    quiet_for(made["elsewhere"], 5000)
    return made


def test_culls_idle_and_stopped_sessions_oldest_first(
    sessions: dict[str, Session], run: Callable[..., tuple[ScriptedMarimo, str]]
) -> None:
    marimo, out = run(ScriptedMarimo({"old", "older", "fresh", "busy"}), "--idle-for", "600")
    assert marimo.shut == ["older", "old"]
    lines = out.splitlines()
    assert lines[0].startswith("shut down: older (nb.py) stopped, last activity ")
    assert lines[1].startswith("shut down: old (nb.py) idle, last activity ")
    assert "s ago)" in lines[1]
    assert lines[2] == (
        "shut down 2 session(s) idle for at least 600 s on http://marimo.invalid; "
        "1 more idle in the mirror are not open on this server."
    )
    for sid in ("old", "older"):
        kernel = KernelProcess.objects.get(session__session_id=sid)
        assert (kernel.state, kernel.exit_cause) == (ProcessState.STOPPED, CLOSED_CAUSE)
    states = dict(Session.objects.with_state().values_list("session_id", "state"))
    assert states == {
        "old": "stopped",
        "older": "stopped",
        "fresh": "idle",
        "busy": "running",
        "elsewhere": "idle",  # another server's session: not ours to close
    }


def test_dry_run_changes_nothing(
    sessions: dict[str, Session], run: Callable[..., tuple[ScriptedMarimo, str]]
) -> None:
    before = list(KernelProcess.objects.order_by("pk").values())
    marimo, out = run(ScriptedMarimo({"old", "older"}), "--idle-for", "600", "--dry-run")
    assert marimo.shut == []
    assert [line.split(" (")[0] for line in out.splitlines()[:2]] == [
        "would shut down: older",
        "would shut down: old",
    ]
    assert out.splitlines()[2].startswith("would shut down 2 session(s)")
    assert list(KernelProcess.objects.order_by("pk").values()) == before


def test_limit(
    sessions: dict[str, Session], run: Callable[..., tuple[ScriptedMarimo, str]]
) -> None:
    marimo, _ = run(ScriptedMarimo({"old", "older"}), "--idle-for", "600", "--limit", "1")
    assert marimo.shut == ["older"]


def test_a_refusal_stops_the_run_and_exits_non_zero(
    sessions: dict[str, Session], run: Callable[..., tuple[ScriptedMarimo, str]]
) -> None:
    with pytest.raises(CommandError) as error:
        run(ScriptedMarimo({"old", "older"}, refuse={"older"}), "--idle-for", "600")
    assert str(error.value) == (
        "marimo refused to shut down older: POST /api/home/shutdown_session answered 403: Forbidden"
    )
    states = dict(Session.objects.with_state().values_list("session_id", "state"))
    assert states["old"] == "idle"  # not attempted after the refusal
    assert KernelProcess.objects.get(session__session_id="older").exit_cause == ""


def test_a_session_active_again_is_skipped(
    sessions: dict[str, Session],
    run: Callable[..., tuple[ScriptedMarimo, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = culler.candidates

    def listed_then_busy(*args: Any, **kwargs: Any) -> list[Session]:
        found = real(*args, **kwargs)
        quiet_for(sessions["old"], 1)  # a cell ran between the listing and the shutdown
        return found

    monkeypatch.setattr(culler, "candidates", listed_then_busy)
    marimo, out = run(ScriptedMarimo({"old"}), "--idle-for", "600")
    assert marimo.shut == []
    assert out.splitlines()[0].startswith("skipped: old (nb.py) idle")
    assert out.splitlines()[0].endswith(": active again since it was listed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle-for", "soon"], "idle_for must be a number of seconds"),
        (["--idle-for", "-5"], "idle_for must be between 0"),
        (["--idle-for", "60", "--limit", "0"], "must be a positive integer"),
    ],
)
def test_bad_arguments(args: list[str], message: str, db: Any) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("kernel_status_cull", "--marimo-url", "http://x.invalid", *args)


def test_unreachable_marimo(db: Any) -> None:
    with pytest.raises(CommandError, match="marimo refused to list its sessions: marimo at "):
        call_command(
            "kernel_status_cull",
            *("--marimo-url", "http://127.0.0.1:9", "--idle-for", "60", "--timeout", "2"),
        )


def test_bad_marimo_url(db: Any) -> None:
    with pytest.raises(CommandError, match="is not an http"):
        call_command("kernel_status_cull", "--marimo-url", "ftp://x", "--idle-for", "60")


def test_a_run_counts_the_sessions_of_other_servers_in_one_query(
    sessions: dict[str, Session],
    run: Callable[..., tuple[ScriptedMarimo, str]],
    django_assert_num_queries: Any,
) -> None:
    with django_assert_num_queries(2) as queries:  # the candidates, then one COUNT
        _, out = run(ScriptedMarimo({"old", "fresh"}), "--idle-for", "600", "--dry-run")
    assert "COUNT(" in queries.captured_queries[1]["sql"].upper()
    # "older" and "elsewhere" are idle in the mirror, but this server does not list them.
    assert out.splitlines()[-1].endswith("; 2 more idle in the mirror are not open on this server.")


# --- MarimoHome: the one client of marimo's home endpoints, scripted at the HTTP level -------

PAGE = b'<script>window.__MARIMO__ = {"serverToken": "%s"};</script>'


class ScriptedHTTP:
    """marimo 0.25's page and home endpoints; ``token`` is its current server token."""

    def __init__(self, open_ids: set[str], token: str = "t1") -> None:
        self.open = set(open_ids)
        self.token = token
        self.requests: list[tuple[str, str, dict[str, Any] | None, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        header = request.headers.get("Marimo-Server-Token")
        self.requests.append((request.method, request.url.path, body, header))
        if request.method == "GET" and request.url.path == "/":
            return httpx.Response(200, content=PAGE % self.token.encode())
        if header != self.token:
            return httpx.Response(401, json={"detail": "Missing server token"})
        if request.url.path == "/api/home/shutdown_session":
            if not isinstance(body, dict) or "sessionId" not in body:
                return httpx.Response(400, text="Bad Request")
            self.open.discard(body["sessionId"])
        files = [{"sessionId": sid, "path": f"{sid}.py"} for sid in sorted(self.open)]
        return httpx.Response(200, json={"files": files})


def scripted_home(server: ScriptedHTTP, **kwargs: Any) -> MarimoHome:
    home = MarimoHome("http://marimo.invalid/", **kwargs)
    transport = httpx.MockTransport(server)
    home._api._client = httpx.AsyncClient(transport=transport)
    return home


def test_home_reads_the_server_token_and_shuts_a_session_down() -> None:
    server = ScriptedHTTP({"a", "b"})
    with scripted_home(server) as home:
        assert home.base_url == "http://marimo.invalid"
        assert home.running_sessions() == {"a": "a.py", "b": "b.py"}
        assert home.shutdown_session("a") == {"b": "b.py"}
    assert server.requests == [
        ("GET", "/", None, None),
        ("POST", "/api/home/running_notebooks", {}, "t1"),
        ("POST", "/api/home/shutdown_session", {"sessionId": "a"}, "t1"),  # camelCase
    ]


def test_home_reads_the_page_again_when_marimo_restarted() -> None:
    server = ScriptedHTTP({"a"})
    with scripted_home(server) as home:
        assert home.running_sessions() == {"a": "a.py"}
        server.token = "t2"  # a new marimo process
        assert home.shutdown_session("a") == {}
    assert [r[3] for r in server.requests] == [None, "t1", "t1", None, "t2"]


def test_home_says_why_marimo_refused_a_given_server_token() -> None:
    server = ScriptedHTTP({"a"})
    with (
        scripted_home(server, server_token="wrong") as home,
        pytest.raises(MarimoUnavailable) as refused,
    ):
        home.running_sessions()
    # A token the operator gave is not replaced by the page's: the refusal is reported.
    assert str(refused.value) == (
        "POST /api/home/running_notebooks answered 401: Missing server token"
    )
    assert server.requests == [("POST", "/api/home/running_notebooks", {}, "wrong")]
