"""What an attacker or a broken client tried: deep JSON, chunked bodies, a frozen or restarted
database, debug pages, guessed tokens. Each answer is JSON (or a plain 400/404), never a hang."""

from __future__ import annotations

import http.client
import importlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import InterfaceError, connection
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from kernel_status.models import Session
from tests.utils import (
    EVENTS_URL,
    REPO,
    SESSION_ID,
    free_port,
    get_status,
    gunicorn_server,
    outside_connection,
)

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: locks, timeouts, backends"
)


def request(
    base_url: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def reporter_token(session: Session, users: dict[str, User]) -> str:
    """A token of the session's owner, who may also report events."""
    users["owner"].user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
    key: str = Token.objects.create(user=users["owner"]).key
    return key


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}", "Marimo-Session-Id": SESSION_ID}


# --- 1. deeply nested JSON -------------------------------------------------------------------


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deeply_nested_json_is_a_400(session: Session, reporter_token: str, depth: int) -> None:
    body = '{"events": [' + "[" * depth + "]" * depth + "]}"
    response = APIClient().post(
        EVENTS_URL, body, content_type="application/json", headers=auth(reporter_token)
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - nested too deeply."}


@override_settings(DEBUG=True)
def test_a_bug_is_a_json_500_even_with_debug_on(
    session: Session, reporter_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("kernel_status.api.views.ingest", broken)
    response = APIClient().post(
        EVENTS_URL, {"events": []}, format="json", headers=auth(reporter_token)
    )
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Internal server error."}


# --- database trouble ------------------------------------------------------------------------


def test_a_lost_connection_is_a_503(
    session: Session, reporter_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(*args: Any, **kwargs: Any) -> Any:
        raise InterfaceError("connection already closed")

    monkeypatch.setattr("kernel_status.mirror.ingest.apply_events", lost)
    response = APIClient().post(
        EVENTS_URL, {"events": []}, format="json", headers=auth(reporter_token)
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json() == {"detail": "The database is busy; retry shortly."}


def test_example_project_bounds_every_wait_on_postgresql() -> None:
    # In a subprocess: the settings module reads DATABASE_URL when imported.
    code = "import json, project.settings as s; print(json.dumps(s.DATABASES['default']))"
    env = {**os.environ, "DATABASE_URL": "postgres://u@db:5432/app", "PYTHONPATH": str(REPO)}
    database = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, check=True
        ).stdout
    )
    assert database["OPTIONS"] == {"connect_timeout": 5, "options": "-c statement_timeout=5000"}
    assert database["CONN_MAX_AGE"] == 60
    assert database["CONN_HEALTH_CHECKS"] is True


@pytest.fixture
def admin_connection() -> Iterator[psycopg.Connection[Any]]:
    """A second connection to the test database, outside Django."""
    with outside_connection() as conn:
        yield conn


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_frozen_database_gives_503_within_the_statement_timeout(
    reporter_token: str, admin_connection: psycopg.Connection[Any]
) -> None:
    with gunicorn_server(env={"DATABASE_STATEMENT_TIMEOUT": "500"}) as base_url:
        headers = auth(reporter_token)
        assert request(base_url, "GET", "/api/kernel/status", headers=headers)[0] == 200
        with admin_connection.transaction():
            admin_connection.execute("LOCK TABLE kernel_status_session IN ACCESS EXCLUSIVE MODE")
            for method, path, body in [
                ("GET", "/api/kernel/status", None),
                ("POST", EVENTS_URL, b'{"events": []}'),
            ]:
                started = time.monotonic()
                status, response_headers, content = request(
                    base_url,
                    method,
                    path,
                    headers={**headers, "Content-Type": "application/json"},
                    body=body,
                )
                elapsed = time.monotonic() - started
                assert status == 503
                assert response_headers["Retry-After"] == "1"
                assert json.loads(content) == {"detail": "The database is busy; retry shortly."}
                # Not a speed test: only that it did not hang until the worker was killed.
                assert elapsed < 20
        assert request(base_url, "GET", "/api/kernel/status", headers=headers)[0] == 200


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_next_request_after_a_database_restart_succeeds(
    reporter_token: str, admin_connection: psycopg.Connection[Any]
) -> None:
    # project.settings: persistent connections (CONN_MAX_AGE) with CONN_HEALTH_CHECKS.
    with gunicorn_server("project.settings") as base_url:
        headers = auth(reporter_token)
        assert request(base_url, "GET", "/api/kernel/status", headers=headers)[0] == 200
        # What a restart does to the worker's persistent connection.
        mine = [admin_connection.info.backend_pid]
        if connection.connection is not None:
            mine.append(connection.connection.info.backend_pid)
        terminated = admin_connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> ALL(%s)",
            [mine],
        ).fetchall()
        assert terminated, "the worker kept no connection open"
        status, _, content = request(base_url, "GET", "/api/kernel/status", headers=headers)
        assert status == 200
        assert json.loads(content)["state"] == "stopped"


# --- chunked bodies --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_gets_411_over_real_http(reporter_token: str) -> None:
    with gunicorn_server() as base_url:
        status, headers, content = request(
            base_url,
            "POST",
            EVENTS_URL,
            headers={
                **auth(reporter_token),
                "Content-Type": "application/json",
                "Transfer-Encoding": "chunked",
            },
            body=iter([b'{"events": ', b"[]}"]),
        )
        assert status == 411
        assert headers["Content-Type"] == "application/json"
        assert json.loads(content) == {
            "detail": "A Content-Length header is required; chunked bodies are not accepted."
        }
        status, _, content = request(
            base_url,
            "POST",
            EVENTS_URL,
            headers={**auth(reporter_token), "Content-Type": "application/json"},
            body=b'{"events": []}',
        )
        assert (status, json.loads(content)) == (200, {"applied": 0, "ignored_older": 0})


# --- debug pages -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_debug_pages_from_the_example_project(reporter_token: str) -> None:
    with gunicorn_server("project.settings") as base_url:
        foreign = request(base_url, "GET", "/api/kernel/status", headers={"Host": "evil.example"})
        unknown = request(base_url, "GET", "/nope")
    assert foreign[0] == 400
    assert unknown[0] == 404
    for _, _, content in [foreign, unknown]:
        assert len(content) < 1000
        leaks = [b"DisallowedHost", b"Traceback", b"SECRET_KEY", b"api/kernel/", b"urlpatterns"]
        assert not [leak for leak in leaks if leak in content]


def test_debug_is_off_unless_asked_for() -> None:
    code = "import project.settings as s; print(s.DEBUG)"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"} | {"PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, check=True, text=True
    )
    assert run.stdout.strip() == "False"


