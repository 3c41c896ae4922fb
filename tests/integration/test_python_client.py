"""clients/python is what openapi-python-client generates from schema.yml, and it works.

The committed tree must equal a fresh generation, and the generated client gets each state and
each documented error from a live server seeded with the demo data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import io
import json
import os
import sys
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import openapi_python_client
import pytest
from django.core.management import call_command
from kernel_status_client import (
    AuthenticatedClient,
    KernelStatusRequestError,
    KernelStoppedError,
    WaitTimeoutError,
    async_wait_until_idle,
    wait_until_idle,
)
from kernel_status_client.api.kernel import kernel_sessions, kernel_status
from kernel_status_client.models import (
    KernelSessionsState,
    KernelStatusError,
    KernelStatusResponse,
    KernelStatusStateEnum,
    PaginatedKernelSessionList,
)
from pytest_django.live_server_helper import LiveServer

from tests.utils import REPO, run

# The clients test the HTTP contract, not the database: one pass of the suite is enough, so
# the PostgreSQL pass (which sets DATABASE_URL) leaves them out.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")),
    reason="the generated clients are tested on the SQLite pass only",
)

ROOT = REPO
SCHEMA = ROOT / "schema.yml"
CONFIG = ROOT / "clients" / "openapi-python-client.yml"
# kernel_status's own templates: package_init.py.jinja adds the hand-written wait helpers.
TEMPLATES = ROOT / "clients" / "python-templates"
COMMITTED = ROOT / "clients" / "python"
REGENERATE = (
    'PATH="$PWD/.venv/bin:$PATH" RUFF_NO_CACHE=true .venv/bin/openapi-python-client generate '
    "--path schema.yml --config clients/openapi-python-client.yml --meta uv --fail-on-warning "
    "--custom-template-path clients/python-templates --output-path clients/python"
)
IGNORED_PARTS = {"__pycache__", ".ruff_cache", ".mypy_cache", ".pytest_cache"}


def generate(output: Path) -> None:
    """Run the generator as REGENERATE does, with this interpreter's ruff for the post hooks."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "RUFF_NO_CACHE": "true",
    }
    # --fail-on-warning: a skipped post hook (no ruff on PATH) or a part of the schema that the
    # generator cannot express is a failure too, not a quietly different tree.
    run(
        *(sys.executable, "-m", "openapi_python_client", "generate", "--path", SCHEMA),
        *("--config", CONFIG, "--meta", "uv", "--fail-on-warning"),
        *("--custom-template-path", TEMPLATES, "--output-path", output),
        cwd=ROOT,
        env=env,
    )


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not IGNORED_PARTS.intersection(path.relative_to(root).parts)
    }


def test_generator_version_is_the_pinned_one() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [
        requirement
        for requirement in pyproject["dependency-groups"]["test"]
        if requirement.startswith("openapi-python-client")
    ]
    assert pins == [f"openapi-python-client=={version('openapi-python-client')}"], (
        "the installed openapi-python-client is not the one pinned in pyproject.toml's test "
        "dependency group: reinstall with `pip install --group test`"
    )


def test_package_init_override_keeps_the_generators_lines() -> None:
    """clients/python-templates/package_init.py.jinja replaces the generator's template of the
    same name: whatever that template writes must still be in the override, so that an upgraded
    generator with a different package __init__ is noticed here."""
    packaged = Path(openapi_python_client.__file__).parent / "templates" / "package_init.py.jinja"
    override = (TEMPLATES / "package_init.py.jinja").read_text().splitlines()
    missing = [line for line in packaged.read_text().splitlines() if line not in override]
    assert missing == []
    assert (COMMITTED / "kernel_status_client" / "__init__.py").read_text().count(
        "def wait_until_idle("
    ) == 1


def test_committed_client_is_fresh(tmp_path: Path) -> None:
    fresh = tmp_path / "python"
    generate(fresh)
    committed, regenerated = tree(COMMITTED), tree(fresh)
    problems = [f"missing from clients/python: {name}" for name in regenerated.keys() - committed]
    problems += [f"not generated: clients/python/{name}" for name in committed.keys() - regenerated]
    for name in sorted(committed.keys() & regenerated.keys()):
        if committed[name] != regenerated[name]:
            diff = difflib.unified_diff(
                committed[name].decode().splitlines(),
                regenerated[name].decode().splitlines(),
                f"committed/{name}",
                f"regenerated/{name}",
                lineterm="",
                n=1,
            )
            problems.append("\n".join(list(diff)[:40]))
    if problems:
        pytest.fail(
            "clients/python is stale against schema.yml. From the repository root, run:\n"
            f"  rm -rf clients/python && {REGENERATE}\n\n" + "\n".join(problems),
            pytrace=False,
        )


