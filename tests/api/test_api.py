"""The endpoint's contract: who gets what, with which status, body and headers, at what cost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState
from kernel_status.models import CellStatus, Session, SessionAccess
from tests.utils import SESSION_ID, STATUS_URL, MakeSession, cells, get_status

NOT_FOUND = {"detail": "Session not found."}
EDIT_REQUIRED = {"detail": "Edit access to this session is required."}


def assert_json_error(response: Any, status: int, body: dict[str, str]) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == body
    assert response["Cache-Control"] == "no-store"


# --- permission matrix -------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["owner", "editor", "superuser"])
def test_editors_get_the_state(
    make_session: MakeSession, token_client: Callable[[str], APIClient], username: str
) -> None:
    session = make_session(cells=cells(Cell.RUNNING))
    response = get_status(token_client(username), session.session_id)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "private, no-cache"
    assert response.json() == {"state": "running", "last_activity": None}


def test_viewer_gets_403_edit_required(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    session = make_session()
    response = get_status(token_client("viewer"), session.session_id)
    assert_json_error(response, 403, EDIT_REQUIRED)


def test_stranger_cannot_tell_a_session_exists(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    session = make_session()
    client = token_client("stranger")
    existing = get_status(client, session.session_id)
    missing = get_status(client, "no-such-session")
    assert_json_error(existing, 404, NOT_FOUND)
    assert_json_error(missing, 404, NOT_FOUND)
    assert existing.content == missing.content
    assert dict(existing.headers) == dict(missing.headers)


def test_unknown_session_is_404_for_an_editor(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    make_session()
    assert_json_error(get_status(token_client("editor"), "no-such-session"), 404, NOT_FOUND)


def test_grant_on_another_session_gives_nothing(
    make_session: MakeSession, token_client: Callable[[str], APIClient], users: dict[str, User]
) -> None:
    other_owner = User.objects.create_user("other")
    private = make_session(owner=other_owner)
    SessionAccess.objects.filter(session=private).delete()
    response = get_status(token_client("editor"), private.session_id)
    assert_json_error(response, 404, NOT_FOUND)


def test_owner_needs_no_grant(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    session = make_session()
    SessionAccess.objects.filter(session=session).delete()
    assert get_status(token_client("owner"), session.session_id).json() == {
        "state": "idle",
        "last_activity": None,
    }


def test_anonymous_gets_401_with_www_authenticate(make_session: MakeSession) -> None:
    session = make_session()
    response = get_status(APIClient(), session.session_id)
    assert_json_error(response, 401, {"detail": "Authentication credentials were not provided."})
    assert response["WWW-Authenticate"] == "Token"


def test_anonymous_gets_the_same_401_for_an_unknown_session(make_session: MakeSession) -> None:
    make_session()
    response = get_status(APIClient(), "no-such-session")
    assert_json_error(response, 401, {"detail": "Authentication credentials were not provided."})


def test_bad_token_gets_401(make_session: MakeSession) -> None:
    session = make_session()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = get_status(client, session.session_id)
    assert_json_error(response, 401, {"detail": "Invalid token."})
    assert response["WWW-Authenticate"] == "Token"


def test_inactive_user_with_token_gets_401(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    # "inactive" holds an edit grant on the session, yet is refused.
    session = make_session()
    response = get_status(token_client("inactive"), session.session_id)
    assert_json_error(response, 401, {"detail": "User inactive or deleted."})


def test_inactive_user_let_in_by_a_lax_authenticator_gets_403(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    client = APIClient()
    client.force_authenticate(users["inactive"])
    assert_json_error(get_status(client, session.session_id), 403, EDIT_REQUIRED)


def test_session_authentication_works_too(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session(cells=cells(Cell.QUEUED))
    client = APIClient()
    client.force_login(users["editor"])
    assert get_status(client, session.session_id).json() == {
        "state": "running",
        "last_activity": None,
    }


def test_inactive_superuser_has_no_access(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    users["superuser"].is_active = False
    users["superuser"].save()
    client = APIClient()
    client.force_authenticate(users["superuser"])
    assert get_status(client, session.session_id).status_code == 403


# --- bad headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "The Marimo-Session-Id header is required."),
        ("", "The Marimo-Session-Id header is empty."),
        ("   ", "The Marimo-Session-Id header is empty."),
        ("x" * 129, "The Marimo-Session-Id header is longer than 128 characters."),
        ("abc\x00def", "The Marimo-Session-Id header contains control characters."),
        ("abc\tdef", "The Marimo-Session-Id header contains control characters."),
        ("abc\x7f", "The Marimo-Session-Id header contains control characters."),
        ("abc\xc2\x85", "The Marimo-Session-Id header contains control characters."),
        (
            "a\udfff",  # only a test client can send one: servers decode bytes
            "The Marimo-Session-Id header contains a lone surrogate, which is not valid Unicode.",
        ),
    ],
    ids=["missing", "empty", "blank", "too-long", "nul", "tab", "del", "c1", "surrogate"],
)
def test_bad_header_gets_400_saying_what_is_wrong(
    make_session: MakeSession,
    token_client: Callable[[str], APIClient],
    value: str | None,
    message: str,
) -> None:
    make_session()
    response = get_status(token_client("editor"), value)
    assert_json_error(response, 400, {"detail": message})


def test_header_of_exactly_128_characters_is_accepted(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    session = make_session("x" * 128)
    assert get_status(token_client("editor"), session.session_id).json() == {
        "state": "idle",
        "last_activity": None,
    }


def test_bad_header_from_anonymous_is_401_first(make_session: MakeSession) -> None:
    response = get_status(APIClient(), None)
    assert response.status_code == 401


def as_sent_by_a_server(text: str) -> str:
    """A header value as WSGI servers hand it over: UTF-8 bytes decoded as latin-1."""
    return text.encode("utf-8").decode("latin-1")


@pytest.mark.parametrize("session_id", ["sésame", "nb…1", "セッション"])
def test_non_ascii_session_ids_are_matched_exactly(
    make_session: MakeSession, users: dict[str, User], session_id: str
) -> None:
    make_session(session_id)
    client = APIClient()
    client.force_authenticate(users["editor"])
    assert get_status(client, as_sent_by_a_server(session_id)).json() == {
        "state": "idle",
        "last_activity": None,
    }
    assert get_status(client, as_sent_by_a_server("sesame")).status_code == 404


def test_header_that_is_not_utf8_gets_400(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    client = APIClient()
    client.force_authenticate(users["editor"])
    response = get_status(client, b"caf\xe9".decode("latin-1"))  # latin-1 bytes on the wire
    assert_json_error(response, 400, {"detail": "The Marimo-Session-Id header is not UTF-8."})


def test_utf8_header_over_real_http(
    transactional_db: None,
    live_server: Any,
    make_session: MakeSession,
    token_client: Callable[[str], APIClient],
) -> None:
    import http.client
    import json
    from urllib.parse import urlsplit

    from rest_framework.authtoken.models import Token

    make_session("sésame")
    token_client("editor")
    token = Token.objects.get(user__username="editor").key
    host = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(host.hostname or "", host.port)
    connection.putrequest("GET", STATUS_URL)
    connection.putheader("Authorization", f"Token {token}")
    connection.putheader("Marimo-Session-Id", "sésame".encode())
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read()) == {"state": "idle", "last_activity": None}


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "*/*", "text/plain"])
def test_answers_are_json_whatever_the_accept_header(
    make_session: MakeSession, users: dict[str, User], accept: str
) -> None:
    session = make_session()
    client = APIClient()
    assert get_status(client, session.session_id, HTTP_ACCEPT=accept).status_code == 401
    client.force_authenticate(users["editor"])
    response = get_status(client, session.session_id, HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"state": "idle", "last_activity": None}


# --- methods -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_other_methods_get_405_json(
    make_session: MakeSession, token_client: Callable[[str], APIClient], method: str
) -> None:
    session = make_session()
    client = token_client("editor")
    response = getattr(client, method)(
        STATUS_URL, headers={"Marimo-Session-Id": session.session_id}
    )
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": f'Method "{method.upper()}" not allowed.'}


@pytest.mark.parametrize(
    ("session_id", "status"), [(SESSION_ID, 200), ("unknown", 404), (None, 400)]
)
def test_head_answers_as_get_without_the_body(
    make_session: MakeSession,
    token_client: Callable[[str], APIClient],
    session_id: str | None,
    status: int,
) -> None:
    make_session(SESSION_ID)
    client = token_client("editor")
    get = get_status(client, session_id)
    headers = {} if session_id is None else {"Marimo-Session-Id": session_id}
    head = client.head(STATUS_URL, headers=headers)
    assert (get.status_code, head.status_code) == (status, status)
    assert head.content == b""
    assert dict(head.items()) == dict(get.items())  # ETag, Cache-Control, Content-Type


def test_head_revalidates_as_get_does(
    make_session: MakeSession, token_client: Callable[[str], APIClient]
) -> None:
    make_session(SESSION_ID)
    client = token_client("editor")
    etag = get_status(client, SESSION_ID)["ETag"]
    head = client.head(STATUS_URL, headers={"Marimo-Session-Id": SESSION_ID, "If-None-Match": etag})
    assert (head.status_code, head["ETag"], head.content) == (304, etag, b"")


def test_other_methods_from_anonymous_get_401(make_session: MakeSession) -> None:
    assert APIClient().post(STATUS_URL).status_code == 401


# --- cost --------------------------------------------------------------------------------------


def run_counting_queries(client: APIClient, session_id: str) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as context:
        response = get_status(client, session_id)
    return response, [query["sql"] for query in context.captured_queries]


@pytest.mark.parametrize("n_cells", [1, 1000])
def test_one_query_after_authentication(
    make_session: MakeSession, users: dict[str, User], n_cells: int
) -> None:
    session = make_session(cells=[*cells(Cell.IDLE) * (n_cells - 1), *cells(Cell.RUNNING)])
    assert CellStatus.objects.filter(session=session).count() == n_cells
    client = APIClient()
    client.force_authenticate(users["editor"])  # no authentication query
    response, queries = run_counting_queries(client, session.session_id)
    assert response.json() == {"state": "running", "last_activity": None}
    assert len(queries) == 1


@pytest.mark.parametrize("username", ["owner", "editor", "viewer", "stranger", "superuser"])
def test_token_request_is_one_query_whatever_the_data_size(
    make_session: MakeSession,
    token_client: Callable[[str], APIClient],
    users: dict[str, User],
    username: str,
) -> None:
    small = make_session(cells=cells(Cell.IDLE))
    client = token_client(username)
    _, small_queries = run_counting_queries(client, small.session_id)

    big = make_session(cells=cells(Cell.IDLE) * 1000)
    for i in range(50):  # more sessions and more members
        make_session(cells=cells(Cell.QUEUED) * 3)
        SessionAccess.objects.create(
            session=big, user=User.objects.create_user(f"member{i}"), role="view"
        )
    _, big_queries = run_counting_queries(client, big.session_id)
    # The token lookup, the user's flags, the access level and the state: one statement.
    assert len(small_queries) == len(big_queries) == 1


def test_a_read_never_writes(make_session: MakeSession, users: dict[str, User]) -> None:
    session = make_session(cells=cells(Cell.RUNNING))
    before = Session.objects.values().get(pk=session.pk)
    client = APIClient()
    client.force_login(users["editor"])  # session auth: the riskiest for writes
    _, queries = run_counting_queries(client, session.session_id)
    assert all(sql.lstrip().upper().startswith("SELECT") for sql in queries), queries
    assert Session.objects.values().get(pk=session.pk) == before


def test_status_query_checks_access_and_state_in_one_statement(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session(kernel=ProcessState.RUNNING, cells=cells(Cell.QUEUED))
    client = APIClient()
    client.force_authenticate(users["viewer"])
    response, queries = run_counting_queries(client, session.session_id)
    assert response.status_code == 403
    assert len(queries) == 1