def run_with_production_settings(
    *args: str, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in the checkout with project.settings_production and its required
    environment; ``env`` adds variables, or removes those given as None."""
    base = {
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "project.settings_production",
        "DJANGO_SECRET_KEY": "k" + os.urandom(40).hex(),
        "DJANGO_ALLOWED_HOSTS": "kernels.example.com",
        "DJANGO_DEBUG": None,
        "DJANGO_NUM_PROXIES": None,
        "REDIS_URL": None,
        **(env or {}),
    }
    full = {k: v for k, v in os.environ.items() if k not in base} | {
        k: v for k, v in base.items() if v is not None
    }
    return subprocess.run(
        [sys.executable, *args], env=full, cwd=REPO, capture_output=True, text=True
    )


def test_production_settings_pass_the_deploy_check() -> None:
    run = run_with_production_settings(
        "manage.py",
        *("check", "--deploy", "--fail-level", "WARNING"),
        env={"REDIS_URL": "redis://127.0.0.1:6379/0"},  # not connected to by the checks
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "System check identified no issues (0 silenced)." in run.stdout


def test_production_settings_without_redis_warn_that_limits_multiply() -> None:
    run = run_with_production_settings("manage.py", "check", "--deploy", env={"REDIS_URL": None})
    assert run.returncode == 0, run.stderr
    assert "(kernel_status.W002) Rate limits are on" in run.stderr + run.stdout
    assert "LocMemCache" in run.stderr + run.stdout


def test_production_settings_count_in_redis_when_redis_url_is_set() -> None:
    code = "import django; django.setup(); from django.conf import settings; "
    code += "import json; print(json.dumps(settings.CACHES['default']))"
    run = run_with_production_settings("-c", code, env={"REDIS_URL": "redis://cache:6379/2"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://cache:6379/2",
        "KEY_PREFIX": "kernel_status",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }


@pytest.mark.parametrize(("env", "expected"), [({}, "1"), ({"DJANGO_NUM_PROXIES": "2"}, "2")])
def test_production_settings_take_the_client_ip_from_behind_the_proxies(
    env: dict[str, str | None], expected: str
) -> None:
    code = "import django; django.setup(); from rest_framework.settings import api_settings; "
    code += "print(api_settings.NUM_PROXIES)"
    run = run_with_production_settings("-c", code, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected


def test_production_settings_have_no_secret_key_fallback() -> None:
    run = run_with_production_settings("manage.py", "check", env={"DJANGO_SECRET_KEY": None})
    assert run.returncode != 0
    assert "KeyError: 'DJANGO_SECRET_KEY'" in run.stderr


# --- throttling ------------------------------------------------------------------------------


def rates(**scopes: str | None) -> Any:
    """override_settings for kernel_status's throttle scopes, on a cleared cache."""
    cache.clear()
    rest_framework = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {f"kernel_status.{k}": v for k, v in scopes.items()},
    }
    return override_settings(REST_FRAMEWORK=rest_framework)