@pytest.fixture
def demo(live_server: LiveServer, transactional_db: Any) -> dict[str, Any]:
    """Demo users and sessions, committed so that the live server sees them."""
    out = io.StringIO()
    call_command("kernel_status_demo", "--json", stdout=out)
    seeded: dict[str, Any] = json.loads(out.getvalue())
    return seeded


def without(header: str) -> Callable[[httpx.Request], None]:
    """An httpx request hook that drops one header before the request is sent."""

    def hook(request: httpx.Request) -> None:
        del request.headers[header]

    return hook


def client_for(
    live_server: LiveServer, token: str, *, drop_header: str | None = None
) -> AuthenticatedClient:
    httpx_args: dict[str, Any] = {}
    if drop_header is not None:
        httpx_args["event_hooks"] = {"request": [without(drop_header)]}
    return AuthenticatedClient(
        base_url=live_server.url,
        token=token,
        prefix="Token",
        raise_on_unexpected_status=True,
        httpx_args=httpx_args,
    )


@pytest.mark.parametrize(
    ("situation", "state"),
    [
        ("idle", KernelStatusStateEnum.IDLE),
        ("running", KernelStatusStateEnum.RUNNING),
        ("stopped", KernelStatusStateEnum.STOPPED),
        ("not_started", KernelStatusStateEnum.STOPPED),
    ],
)
def test_each_state(
    live_server: LiveServer,
    demo: dict[str, Any],
    situation: str,
    state: KernelStatusStateEnum,
) -> None:
    session_id = demo["sessions"][situation]
    with client_for(live_server, demo["users"]["editor"]) as client:
        response = kernel_status.sync_detailed(client=client, marimo_session_id=session_id)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "private, no-cache"
        assert isinstance(response.parsed, KernelStatusResponse)
        assert response.parsed.state is state
        assert kernel_status.sync(client=client, marimo_session_id=session_id) == response.parsed


def test_async_call(live_server: LiveServer, demo: dict[str, Any]) -> None:
    async def ask() -> KernelStatusError | KernelStatusResponse | None:
        async with client_for(live_server, demo["users"]["editor"]) as client:
            return await kernel_status.asyncio(
                client=client, marimo_session_id=demo["sessions"]["running"]
            )

    assert asyncio.run(ask()) == KernelStatusResponse(
        state=KernelStatusStateEnum.RUNNING, last_activity=None
    )


def test_conditional_read(live_server: LiveServer, demo: dict[str, Any]) -> None:
    session_id = demo["sessions"]["idle"]
    with client_for(live_server, demo["users"]["editor"]) as client:
        full = kernel_status.sync_detailed(client=client, marimo_session_id=session_id)
        etag = full.headers["ETag"]
        again = kernel_status.sync_detailed(
            client=client, marimo_session_id=session_id, if_none_match=etag
        )
        assert (again.status_code, again.content, again.parsed) == (304, b"", None)
        assert again.headers["ETag"] == etag


def test_session_listing(live_server: LiveServer, demo: dict[str, Any]) -> None:
    with client_for(live_server, demo["users"]["editor"]) as client:
        page = kernel_sessions.sync(client=client, page_size=2)
        assert isinstance(page, PaginatedKernelSessionList)
        seen = [entry.session_id for entry in page.results]
        while isinstance(page.next_, str):
            cursor = httpx.URL(page.next_).params["cursor"]
            page = kernel_sessions.sync(client=client, page_size=2, cursor=cursor)
            assert isinstance(page, PaginatedKernelSessionList)
            seen += [entry.session_id for entry in page.results]
        assert sorted(seen) == sorted(demo["sessions"].values())
        idle = kernel_sessions.sync(client=client, state=KernelSessionsState.IDLE)
        assert isinstance(idle, PaginatedKernelSessionList)
        assert [(e.session_id, e.state) for e in idle.results] == [
            (demo["sessions"]["idle"], KernelStatusStateEnum.IDLE)
        ]
        bad = kernel_sessions.sync_detailed(client=client, idle_for=-1)
        assert bad.status_code == 400
        assert isinstance(bad.parsed, KernelStatusError)


