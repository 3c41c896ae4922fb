"""Every Python block of the docs runs.

Each ```python (or ```py) block of docs/*.md, README.md and CHANGELOG.md, found as ``make docs``
finds them (:func:`tests.utils.code_blocks`: blocks indented in lists too), is run by its page's
runner in ``RUNNERS``, with Django set up on the test settings and the test database:

- code for ``manage.py shell`` runs as the shell runs a paste: statement by statement, each
  expression's value ``repr()``'d (which evaluates a queryset), in a fresh namespace, unless
  the page names what it assumes (docs/reference.md: ``user``, ``request``, ``some_moment``);
- a ``settings.py`` fragment runs in the namespace of a fresh ``startproject``'s settings
  module, and its values are checked against what the page says of them;
- ``urls.py`` fragments make the URLconf of requests that must be answered;
- the files of docs/access.md's example app become that app, ``teams``, with its tables.

A page with Python blocks and no runner, a block that its runner leaves unrun, and a runner for
a page without Python blocks each fail: there is no list of blocks to skip. Tracebacks name the
page and its line.
"""

from __future__ import annotations

import ast
import dataclasses
import gc
import io
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.core import checks
from django.core.management import call_command, find_commands
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import override_settings
from django.test.client import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from kernel_status import mirror
from kernel_status.choices import AccessLevel, AccessRole
from kernel_status.events import CellNotification
from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess
from kernel_status.throttle_rates import DEFAULT_RATES
from tests.utils import REPO, STATUS_URL, CodeBlock, code_blocks, get_status, run

PYTHON = {"python", "py", "python3", "py3"}
SOURCES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md", REPO / "CHANGELOG.md"]
# What docs/installation.md's, docs/platform.md's and docs/clients.md's examples talk to.
DOCUMENTED_SERVER = "http://127.0.0.1:8000"


class Page:
    """A page's Python blocks, and which of them its runner ran."""

    def __init__(self, name: str) -> None:
        self.blocks = [b for b in code_blocks(REPO / name) if b.language in PYTHON]
        self._ran: set[CodeBlock] = set()

    def run(
        self,
        block: CodeBlock,
        namespace: dict[str, Any] | None = None,
        replace: dict[str, str] | None = None,
    ) -> list[Any]:
        """Run ``block`` as ``manage.py shell`` runs a paste, with each of ``replace``'s
        placeholders (which must be there) replaced; returns its expressions' values."""
        self._ran.add(block)
        for placeholder, value in (replace or {}).items():
            assert placeholder in block.text, f"{block.where}: no {placeholder!r} to replace"
            block = dataclasses.replace(block, text=block.text.replace(placeholder, value))
        return execute(block, {} if namespace is None else namespace)

    def expect(self, count: int) -> list[CodeBlock]:
        """The blocks, which must be ``count``: a runner that unpacks them says how many."""
        where = [block.where for block in self.blocks]
        assert len(where) == count, f"the runner runs {count} blocks; the page has {where}"
        return self.blocks

    def text(self, block: CodeBlock) -> str:
        """The text of a block that the runner runs its own way (as a file of an app)."""
        self._ran.add(block)
        return block.text

    def unrun(self) -> list[str]:
        return [block.where for block in self.blocks if block not in self._ran]


def execute(block: CodeBlock, namespace: dict[str, Any]) -> list[Any]:
    filename = str(block.path)
    try:
        tree = ast.parse(block.text, filename)
    except SyntaxError as error:
        error.lineno = (error.lineno or 0) + block.line
        raise
    ast.increment_lineno(tree, block.line)  # tracebacks show the page's own lines
    values = []
    for statement in tree.body:
        if isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), filename, "eval"), namespace)
            repr(value)  # what the shell prints
            values.append(value)
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), filename, "exec"), namespace)
    return values


def python_pages() -> list[str]:
    names = [path.relative_to(REPO).as_posix() for path in SOURCES]
    return [name for name in names if Page(name).blocks]


# --- the context the blocks run in ---------------------------------------------------------


@pytest.fixture(scope="module")
def startproject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ``django-admin startproject host``: the files that fragments go into."""
    root = tmp_path_factory.mktemp("startproject")
    call_command("startproject", "host", str(root))
    return root / "host"


def fresh_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The namespace of a fresh project's ``settings.py``, to run a settings fragment in."""
    path: Path = request.getfixturevalue("startproject") / "settings.py"
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "host.settings"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


def example_project_database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The example project's database settings for a PostgreSQL DATABASE_URL."""
    request.getfixturevalue("monkeypatch").setenv("DATABASE_URL", "postgres://app@db:5432/app")
    project = runpy.run_path(str(REPO / "project" / "settings.py"))
    database: dict[str, Any] = project["DATABASES"]["default"]
    return database


