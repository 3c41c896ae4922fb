"""Helpers shared by the test modules (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import runpy
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from bs4 import BeautifulSoup, Tag
from django.contrib.admin.helpers import InlineAdminFormSet
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import connection
from django.db.models import Case, Expression, IntegerField, Value, When
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from markdown_it.renderer import RendererHTML
from myst_parser.config.main import MdParserConfig
from myst_parser.parsers.mdit import create_md_parser
from rest_framework.test import APIClient

from kernel_status.access import AccessPolicy
from kernel_status.choices import AccessLevel, CellRuntimeState, ProcessState
from kernel_status.models import Session

# The checkout: pyproject.toml, schema.yml, clients/, docs/.
REPO = Path(__file__).resolve().parent.parent

STATUS_URL = "/api/kernel/status"
EVENTS_URL = "/api/kernel/events"
# The session that the `session` fixture registers.
SESSION_ID = "s1"
# MyST's directives whose argument names the language of the code they hold.
_CODE_DIRECTIVES = {"{code-block}", "{code}", "{code-cell}", "{sourcecode}"}


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block of a Markdown page."""

    path: Path
    line: int  # the 1-based line of the opening fence
    language: str
    text: str  # without the fence's indentation, as Sphinx renders it

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def code_blocks(path: Path) -> list[CodeBlock]:
    """Every fenced code block of the page, in order, found as ``make docs`` finds them: with
    MyST's parser and the extensions that docs/conf.py enables (``:::`` fences), so blocks
    indented inside list items count too."""
    extensions = runpy.run_path(str(REPO / "docs" / "conf.py"))["myst_enable_extensions"]
    parser = create_md_parser(MdParserConfig(enable_extensions=set(extensions)), RendererHTML)
    blocks = []
    for token in parser.parse(path.read_text()):
        if token.type not in {"fence", "colon_fence"} or token.map is None:
            continue
        words = token.info.split()
        language = words[0] if words else ""
        if language in _CODE_DIRECTIVES:
            language = words[1] if len(words) > 1 else ""
        blocks.append(CodeBlock(path, token.map[0] + 1, language, token.content))
    return blocks


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


class NotebookPrefixPolicy(AccessPolicy):
    """A host rule: staff edit notebooks under "team/", everyone active may view them."""

    def access_level_expression(self, user: AbstractBaseUser | AnonymousUser) -> Expression:
        if not user.is_authenticated:
            return Value(AccessLevel.NONE.value, output_field=IntegerField())
        team_level = AccessLevel.EDIT if getattr(user, "is_staff", False) else AccessLevel.VIEW
        return Case(
            When(notebook__startswith="team/", then=Value(team_level.value)),
            default=Value(AccessLevel.NONE.value),
            output_field=IntegerField(),
        )


def get_status(client: APIClient, session_id: str | None, **extra: Any) -> Any:
    headers = {} if session_id is None else {"Marimo-Session-Id": session_id}
    return client.get(STATUS_URL, headers=headers, **extra)


def cell_op(cell_id: Any, status: str | None, t: Any, **extra: Any) -> dict[str, Any]:
    # The shape of marimo's websocket frame, with the keys we do not read.
    return {
        "op": "cell-op",
        "data": {
            "op": "cell-op",
            "cell_id": cell_id,
            "output": None,
            "console": None,
            "status": status,
            "stale_inputs": None,
            "run_id": "r1",
            "serialization": None,
            "timestamp": t,
            **extra,
        },
    }


def post(client: APIClient, body: Any, session_id: str | None = SESSION_ID, **extra: Any) -> Any:
    """POST a batch to the ingestion endpoint, for ``session_id`` (no header if None)."""
    headers = {} if session_id is None else {"Marimo-Session-Id": session_id}
    return client.post(EVENTS_URL, body, format="json", headers=headers, **extra)


def post_text(client: APIClient, text: str, session_id: str = SESSION_ID) -> Any:
    """POST a body as given: the test client's JSON renderer cannot encode a lone surrogate,
    which JSON's escapes can carry (``json.dumps`` writes ``"\\ud800"``)."""
    return client.post(
        EVENTS_URL, text, content_type="application/json", headers={"Marimo-Session-Id": session_id}
    )