def test_guessed_tokens_get_429_after_the_failed_auth_rate(
    session: Session, reporter_token: str
) -> None:
    with rates(status=None, events=None, failed_auth="5/min"):
        answers = []
        for guess in range(300):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {guess:040x}")
            answers.append(get_status(client, SESSION_ID))
        assert [r.status_code for r in answers] == [401] * 5 + [429] * 295
        throttled = answers[-1]
        assert throttled.json()["detail"].startswith("Request was throttled.")
        # At most the window and a fifth: the sliding window counts the previous minute's 5
        # as spread over it, so the next try fits once 1 of them has faded (12 s in).
        assert 0 < int(throttled["Retry-After"]) <= 72
        # The IP is refused before unproven credentials are looked at: even a right guess
        # (a good token that has not authenticated lately) learns nothing.
        good = APIClient()
        good.credentials(HTTP_AUTHORIZATION=f"Token {reporter_token}")
        assert get_status(good, SESSION_ID).status_code == 429
        assert good.post(EVENTS_URL, {"events": []}, format="json").status_code == 429
    cache.clear()


def token_client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def guess(count: int) -> list[int]:
    return [get_status(token_client_for(f"{n:040x}"), SESSION_ID).status_code for n in range(count)]


def test_a_working_token_keeps_working_while_a_guesser_shares_its_ip(
    session: Session, reporter_token: str
) -> None:
    good = token_client_for(reporter_token)
    headers = {"Marimo-Session-Id": SESSION_ID}
    with rates(status=None, events=None, failed_auth="5/min"):
        assert get_status(good, SESSION_ID).status_code == 200  # authenticates: proven
        assert guess(8) == [401] * 5 + [429] * 3
        # The budget is spent, yet the proven token passes on both endpoints, again and again,
        # and its successes do not count against the IP.
        for _ in range(20):
            assert get_status(good, SESSION_ID).status_code == 200
            posted = good.post(EVENTS_URL, {"events": []}, format="json", headers=headers)
            assert posted.json() == {"applied": 0, "ignored_older": 0}
        assert guess(3) == [429] * 3
    cache.clear()


def test_only_failures_count(session: Session, reporter_token: str) -> None:
    good = token_client_for(reporter_token)
    with rates(status=None, events=None, failed_auth="2/min"):
        assert [get_status(good, SESSION_ID).status_code for _ in range(10)] == [200] * 10
        assert guess(3) == [401, 401, 429]
    cache.clear()


def test_a_revoked_token_loses_its_pass(session: Session, reporter_token: str) -> None:
    good = token_client_for(reporter_token)
    with rates(status=None, events=None, failed_auth="2/min"):
        assert get_status(good, SESSION_ID).status_code == 200
        assert guess(3) == [401, 401, 429]
        Token.objects.filter(key=reporter_token).delete()
        # Still looked at once (it was proven), found bad, and refused unseen from then on.
        assert get_status(good, SESSION_ID).status_code == 401
        assert get_status(good, SESSION_ID).status_code == 429
    cache.clear()


def test_the_pass_is_kept_in_the_cache_as_a_keyed_hash(
    session: Session, reporter_token: str
) -> None:
    with rates(status=None, events=None, failed_auth="2/min"):
        assert get_status(token_client_for(reporter_token), SESSION_ID).status_code == 200
        stored = [key for key in cache._cache if "proof" in key]
        assert len(stored) == 1
        assert reporter_token not in stored[0]
    cache.clear()