def kernel_status_problems(**overrides: Any) -> list[checks.CheckMessage]:
    with override_settings(**overrides):
        return [m for m in checks.run_checks() if (m.id or "").startswith("kernel_status.")]


@contextmanager
def postgresql_connection(options: dict[str, Any]) -> Iterator[BaseDatabaseWrapper]:
    """A new connection to the test database with these OPTIONS."""
    wrapper = connection.copy()  # its own settings_dict: the test run's is left alone
    wrapper.settings_dict["OPTIONS"] = options
    try:
        wrapper.ensure_connection()
        yield wrapper
    finally:
        wrapper.close()  # else the test database could not be dropped after the run


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def commands_of(app: str) -> list[str]:
    module = import_module(app)
    return find_commands(str(Path(module.__file__ or "").parent / "management"))


@contextmanager
def team_app() -> Iterator[ModuleType]:
    """docs/access.md's ``teams`` app (on ``sys.path``), installed, with its tables; yields
    its models module. All of it is removed on exit, so later tests never see the app."""
    try:
        with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "teams"]):
            models = import_module("teams.models")
            tables = [models.Team, models.Membership, models.TeamSession]
            with connection.schema_editor() as editor:
                for model in tables:
                    editor.create_model(model)
            try:
                yield models
            finally:
                with connection.schema_editor() as editor:
                    for model in reversed(tables):
                        editor.delete_model(model)
    finally:
        for name in [name for name in sys.modules if name.partition(".")[0] == "teams"]:
            del sys.modules[name]
        apps.all_models.pop("teams", None)
        apps.clear_cache()


# --- the runners, one per page -------------------------------------------------------------

Runner = Callable[["Page", pytest.FixtureRequest], None]
RUNNERS: dict[str, tuple[Runner, list[pytest.MarkDecorator]]] = {}


def runs(page: str, *marks: pytest.MarkDecorator) -> Callable[[Runner], Runner]:
    """Registers the runner of ``page``'s blocks, with the marks its test needs (the
    database: pytest-django sets it up for the marks the collected tests carry)."""

    def register(runner: Runner) -> Runner:
        RUNNERS[page] = (runner, list(marks))
        return runner

    return register


@runs("docs/installation.md", pytest.mark.django_db)
def installation(page: Page, request: pytest.FixtureRequest) -> None:
    first_lines = {block: block.first_line for block in page.blocks}
    settings_blocks = [b for b, first in first_lines.items() if first == "# settings.py"]
    urls_blocks = [b for b, first in first_lines.items() if first == "# urls.py"]
    [shell] = [b for b, first in first_lines.items() if first == "# python manage.py shell"]

    host = fresh_settings(request)
    for block in settings_blocks:
        page.run(block, host)
    assert host["INSTALLED_APPS"][-5:] == [
        *("rest_framework", "rest_framework.authtoken", "drf_spectacular", "kernel_status"),
        "drf_spectacular_sidecar",
    ]
    authentication = host["REST_FRAMEWORK"]["DEFAULT_AUTHENTICATION_CLASSES"]
    assert authentication[0] == "rest_framework.authentication.TokenAuthentication"
    assert host["DATABASES"]["default"]["OPTIONS"] == {"transaction_mode": "IMMEDIATE"}
    assert host["SPECTACULAR_SETTINGS"]["SWAGGER_UI_DIST"] == "SIDECAR"
    # As the page's project has it: startproject's DEBUG = True (W002 is for production).
    assert kernel_status_problems(REST_FRAMEWORK=host["REST_FRAMEWORK"], DEBUG=host["DEBUG"]) == []

    # The URLconf: startproject's urls.py with the fragments appended, in order.
    urls = ModuleType("docs_installation_urls")
    path = request.getfixturevalue("startproject") / "urls.py"
    exec(compile(path.read_text(), str(path), "exec"), urls.__dict__)
    for block in urls_blocks:
        page.run(block, urls.__dict__)
    request.getfixturevalue("monkeypatch").setitem(sys.modules, urls.__name__, urls)

    page.run(shell)
    ada = User.objects.get(username="ada")
    with override_settings(ROOT_URLCONF=urls.__name__):
        for name in ["status", "events", "sessions"]:
            assert reverse(f"kernel_status:{name}") == f"/api/kernel/{name}"
        answer = get_status(token_client(ada), "s_first")
        assert (answer.status_code, answer.json()) == (
            200,
            {"state": "stopped", "last_activity": None},
        )
        schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
        assert schema.status_code == 200
        assert STATUS_URL in json.loads(schema.content)["paths"]
        swagger = APIClient().get("/api/docs/")
        assert swagger.status_code == 200
        assert b"swagger-ui" in swagger.content