def cells(*statuses: CellRuntimeState, stale: bool = False) -> list[tuple[str, bool]]:
    return [(status, stale) for status in statuses]


def moment(seconds_ago: float) -> datetime:
    return timezone.now() - timedelta(seconds=seconds_ago)


_base = timezone.now()


def at(seconds: float) -> datetime:
    """A fixed point in time, ``seconds`` after the test's base, which the ``recent_base``
    fixture sets 30 s back in whole seconds: inside the 60 s liveness window."""
    return _base + timedelta(seconds=seconds)


def rebase() -> None:
    """Move :func:`at`'s base to 30 s ago; status checks depend on the liveness window."""
    global _base
    _base = timezone.now().replace(microsecond=0) - timedelta(seconds=30)


def free_port() -> int:
    """A port that was free a moment ago, for a server the test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def eventually(
    check: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "the condition",
    *,
    interval: float = 0.02,
) -> None:
    """Poll ``check`` every ``interval`` seconds until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "the condition",
    *,
    interval: float = 0.005,
) -> None:
    """:func:`eventually` inside an event loop: the loop's other tasks run between polls."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(interval)


def database_url() -> str:
    """The URL of the test database, for a server in another process."""
    settings = connection.settings_dict
    if settings["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{settings['NAME']}"
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    scheme, port = ("mysql", 3306) if connection.vendor == "mysql" else ("postgres", 5432)
    return (
        f"{scheme}://{settings['USER']}{password}@{settings['HOST'] or '127.0.0.1'}:"
        f"{settings['PORT'] or port}/{settings['NAME']}"
    )


@contextmanager
def gunicorn_server(
    settings_module: str = "tests.settings",
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    options: tuple[str, ...] = (),
) -> Iterator[str]:
    """Serve the example project with gunicorn on the test database; yields its base URL.
    ``options`` go to gunicorn's command line (for example the gthread worker class).

    The server sees only committed rows: use it from ``transactional_db`` tests.
    ``DJANGO_DEBUG`` is not passed on, so the settings' own default applies.
    """
    port = free_port()
    command = [
        *(sys.executable, "-m", "gunicorn", "project.wsgi:application"),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--timeout", "60"),
        *options,
    ]
    with _served("gunicorn", command, port, settings_module, env, log) as (base_url, _):
        yield base_url


@contextmanager
def uvicorn_server(
    settings_module: str = "tests.settings",
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """Serve the example project over ASGI (uvicorn, one process) on the test database;
    yields its base URL and the process. Use it from ``transactional_db`` tests."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "project.asgi:application"),
        *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--no-access-log"),
    ]
    with _served("uvicorn", command, port, settings_module, env, log) as served:
        yield served