def test_anonymous_calls_count_as_failed_authentication(session: Session) -> None:
    with rates(status=None, events=None, failed_auth="2/min"):
        statuses = [get_status(APIClient(), SESSION_ID).status_code for _ in range(4)]
        assert statuses == [401, 401, 429, 429]
    cache.clear()


def test_status_reads_are_limited_per_user(
    make_session: Any, token_client: Any, users: dict[str, User]
) -> None:
    make_session(SESSION_ID)
    editor, owner = token_client("editor"), token_client("owner")
    with rates(status="3/min", events=None, failed_auth=None):
        assert [get_status(editor, SESSION_ID).status_code for _ in range(4)] == [200] * 3 + [429]
        throttled = get_status(editor, SESSION_ID)
        assert throttled.json()["detail"].startswith("Request was throttled.")
        assert int(throttled["Retry-After"]) > 0
        assert throttled["Cache-Control"] == "no-store"
        assert get_status(owner, SESSION_ID).status_code == 200  # another user's own count
    cache.clear()


def test_event_reports_are_limited_per_user(session: Session, reporter_token: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {reporter_token}")
    headers = {"Marimo-Session-Id": SESSION_ID}
    with rates(status=None, events="2/min", failed_auth=None):
        statuses = [
            client.post(EVENTS_URL, {"events": []}, format="json", headers=headers).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
    cache.clear()


def test_session_listings_are_limited_per_user(token_client: Any) -> None:
    editor = token_client("editor")
    with rates(status=None, events=None, sessions="2/min", failed_auth=None):
        statuses = [editor.get("/api/kernel/sessions").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
    cache.clear()


def test_without_host_rates_the_defaults_apply(session: Session) -> None:
    cache.clear()
    rest_framework = {k: v for k, v in settings.REST_FRAMEWORK.items() if "THROTTLE" not in k}
    with override_settings(REST_FRAMEWORK=rest_framework):
        statuses = [get_status(APIClient(), SESSION_ID).status_code for _ in range(31)]
    assert statuses == [401] * 30 + [429]  # kernel_status.failed_auth: 30/min
    cache.clear()


def test_behind_a_proxy_each_client_has_its_own_failure_budget(
    session: Session, reporter_token: str
) -> None:
    def status(token: str, client_ip: str) -> int:
        client = token_client_for(token)
        # The proxy (10.0.0.1) appends the address it saw; the first one is the client's claim.
        forwarded = {
            "HTTP_X_FORWARDED_FOR": f"198.51.100.1, {client_ip}",
            "REMOTE_ADDR": "10.0.0.1",
        }
        return int(get_status(client, SESSION_ID, **forwarded).status_code)

    # (The second override starts from the first one's settings: with enters them in order.)
    with (
        rates(status=None, events=None, failed_auth="2/min"),
        override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}),
    ):
        assert [status(f"{n:040x}", "203.0.113.5") for n in range(3)] == [401, 401, 429]
        # Another client behind the same proxy, with a token never used before.
        assert status(reporter_token, "203.0.113.6") == 200
    cache.clear()


# --- MariaDB and MySQL -----------------------------------------------------------------------

on_mysql = pytest.mark.skipif(connection.vendor != "mysql", reason="needs MariaDB or MySQL")


def test_example_project_bounds_every_wait_on_mysql() -> None:
    code = (
        "import json, project.settings as s, django.db.backends.signals as g; "
        "print(json.dumps([s.DATABASES['default'], "
        "[r[1]() is not None for r in g.connection_created.receivers]]))"
    )
    env = {**os.environ, "DATABASE_URL": "mysql://u@db:3306/app", "PYTHONPATH": str(REPO)}
    database, receivers = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, check=True
        ).stdout
    )
    assert database["OPTIONS"] == {
        "charset": "utf8mb4",
        "isolation_level": "read committed",
        "connect_timeout": 5,
        "init_command": "SET SESSION innodb_lock_wait_timeout = 5, lock_wait_timeout = 5",
    }
    assert database["TEST"] == {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    # project.mysql's receiver, which sets the statement timeout per connection.
    assert receivers == [True]


@on_mysql
@pytest.mark.django_db
def test_each_connection_gets_the_statement_and_lock_timeouts() -> None:
    with connection.cursor() as cursor:
        if connection.mysql_is_mariadb:
            cursor.execute(
                "SELECT @@max_statement_time, @@innodb_lock_wait_timeout, @@lock_wait_timeout"
            )
            assert cursor.fetchone() == (5.0, 5, 5)
        else:
            cursor.execute(
                "SELECT @@max_execution_time, @@innodb_lock_wait_timeout, @@lock_wait_timeout"
            )
            assert cursor.fetchone() == (5000, 5, 5)
        cursor.execute("SELECT @@character_set_connection")
        assert cursor.fetchone() == ("utf8mb4",)


@on_mysql
@pytest.mark.django_db(transaction=True)
def test_a_refused_connection_is_a_503_on_mysql(reporter_token: str) -> None:
    # Nothing listens on the port: MySQLdb's "Can't connect" (2002), Django's OperationalError.
    refused = f"mysql://root@127.0.0.1:{free_port()}/{connection.settings_dict['NAME']}"
    with gunicorn_server(env={"DATABASE_URL": refused, "DATABASE_CONNECT_TIMEOUT": "2"}) as url:
        for method, path, body in [
            ("GET", "/api/kernel/status", None),
            ("POST", EVENTS_URL, b'{"events": []}'),
        ]:
            status, headers, content = request(
                url,
                method,
                path,
                headers={**auth(reporter_token), "Content-Type": "application/json"},
                body=body,
            )
            assert status == 503, content
            assert headers["Retry-After"] == "1"
            assert json.loads(content) == {"detail": "The database is busy; retry shortly."}


@on_mysql
@pytest.mark.django_db(transaction=True)
def test_a_lock_wait_timeout_is_a_503_and_reads_do_not_wait_on_mysql(
    reporter_token: str, users: dict[str, User]
) -> None:
    mysqldb = pytest.importorskip("MySQLdb")
    settings_dict = connection.settings_dict
    other = mysqldb.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=int(settings_dict["PORT"] or 3306),
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"] or "",
        database=settings_dict["NAME"],
    )
    try:
        # DATABASE_STATEMENT_TIMEOUT=1000: innodb_lock_wait_timeout = 1 second.
        with gunicorn_server(env={"DATABASE_STATEMENT_TIMEOUT": "1000"}) as url:
            headers = {**auth(reporter_token), "Content-Type": "application/json"}
            cursor = other.cursor()
            cursor.execute("BEGIN")
            cursor.execute(
                "SELECT id FROM kernel_status_session WHERE session_id = %s FOR UPDATE",
                [SESSION_ID],
            )
            body = json.dumps(
                {"events": [{"op": "kernel-started", "data": {"timestamp": time.time()}}]}
            ).encode()
            status, response_headers, content = request(
                url,
                "POST",
                EVENTS_URL,
                headers={**headers, "Marimo-Session-Id": SESSION_ID},
                body=body,
            )
            assert status == 503, content
            assert response_headers["Retry-After"] == "1"
            assert json.loads(content) == {"detail": "The database is busy; retry shortly."}
            # READ COMMITTED: a read takes no lock, so it does not wait for the writer.
            owner_token = Token.objects.get_or_create(user=users["owner"])[0].key
            status, _, content = request(
                url,
                "GET",
                "/api/kernel/status",
                headers={**auth(owner_token), "Marimo-Session-Id": SESSION_ID},
            )
            assert status == 200, content
            other.rollback()
            status, _, content = request(
                url,
                "POST",
                EVENTS_URL,
                headers={**headers, "Marimo-Session-Id": SESSION_ID},
                body=body,
            )
            assert status == 200, content
    finally:
        other.close()
    assert Session.objects.get(session_id=SESSION_ID).kernel.state == "running"