@pytest.mark.parametrize(
    ("user", "session", "drop_header", "status", "detail"),
    [
        pytest.param(
            "editor",
            "running",
            "Marimo-Session-Id",
            400,
            "The Marimo-Session-Id header is required.",
            id="400-missing-header",
        ),
        pytest.param(
            "editor", "", None, 400, "The Marimo-Session-Id header is empty.", id="400-empty"
        ),
        pytest.param(
            "editor",
            "running",
            "Authorization",
            401,
            "Authentication credentials were not provided.",
            id="401-no-token",
        ),
        pytest.param(None, "running", None, 401, "Invalid token.", id="401-wrong-token"),
        pytest.param(
            "viewer",
            "running",
            None,
            403,
            "Edit access to this session is required.",
            id="403-viewer",
        ),
        pytest.param("stranger", "running", None, 404, "Session not found.", id="404-stranger"),
        pytest.param(
            "editor", "no-such-session", None, 404, "Session not found.", id="404-unknown"
        ),
    ],
)
def test_each_error(
    live_server: LiveServer,
    demo: dict[str, Any],
    user: str | None,
    session: str,
    drop_header: str | None,
    status: int,
    detail: str,
) -> None:
    token = demo["users"][user] if user else "not-a-token"
    session_id = demo["sessions"].get(session, session)
    with client_for(live_server, token, drop_header=drop_header) as client:
        response = kernel_status.sync_detailed(client=client, marimo_session_id=session_id)
    assert response.status_code == status
    assert response.parsed == KernelStatusError(detail=detail)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Token"


def test_405_for_a_post(live_server: LiveServer, demo: dict[str, Any]) -> None:
    # The generated client only sends GET to this path, so POST through its httpx client.
    with client_for(live_server, demo["users"]["editor"]) as client:
        response = client.get_httpx_client().post(
            "/api/kernel/status", headers={"Marimo-Session-Id": demo["sessions"]["idle"]}
        )
    assert response.status_code == 405
    assert KernelStatusError.from_dict(response.json()) == KernelStatusError(
        detail='Method "POST" not allowed.'
    )


# --- wait_until_idle and async_wait_until_idle -----------------------------------------------


@dataclasses.dataclass
class Exchange:
    """One request of a wait, as the server saw it: its If-None-Match and the answer's status."""

    if_none_match: str | None
    status: int
    etag: str | None


def recording_client(
    live_server: LiveServer, token: str, exchanges: list[Exchange], *, asynchronous: bool = False
) -> AuthenticatedClient:
    """A client that appends every exchange to ``exchanges`` (httpx response hooks, which
    must be coroutines on an AsyncClient)."""

    def record(response: httpx.Response) -> None:
        exchanges.append(
            Exchange(
                response.request.headers.get("If-None-Match"),
                response.status_code,
                response.headers.get("ETag"),
            )
        )

    async def record_async(response: httpx.Response) -> None:
        record(response)

    hook: Any = record_async if asynchronous else record
    return AuthenticatedClient(
        base_url=live_server.url,
        token=token,
        prefix="Token",
        httpx_args={"event_hooks": {"response": [hook]}},
    )


def test_wait_until_idle_returns_at_once_when_idle(
    live_server: LiveServer, demo: dict[str, Any]
) -> None:
    exchanges: list[Exchange] = []
    with recording_client(live_server, demo["users"]["editor"], exchanges) as client:
        answer = wait_until_idle(client, demo["sessions"]["idle"])
    assert answer.state is KernelStatusStateEnum.IDLE
    assert [(e.if_none_match, e.status) for e in exchanges] == [(None, 200)]


@pytest.mark.parametrize("situation", ["stopped", "not_started"])
def test_wait_until_idle_fails_at_once_when_stopped(
    live_server: LiveServer, demo: dict[str, Any], situation: str
) -> None:
    session_id = demo["sessions"][situation]
    exchanges: list[Exchange] = []
    with (
        recording_client(live_server, demo["users"]["editor"], exchanges) as client,
        pytest.raises(KernelStoppedError) as caught,
    ):
        wait_until_idle(client, session_id, timeout=60)
    assert [(e.if_none_match, e.status) for e in exchanges] == [(None, 200)]
    assert caught.value.session_id == session_id
    assert caught.value.response.state is KernelStatusStateEnum.STOPPED
    assert "is stopped" in str(caught.value)


