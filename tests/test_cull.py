"""The culler's decisions, with a scripted marimo (tests/test_cull_marimo.py uses a real one)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from kernel_status import culler
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState
from kernel_status.culler import MarimoRefused, MarimoServer
from kernel_status.management.commands import kernel_status_cull as cull_command
from kernel_status.mirror import CLOSED_CAUSE
from kernel_status.models import KernelProcess, Session
from tests.utils import MakeSession, cells


class ScriptedMarimo(MarimoServer):
    """Answers like marimo's home endpoints, from a set of open session ids."""

    def __init__(self, open_ids: set[str], refuse: set[str] | None = None) -> None:
        super().__init__("http://marimo.invalid", server_token="t")
        self.open = set(open_ids)
        self.refuse = refuse or set()
        self.shut: list[str] = []

    def running_sessions(self) -> set[str]:
        return set(self.open)

    def shutdown(self, session_id: str) -> set[str]:
        if session_id in self.refuse:
            raise MarimoRefused("POST /api/home/shutdown_session answered 403: Forbidden")
        self.shut.append(session_id)
        self.open.discard(session_id)
        return set(self.open)


def quiet_for(session: Session, seconds: float) -> None:
    when = timezone.now() - timedelta(seconds=seconds)
    Session.objects.filter(pk=session.pk).update(last_activity=when)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[ScriptedMarimo, str]]:
    def run(marimo: ScriptedMarimo, *args: str) -> tuple[ScriptedMarimo, str]:
        monkeypatch.setattr(cull_command, "MarimoServer", lambda *a, **k: marimo)
        out = io.StringIO()
        call_command("kernel_status_cull", "--marimo-url", marimo.url, *args, stdout=out)
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