@on_mysql
@pytest.mark.django_db(transaction=True)
def test_a_frozen_database_gives_503_within_the_statement_timeout_on_mysql(
    reporter_token: str, tmp_path: Path
) -> None:
    """A table lock held elsewhere (a migration's ALTER, a LOCK TABLES) stalls every
    statement on that table, reads included: the statement timeout ends the wait."""
    mysqldb = pytest.importorskip("MySQLdb")
    settings_dict = connection.settings_dict
    other = mysqldb.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=int(settings_dict["PORT"] or 3306),
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"] or "",
        database=settings_dict["NAME"],
    )
    log = tmp_path / "gunicorn.log"
    try:
        # 500 ms: max_statement_time = 0.5 s, before the lock waits' 1 s.
        with gunicorn_server(env={"DATABASE_STATEMENT_TIMEOUT": "500"}, log=log) as base_url:
            headers = {**auth(reporter_token), "Content-Type": "application/json"}
            assert request(base_url, "GET", "/api/kernel/status", headers=headers)[0] == 200
            other.cursor().execute("LOCK TABLES kernel_status_session WRITE")
            for method, path, body in [
                ("GET", "/api/kernel/status", None),
                ("POST", EVENTS_URL, b'{"events": []}'),
            ]:
                status, response_headers, content = request(
                    base_url, method, path, headers=headers, body=body
                )
                assert status == 503, content
                assert response_headers["Retry-After"] == "1"
                assert json.loads(content) == {"detail": "The database is busy; retry shortly."}
            other.cursor().execute("UNLOCK TABLES")
            status, _, content = request(base_url, "GET", "/api/kernel/status", headers=headers)
            assert status == 200, content
    finally:
        other.close()
    logged = log.read_text()
    if connection.mysql_is_mariadb:
        # The statement timeout ended both waits, not a lock wait timeout.
        assert logged.count("max_statement_time exceeded") == 2, logged
    else:
        # MySQL bounds SELECTs by max_execution_time, writes by the lock wait timeouts.
        assert logged.count("Database unavailable") == 2, logged