def test_wait_until_idle_times_out_while_running_and_revalidates(
    live_server: LiveServer, demo: dict[str, Any]
) -> None:
    exchanges: list[Exchange] = []
    with (
        recording_client(live_server, demo["users"]["editor"], exchanges) as client,
        pytest.raises(WaitTimeoutError) as caught,
    ):
        wait_until_idle(
            client, demo["sessions"]["running"], timeout=2, interval=0.05, max_interval=0.2
        )
    assert caught.value.last_state is KernelStatusStateEnum.RUNNING
    assert caught.value.session_id == demo["sessions"]["running"]
    first, *later = exchanges
    assert (first.if_none_match, first.status) == (None, 200)
    assert first.etag
    # After the first poll, each one sends the ETag back and gets a 304 (nothing changed).
    assert later
    assert [(e.if_none_match, e.status) for e in later] == [(first.etag, 304)] * len(later)


def test_wait_until_idle_raises_the_error_answer(
    live_server: LiveServer, demo: dict[str, Any]
) -> None:
    exchanges: list[Exchange] = []
    with (
        recording_client(live_server, demo["users"]["stranger"], exchanges) as client,
        pytest.raises(KernelStatusRequestError) as caught,
    ):
        wait_until_idle(client, demo["sessions"]["running"])
    assert [e.status for e in exchanges] == [404]
    assert (caught.value.status_code, caught.value.detail) == (404, "Session not found.")
    assert caught.value.error == KernelStatusError(detail="Session not found.")
    assert caught.value.session_id == demo["sessions"]["running"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"timeout": -1}, "timeout must be 0 or more", id="negative-timeout"),
        pytest.param({"timeout": float("nan")}, "timeout must be 0 or more", id="nan-timeout"),
        pytest.param({"interval": 0}, "interval must be more than 0", id="zero-interval"),
        pytest.param({"interval": -0.5}, "interval must be more than 0", id="negative-interval"),
        pytest.param(
            {"interval": 2, "max_interval": 1}, "max_interval must be at least", id="max-below"
        ),
        pytest.param({"max_wait": 0}, "max_wait must be a whole number", id="zero-max-wait"),
        pytest.param({"max_wait": 1.5}, "max_wait must be a whole number", id="fractional-wait"),
    ],
)
def test_wait_until_idle_refuses_bad_arguments(arguments: dict[str, Any], message: str) -> None:
    # No server: a refused argument sends no request.
    with AuthenticatedClient(base_url="http://127.0.0.1:9", token="t") as client:
        with pytest.raises(ValueError, match=message):
            wait_until_idle(client, "s", **arguments)
        with pytest.raises(ValueError, match=message):
            asyncio.run(async_wait_until_idle(client, "s", **arguments))


def test_async_wait_until_idle(live_server: LiveServer, demo: dict[str, Any]) -> None:
    exchanges: list[Exchange] = []

    async def wait(situation: str, **arguments: Any) -> KernelStatusResponse:
        client = recording_client(
            live_server, demo["users"]["editor"], exchanges, asynchronous=True
        )
        async with client:
            return await async_wait_until_idle(client, demo["sessions"][situation], **arguments)

    assert asyncio.run(wait("idle")).state is KernelStatusStateEnum.IDLE
    assert [(e.if_none_match, e.status) for e in exchanges] == [(None, 200)]

    exchanges.clear()
    with pytest.raises(KernelStoppedError) as stopped:
        asyncio.run(wait("stopped", timeout=60))
    assert stopped.value.response.state is KernelStatusStateEnum.STOPPED
    assert [(e.if_none_match, e.status) for e in exchanges] == [(None, 200)]

    exchanges.clear()
    with pytest.raises(WaitTimeoutError) as timed_out:
        asyncio.run(wait("running", timeout=1, interval=0.05, max_interval=0.2))
    assert timed_out.value.last_state is KernelStatusStateEnum.RUNNING
    first, *later = exchanges
    assert later
    assert [(e.if_none_match, e.status) for e in later] == [(first.etag, 304)] * len(later)