@contextmanager
def _served(
    name: str,
    command: list[str],
    port: int,
    settings_module: str,
    env: dict[str, str] | None,
    log: Path | None,
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """Run a server of the example project on the test database until it listens on
    ``port``; yields its base URL and process, and stops it afterwards. ``DJANGO_DEBUG`` is
    not passed on, so the settings' own default applies."""
    server_env = {
        key: value for key, value in os.environ.items() if key not in {"DJANGO_DEBUG"}
    } | {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": database_url(),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    with open(log or os.devnull, "wb") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=server_env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            eventually(
                lambda: process.poll() is not None or _accepts(port),
                timeout=30,
                what=f"{name} to listen",
            )
            assert process.poll() is None, f"{name} exited with {process.returncode}"
            yield f"http://127.0.0.1:{port}", process
        finally:
            stop(process, timeout=15)


def stop(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Terminate ``process``, and kill it if it has not ended within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def run(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 600,
    merge_stderr: bool = False,
) -> str:
    """Run a command and return its standard output (with its standard error interleaved if
    ``merge_stderr``). Fails the test, showing both, if it exits non-zero or times out."""
    command = " ".join(map(str, args))
    partial = ""
    result: subprocess.CompletedProcess[str] | None
    try:
        result = subprocess.run(
            [str(arg) for arg in args],
            cwd=cwd,
            env=env,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        # The partial output is bytes here, whatever `text` says.
        partial = error.output.decode(errors="replace") if error.output else ""
        result = None
    if result is None:  # outside the except clause, so the failure shows no chained traceback
        pytest.fail(f"`{command}` timed out after {timeout:g} s:\n{partial}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(
            f"`{command}` exited {result.returncode}:\n{result.stdout}\n{result.stderr or ''}",
            pytrace=False,
        )
    return result.stdout


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# --- The admin's pages, as the admin tests read them ------------------------------------------

CHANGELIST_URL = "admin:kernel_status_session_changelist"
CHANGE_URL = "admin:kernel_status_session_change"
CELLS_URL = "admin:kernel_status_cellstatus_changelist"


def parse(content: bytes) -> BeautifulSoup:
    return BeautifulSoup(content.decode(), "html.parser")


def result_rows(content: bytes) -> list[dict[str, Tag]]:
    """The rows of the changelist's ``#result_list`` table, as {field name: cell}."""
    rows = []
    for tr in parse(content).select("#result_list tbody tr"):
        cells = {}
        for cell in tr.find_all(["th", "td"]):
            names = [name for name in cell.get_attribute_list("class") if name.startswith("field-")]
            if names:
                cells[names[0].removeprefix("field-")] = cell
        rows.append(cells)
    return rows


def text_of(tag: Tag | None) -> str:
    assert tag is not None
    return tag.get_text(strip=True)


def row_ids(content: bytes) -> set[str]:
    return {row["session_id"].get_text(strip=True) for row in result_rows(content)}


@dataclass
class Form:
    """What a browser would submit from one ``<form>``, and each control's type."""

    data: dict[str, str]
    types: dict[str, str]


def session_form(content: bytes) -> Form:
    form = parse(content).find("form", id="session_form")
    assert isinstance(form, Tag)
    data: dict[str, str] = {}
    types: dict[str, str] = {}
    for control in form.find_all(["input", "select", "textarea"]):
        name = control.get("name")
        if not isinstance(name, str):
            continue
        if control.name == "select":
            types[name] = "select"
            options = control.find_all("option")
            chosen = [option for option in options if option.has_attr("selected")] or options[:1]
            if chosen:
                data[name] = str(chosen[0].get("value", ""))
        elif control.name == "textarea":
            types[name] = "textarea"
            data[name] = control.get_text()
        else:
            kind = types[name] = str(control.get("type", "text"))
            if kind in {"submit", "button", "reset", "image", "file"}:
                continue
            if kind in {"checkbox", "radio"} and not control.has_attr("checked"):
                continue
            data[name] = str(control.get("value", "on" if kind == "checkbox" else ""))
    return Form(data, types)


def inline_formset(response: Any, inline_class: type[Any]) -> InlineAdminFormSet:
    matches = [
        formset
        for formset in response.context["inline_admin_formsets"]
        if type(formset.opts) is inline_class
    ]
    assert len(matches) == 1, [type(formset.opts) for formset in matches]
    return matches[0]  # type: ignore[no-any-return]


def count_queries(client: Client, url: str) -> tuple[int, Any]:
    """The number of queries of one GET (which must succeed), and its response."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries), response


@contextmanager
def outside_connection() -> Iterator[Any]:
    """A second PostgreSQL connection to the test database, outside Django (autocommit):
    to hold a lock or watch backends while Django's own connection runs a request."""
    import psycopg

    settings_dict = connection.settings_dict
    with psycopg.connect(
        dbname=settings_dict["NAME"],
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"] or None,
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        autocommit=True,
    ) as conn:
        yield conn


def require_prepared_statements() -> Any:
    """The raw psycopg 3 connection of the test database; skips the test elsewhere."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL matter")
    connection.ensure_connection()
    raw: Any = connection.connection
    if not hasattr(raw, "prepare_threshold"):
        pytest.skip("psycopg2 has no server-side binding")
    return raw


@contextmanager
def prepared_statements_allowed() -> Iterator[None]:
    """Prepared statements on, as ``OPTIONS["prepare_threshold"]`` would set them."""
    raw = require_prepared_statements()
    raw.prepare_threshold = 5
    try:
        yield
    finally:
        raw.prepare_threshold = None


def prepared_statements() -> list[str]:
    """The text of every statement prepared on the test database's connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]