@runs("docs/platform.md", pytest.mark.django_db)
def platform(page: Page, request: pytest.FixtureRequest) -> None:
    register, close, service_account, report = page.expect(4)
    # In the order of a session's life: registered, reported on, closed.
    page.run(register)
    session = Session.objects.get(session_id="s_abc")
    assert (session.owner.username, session.notebook) == ("alice", "notebooks/train.py")
    grants = SessionAccess.objects.filter(session=session).values_list("user__username", "role")
    assert sorted(grants) == [("bob", AccessRole.EDIT), ("carol", AccessRole.VIEW)]

    page.run(service_account)
    assert User.objects.get(username="kernel-host").has_perm("kernel_status.report_kernel_events")

    page.run(report)
    # The cell-op is newer than the kernel's start, so it applied.
    assert CellStatus.objects.get(session=session, cell_id="Hbol").status == "running"
    kernel = KernelProcess.objects.get(session=session)
    assert (kernel.state, kernel.exit_code, kernel.exit_cause) == (
        "stopped",
        -9,
        "killed by signal 9",
    )

    page.run(close)
    assert not Session.objects.filter(session_id="s_abc").exists()


# transaction=True: the example app's tables are created and dropped outside a test transaction.
@runs("docs/access.md", pytest.mark.django_db(transaction=True))
def access(page: Page, request: pytest.FixtureRequest) -> None:
    view_block, models_block, policy_block, settings_block, method_block, token_block = page.expect(
        6
    )
    owner, editor, viewer, stranger = (
        User.objects.create_user(name) for name in ["owner", "editor", "viewer", "stranger"]
    )
    session = mirror.register_session("s_team", owner=owner, notebook="nb.py")
    SessionAccess.objects.create(session=session, user=editor, role=AccessRole.EDIT)
    SessionAccess.objects.create(session=session, user=viewer, role=AccessRole.VIEW)

    views: dict[str, Any] = {}
    page.run(view_block, views)
    restart = views["RestartKernelView"].as_view()
    for user, status in [(owner, 202), (editor, 202), (viewer, 403), (stranger, 404)]:
        post = APIRequestFactory().post(f"/sessions/{session.session_id}/restart")
        force_authenticate(post, user)
        assert restart(post, session_id=session.session_id).status_code == status, user

    # teams/models.py, and teams/access.py with the method added at its end, as the page says.
    app = request.getfixturevalue("tmp_path") / "teams"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(page.text(models_block))
    (app / "access.py").write_text(
        "\n".join(page.text(block) for block in (policy_block, method_block, token_block))
    )
    request.getfixturevalue("monkeypatch").syspath_prepend(str(app.parent))
    host = fresh_settings(request)
    page.run(settings_block, host)

    with team_app() as teams:
        policy = import_module("teams.access").TeamAccessPolicy
        assert "compiled_query_key" in vars(policy)  # the methods joined the class
        assert "token_access_level_expression" in vars(policy)
        alpha = teams.Team.objects.create(name="alpha")
        beta = teams.Team.objects.create(name="beta")
        teams.TeamSession.objects.create(session=session, team=alpha)
        other = mirror.register_session("s_beta", owner=owner, notebook="nb.py")
        teams.TeamSession.objects.create(session=other, team=beta)
        admin_a, admin_b, member_a = (
            User.objects.create_user(name) for name in ["admin-a", "admin-b", "member-a"]
        )
        teams.Membership.objects.create(team=alpha, user=admin_a, role="admin")
        teams.Membership.objects.create(team=beta, user=admin_b, role="admin")
        teams.Membership.objects.create(team=alpha, user=member_a, role="member")
        with override_settings(KERNEL_STATUS_ACCESS_POLICY=host["KERNEL_STATUS_ACCESS_POLICY"]):
            assert kernel_status_problems() == []
            # The two admins share a compiled query: each must still see only their team's.
            for user, session_id, status in [
                (admin_a, "s_team", 200),
                (admin_b, "s_team", 404),
                (admin_b, "s_beta", 200),
                (member_a, "s_team", 403),
                (editor, "s_team", 200),  # the default rules still apply
                (stranger, "s_team", 404),
            ]:
                client = APIClient()
                client.force_authenticate(user)
                assert get_status(client, session_id).status_code == status, (user, session_id)
                # The same answer on the one-statement token path, in one query.
                token, _ = Token.objects.get_or_create(user=user)
                by_token = APIClient()
                by_token.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
                with CaptureQueriesContext(connection) as queries:
                    answer = get_status(by_token, session_id)
                assert answer.status_code == status, (user, session_id, "token")
                assert len(queries) == 1, [query["sql"] for query in queries]