# --- short bodies ----------------------------------------------------------------------------


def raw_exchange(base_url: str, head: bytes, body: bytes, *, timeout: float = 30) -> bytes:
    """Send ``head`` and ``body`` on one connection, close our side, read the whole answer."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)  # the half-close: nothing more will come
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, content


@pytest.mark.django_db(transaction=True)
def test_a_body_shorter_than_its_length_gets_400_over_real_http(
    reporter_token: str, session: Session
) -> None:
    body = b'{"events": []}'  # valid JSON, but only 14 of the 100 bytes announced

    def post_raw(length: int) -> tuple[int, dict[str, str], bytes]:
        head = (
            f"POST {EVENTS_URL} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {reporter_token}\r\nMarimo-Session-Id: {SESSION_ID}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        return parse_answer(raw_exchange(base_url, head, body))

    with gunicorn_server() as base_url:
        status, headers, content = post_raw(100)
        assert status == 400
        assert headers["Content-Type"] == "application/json"
        assert json.loads(content) == {
            "detail": "The body has 14 bytes, fewer than its Content-Length (100)."
        }
        status, _, content = post_raw(len(body))  # the same body, its length told right
        assert (status, json.loads(content)) == (200, {"applied": 0, "ignored_older": 0})


# --- HEAD ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_head_answers_as_get_without_a_body_over_real_http(
    reporter_token: str, session: Session
) -> None:
    headers = auth(reporter_token)
    with gunicorn_server() as base_url:
        for path in ["/api/kernel/status", "/api/kernel/sessions"]:
            get = request(base_url, "GET", path, headers=headers)
            head = request(base_url, "HEAD", path, headers=headers)
            assert (get[0], head[0]) == (200, 200)
            assert head[2] == b""
            assert int(head[1]["Content-Length"]) == len(get[2]) > 0
            for name in ["Content-Type", "Cache-Control", "ETag"]:
                assert head[1].get(name) == get[1].get(name)
        unknown = request(
            base_url, "HEAD", "/api/kernel/status", headers={**headers, "Marimo-Session-Id": "x"}
        )
        assert (unknown[0], unknown[2]) == (404, b"")  # an error too: GET's, without the body
        assert unknown[1]["Content-Type"] == "application/json"


# --- the API's schema and docs pages -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("public", [False, True])
def test_production_settings_serve_the_schema_and_docs_only_to_authenticated_callers(
    reporter_token: str, public: bool
) -> None:
    env = {
        "DJANGO_SECRET_KEY": "k" + os.urandom(40).hex(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        **({"DJANGO_API_DOCS_PUBLIC": "1"} if public else {}),
    }
    https = {"X-Forwarded-Proto": "https"}  # as the TLS proxy says; else a redirect to HTTPS
    with gunicorn_server("project.settings_production", env=env) as base_url:
        for path, content_type in [
            ("/api/schema/", "application/vnd.oai.openapi"),
            ("/api/docs/", "text/html"),
        ]:
            anonymous = request(base_url, "GET", path, headers=https)
            token = request(
                base_url, "GET", path, headers={**https, "Authorization": f"Token {reporter_token}"}
            )
            assert token[0] == 200
            assert token[1]["Content-Type"].startswith(content_type)
            if public:
                assert anonymous[0] == 200
            else:
                assert anonymous[0] == 401
                assert anonymous[1]["WWW-Authenticate"] == "Token"
                assert b"kernel_status" not in anonymous[2]  # nothing of the API leaks


# --- rate limits across processes, on Redis --------------------------------------------------

TEST_REDIS_URL = os.environ.get("KS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A cache key prefix of this test's own on the test Redis (db 15), deleted after it.
    Skipped when Redis or its client is missing, except under CI=true."""
    try:
        # Imported by name: an optional package (the redis extra), typed or not.
        redis: Any = importlib.import_module("redis")
        client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception as error:  # ImportError, redis.ConnectionError
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {TEST_REDIS_URL} is needed under CI: {error!r}")
        pytest.skip(f"needs Redis at {TEST_REDIS_URL} and the redis package: {error!r}")
    prefix = f"ks-test-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        yield prefix
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()


@contextmanager
def servers_counting_in_redis(prefix: str, rates: dict[str, str | None]) -> Iterator[list[str]]:
    """Two gunicorns of two workers each, counting in the same Redis."""
    env = {
        "KS_TEST_REDIS_URL": TEST_REDIS_URL,
        "KS_TEST_CACHE_PREFIX": prefix,
        "KS_TEST_THROTTLE_RATES": json.dumps({f"kernel_status.{k}": v for k, v in rates.items()}),
    }
    with (
        gunicorn_server("tests.settings_rate_limits", workers=2, env=env) as first,
        gunicorn_server("tests.settings_rate_limits", workers=2, env=env) as second,
    ):
        yield [first, second]


def concurrently(
    servers: list[str], count: int, send: Callable[[str], tuple[int, dict[str, str], bytes]]
) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` requests from 8 threads, alternating between the servers."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda n: send(servers[n % len(servers)]), range(count)))


def assert_throttled(answers: list[tuple[int, dict[str, str], bytes]]) -> None:
    """Every 429 is DRF's JSON with a Retry-After of at most the hour and a bit."""
    for status, headers, content in answers:
        if status == 429:
            assert headers["Content-Type"] == "application/json"
            assert json.loads(content)["detail"].startswith("Request was throttled.")
            assert 0 < int(headers["Retry-After"]) <= 2 * 3600


# Per hour: the sliding window's previous part is empty for the whole test (a fresh prefix),
# so each limit is exact, not an estimate.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("scope", "method", "path", "body"),
    [
        ("status", "GET", "/api/kernel/status", None),
        ("events", "POST", EVENTS_URL, b'{"events": []}'),
        ("sessions", "GET", "/api/kernel/sessions", None),
    ],
)
def test_each_per_user_limit_holds_across_processes_and_threads(
    reporter_token: str, redis_prefix: str, scope: str, method: str, path: str, body: Any
) -> None:
    limit = 40
    rates: dict[str, str | None] = {"status": None, "events": None, "sessions": None}
    rates |= {scope: f"{limit}/h", "failed_auth": None}
    headers = {**auth(reporter_token), "Content-Type": "application/json"}
    with servers_counting_in_redis(redis_prefix, rates) as servers:
        answers = concurrently(
            servers, 3 * limit, lambda url: request(url, method, path, headers=headers, body=body)
        )
    statuses = [status for status, _, _ in answers]
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == limit
    assert_throttled(answers)


@pytest.mark.django_db(transaction=True)
def test_the_failed_auth_limit_holds_across_processes_and_threads(
    reporter_token: str, redis_prefix: str
) -> None:
    limit = 30
    rates = {"status": None, "events": None, "sessions": None, "failed_auth": f"{limit}/h"}
    good = auth(reporter_token)
    with servers_counting_in_redis(redis_prefix, rates) as servers:
        # Proven before the guessing starts, on one server: the other one knows it too.
        assert request(servers[0], "GET", "/api/kernel/status", headers=good)[0] == 200
        guesses = concurrently(
            servers,
            3 * limit,
            lambda url: request(
                url,
                "GET",
                "/api/kernel/status",
                headers={**good, "Authorization": f"Token {os.urandom(20).hex()}"},
            ),
        )
        proven = [request(url, "GET", "/api/kernel/status", headers=good)[0] for url in servers]
        unproven = request(servers[1], "GET", "/api/kernel/status", headers={})[0]
    statuses = [status for status, _, _ in guesses]
    assert (statuses.count(401), statuses.count(429)) == (limit, 2 * limit)
    assert_throttled(guesses)
    assert proven == [200, 200]  # the working token still passes on both
    assert unproven == 429