@runs("docs/bridge.md")
def bridge(page: Page, request: pytest.FixtureRequest) -> None:
    installed_apps, bridge_settings = page.expect(2)
    host = fresh_settings(request)
    page.run(installed_apps, host)
    assert host["INSTALLED_APPS"][-2:] == ["kernel_status", "kernel_status.contrib.marimo"]
    assert "kernel_status_bridge" in commands_of(host["INSTALLED_APPS"][-1])

    # The HTTP mode's settings module, used as the page says.
    directory = request.getfixturevalue("tmp_path")
    (directory / "bridge_settings.py").write_text(page.text(bridge_settings))
    leaky = {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH"}
    env = {key: value for key, value in os.environ.items() if key not in leaky}
    env["PYTHONPATH"] = os.pathsep.join([str(directory), str(REPO)])
    django_admin = [sys.executable, "-m", "django"]
    check = run(*django_admin, "check", "--settings", "bridge_settings", cwd=directory, env=env)
    assert check.strip() == "System check identified no issues (0 silenced)."
    usage = run(
        *django_admin, "kernel_status_bridge", "--settings", "bridge_settings", "--help", env=env
    )
    assert "--api-url" in usage


# transaction=True: the live server sees committed rows only.
@runs("docs/clients.md", pytest.mark.django_db(transaction=True))
def clients(page: Page, request: pytest.FixtureRequest) -> None:
    from kernel_status_client.models import KernelStatusResponse, KernelStatusStateEnum

    live_server = request.getfixturevalue("live_server")
    demo = io.StringIO()
    call_command("kernel_status_demo", "--json", stdout=demo)
    editor = json.loads(demo.getvalue())["users"]["editor"]
    python_client, wait = page.expect(2)
    # The page's server and token are the demo's (the token shortened): these are the test's.
    replace = {DOCUMENTED_SERVER: live_server.url, '"1e927f47..."': json.dumps(editor)}
    namespace: dict[str, Any] = {}
    page.run(python_client, namespace, replace=replace)
    assert namespace["answer"] == KernelStatusResponse(
        state=KernelStatusStateEnum.RUNNING, last_activity=None
    )
    namespace = {}
    page.run(wait, namespace, replace=replace)
    assert namespace["idle"].state is KernelStatusStateEnum.IDLE
    assert namespace["stopped"] == KernelStatusResponse(
        state=KernelStatusStateEnum.STOPPED, last_activity=None
    )


# transaction=True: the uvicorn server (another process) sees committed rows only.
@runs("docs/watching.md", pytest.mark.django_db(transaction=True))
def watching(page: Page, request: pytest.FixtureRequest) -> None:
    from tests.utils import uvicorn_server

    demo = io.StringIO()
    call_command("kernel_status_demo", "--json", stdout=demo)
    editor = json.loads(demo.getvalue())["users"]["editor"]
    [python_client] = page.expect(1)
    # Waiting needs ASGI: the page's server is a uvicorn process; its 30 s wait is cut to 1 s.
    with uvicorn_server() as (url, _):
        replace = {DOCUMENTED_SERVER: url, '"1e927f47..."': json.dumps(editor), "wait=30": "wait=1"}
        namespace: dict[str, Any] = {}
        page.run(python_client, namespace, replace=replace)
    assert namespace["change"].changed is False
    assert namespace["change"].waited == 1
    assert namespace["states"] == {
        "demo-idle": "idle",
        "demo-running": "running",
        "demo-stopped": "stopped",
        "demo-not-started": "stopped",
    }


@runs("docs/deployment.md", pytest.mark.django_db)
def deployment(page: Page, request: pytest.FixtureRequest) -> None:
    docs_pages, timeouts, persistent, caches, parking, collection = page.expect(6)
    host = fresh_settings(request)
    page.run(docs_pages, host)
    assert host["SPECTACULAR_SETTINGS"]["SERVE_PERMISSIONS"] == [
        "rest_framework.permissions.IsAuthenticated"
    ]

    example = example_project_database(request)  # "The example project ...", as shown

    host = fresh_settings(request)
    page.run(timeouts, host)
    options = host["DATABASES"]["default"]["OPTIONS"]
    assert options == example["OPTIONS"]
    if connection.vendor == "postgresql":  # libpq's options: the server applies them
        with postgresql_connection(options) as wrapper, wrapper.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone() == ("5s",)

    host = fresh_settings(request)  # DATABASE_URL is the PostgreSQL one above
    page.run(persistent, host)
    database = host["DATABASES"]["default"]
    assert (database["ENGINE"], database["NAME"]) == ("django.db.backends.postgresql", "app")
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (
        example["CONN_MAX_AGE"],
        example["CONN_HEALTH_CHECKS"],
    )

    # The production settings' cache, as shown, with the REDIS_URL they read.
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/15")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "docs-test-" + "x" * 50)
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", "example.com")
    host = fresh_settings(request)
    page.run(caches, host)
    production = runpy.run_path(str(REPO / "project" / "settings_production.py"))
    assert host["CACHES"] == production["CACHES"]

    # The parking middleware and the garbage-collection thresholds, as shown, are the
    # example ASGI entry point's own.
    entry_point = (REPO / "project" / "asgi.py").read_text()
    assert page.text(parking).strip() in entry_point
    assert page.text(collection).strip() in entry_point
    before = gc.get_threshold()
    try:
        page.run(collection, {"gc": gc})
        assert gc.get_threshold() == (10_000, 10, 10)
    finally:
        gc.set_threshold(*before)


@runs("docs/performance.md", pytest.mark.django_db)
def performance(page: Page, request: pytest.FixtureRequest) -> None:
    [prepared] = page.expect(1)
    host = fresh_settings(request)
    page.run(prepared, host)
    options = host["DATABASES"]["default"]["OPTIONS"]
    assert options == {"prepare_threshold": 5}
    if connection.vendor == "postgresql":  # psycopg 3 takes it as a connection option
        with postgresql_connection(options) as wrapper:
            assert wrapper.connection.prepare_threshold == 5


@runs("docs/pollers.md")
def pollers(page: Page, request: pytest.FixtureRequest) -> None:
    [installed_apps] = page.expect(1)
    host = fresh_settings(request)
    page.run(installed_apps, host)
    assert host["INSTALLED_APPS"] == ["kernel_status", "kernel_status.contrib.marimo"]
    commands = commands_of(host["INSTALLED_APPS"][-1])
    assert {"kernel_status_bridge", "kernel_status_cull"} <= set(commands)


@runs("docs/reference.md", pytest.mark.django_db)
def reference(page: Page, request: pytest.FixtureRequest) -> None:
    [python_api] = page.expect(1)
    user = User.objects.create_user("ada")
    session = mirror.register_session("s_ref", owner=user, notebook="nb.py")
    mirror.kernel_started("s_ref")
    mirror.apply_events("s_ref", [CellNotification("c1", timezone.now(), status="running")])
    http_request = RequestFactory().get("/")
    http_request.user = user
    # What the page says these lines assume.
    namespace = {
        "user": user,
        "request": http_request,
        # Past the liveness window, when no heartbeat has come since the start.
        "some_moment": timezone.now() + timedelta(minutes=5),
    }
    values = page.run(python_api, namespace)
    state, later, level, visible, running, raw = ([(s, vars(s)) for s in q] for q in values)
    assert [(s.session_id, extra["state"]) for s, extra in state] == [("s_ref", "running")]
    assert [extra["state"] for _, extra in later] == ["stopped"]
    assert [extra["access_level"] for _, extra in level] == [AccessLevel.EDIT]
    assert [s for s, _ in visible] == [s for s, _ in running] == [session]
    assert [extra["state"] for _, extra in raw] == ["running"]


@runs("docs/settings.md")
def settings_page(page: Page, request: pytest.FixtureRequest) -> None:
    [rates] = page.expect(1)
    host = fresh_settings(request)
    page.run(rates, host)
    # The block shows the defaults, and they pass check kernel_status.E009.
    assert host["REST_FRAMEWORK"]["DEFAULT_THROTTLE_RATES"] == DEFAULT_RATES
    # As the page's project has it: startproject's DEBUG = True (W002 is for production).
    assert kernel_status_problems(REST_FRAMEWORK=host["REST_FRAMEWORK"], DEBUG=host["DEBUG"]) == []


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=RUNNERS.get(name, (None, []))[1]) for name in python_pages()],
)
def test_every_python_block_runs(name: str, request: pytest.FixtureRequest) -> None:
    if name not in RUNNERS:
        pytest.fail(f"{name} has Python blocks: give it a runner (@runs)", pytrace=False)
    page = Page(name)
    RUNNERS[name][0](page, request)
    assert page.unrun() == [], "blocks that the page's runner did not run"


def test_every_runner_is_for_a_page_with_python_blocks() -> None:
    assert sorted(RUNNERS) == sorted(python_pages())
