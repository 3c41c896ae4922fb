"""The status endpoint's token path: DRF's token authentication and the status read in one
statement, with the answers of DRF's normal path (token lookup, then the status query)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.db.models import Case, Exists, Expression, IntegerField, OuterRef, Value, When
from django.db.models.functions import Greatest
from django.db.models.lookups import Exact
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from kernel_status.access import DefaultAccessPolicy
from kernel_status.api.views import KernelStatusView
from kernel_status.choices import AccessLevel, ProcessState
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.models import Session, SessionAccess
from kernel_status.queries import status as status_queries
from kernel_status.queries.access import TokenUser
from tests.utils import (
    MakeSession,
    cells,
    get_status,
    prepared_statements,
    prepared_statements_allowed,
)


class TwoQueryPolicy(DefaultAccessPolicy):
    """The default rules without the token hook: DRF's normal path, for comparison."""

    def token_access_level_expression(self, user: TokenUser) -> Expression | None:
        return None


TWO_QUERY_POLICY = f"{__name__}.TwoQueryPolicy"


class OwnRulesPolicy(DefaultAccessPolicy):
    """A subclass with its own rules: the default token expression no longer applies."""

    def access_level_expression(self, user: Any) -> Expression:
        return super().access_level_expression(user)


OWN_RULES_POLICY = f"{__name__}.OwnRulesPolicy"


@pytest.fixture(autouse=True)
def fresh_shapes() -> Iterator[None]:
    status_queries.clear_cache()
    yield
    status_queries.clear_cache()


def answer(client: APIClient, session_id: str, **extra: Any) -> tuple[tuple[Any, ...], int]:
    """What the client sees, and how many queries it took."""
    with CaptureQueriesContext(connection) as context:
        response = get_status(client, session_id, **extra)
    seen = (
        response.status_code,
        response.content,
        response.get("WWW-Authenticate"),
        response.get("Cache-Control"),
        response.get("ETag"),
    )
    return seen, len(context.captured_queries)


def both_paths(client: APIClient, session_id: str, **extra: Any) -> tuple[Any, int, int]:
    """The answer on the token path and on the normal path, which must be the same."""
    fast, fast_queries = answer(client, session_id, **extra)
    with override_settings(KERNEL_STATUS_ACCESS_POLICY=TWO_QUERY_POLICY):
        normal, normal_queries = answer(client, session_id, **extra)
    assert fast == normal
    return fast, fast_queries, normal_queries


def token_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


STATES: dict[str, dict[str, Any]] = {
    "running": dict(cells=cells(Cell.IDLE, Cell.RUNNING)),
    "idle": dict(cells=cells(Cell.IDLE)),
    "stopped": dict(kernel=ProcessState.STOPPED),
    "stale heartbeat": dict(heartbeat_age=timedelta(minutes=5), cells=cells(Cell.RUNNING)),
    "no kernel": dict(kernel=None),
}


@pytest.mark.parametrize("username", ["owner", "editor", "viewer", "stranger", "superuser"])
@pytest.mark.parametrize("situation", list(STATES))
def test_every_user_gets_the_normal_answer_in_one_query(
    make_session: MakeSession, users: dict[str, User], username: str, situation: str
) -> None:
    session = make_session(**STATES[situation])
    (code, *_), fast_queries, normal_queries = both_paths(
        token_for(users[username]), session.session_id
    )
    expected = {"owner": 200, "editor": 200, "superuser": 200, "viewer": 403, "stranger": 404}
    assert code == expected[username]
    assert (fast_queries, normal_queries) == (1, 2)


def test_unknown_session_is_a_404_in_one_query(users: dict[str, User]) -> None:
    (code, *_), fast_queries, _ = both_paths(token_for(users["editor"]), "no-such")
    assert code == 404
    assert fast_queries == 1


def test_a_304_on_the_token_path(make_session: MakeSession, users: dict[str, User]) -> None:
    session = make_session(cells=cells(Cell.QUEUED))
    client = token_for(users["editor"])
    etag = get_status(client, session.session_id)["ETag"]
    (code, *_), fast_queries, _ = both_paths(client, session.session_id, HTTP_IF_NONE_MATCH=etag)
    assert (code, fast_queries) == (304, 1)


def test_a_bad_token_is_drfs_401(make_session: MakeSession) -> None:
    session = make_session()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    (code, body, www_authenticate, cache_control, _), fast_queries, _ = both_paths(
        client, session.session_id
    )
    assert (code, body, www_authenticate) == (401, b'{"detail":"Invalid token."}', "Token")
    assert cache_control == "no-store"
    assert fast_queries == 1


def test_an_inactive_user_is_drfs_401(make_session: MakeSession, users: dict[str, User]) -> None:
    session = make_session()  # "inactive" holds an edit grant
    (code, body, www_authenticate, *_), fast_queries, _ = both_paths(
        token_for(users["inactive"]), session.session_id
    )
    assert (code, body) == (401, b'{"detail":"User inactive or deleted."}')
    assert www_authenticate == "Token"
    assert fast_queries == 1


@pytest.mark.parametrize(
    "header",
    [
        "Token",
        "Token a b",
        "token  ",
        "Bearer abc",
        "Token \u00e9\u00e9".encode().decode("latin-1"),
    ],
)
def test_malformed_headers_get_drfs_answers(make_session: MakeSession, header: str) -> None:
    session = make_session()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    (code, *_), _, _ = both_paths(client, session.session_id)
    assert code == 401


@pytest.mark.parametrize("header", [None, "", "x" * 300])
def test_a_bad_session_header_after_a_good_token_is_a_400(
    users: dict[str, User], header: str | None
) -> None:
    (code, *_), _, _ = both_paths(token_for(users["editor"]), header)  # type: ignore[arg-type]
    assert code == 400


def test_a_deleted_token_is_refused_on_the_very_next_request(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    client = token_for(users["editor"])
    assert get_status(client, session.session_id).status_code == 200
    Token.objects.filter(user=users["editor"]).delete()
    response = get_status(client, session.session_id)
    assert (response.status_code, response.json()) == (401, {"detail": "Invalid token."})


def test_a_deactivated_user_is_refused_on_the_very_next_request(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    client = token_for(users["editor"])
    assert get_status(client, session.session_id).status_code == 200
    User.objects.filter(pk=users["editor"].pk).update(is_active=False)
    response = get_status(client, session.session_id)
    assert (response.status_code, response.json()) == (401, {"detail": "User inactive or deleted."})
    User.objects.filter(pk=users["editor"].pk).update(is_active=True)
    assert get_status(client, session.session_id).status_code == 200


def test_a_revoked_grant_and_a_new_superuser_are_seen_on_the_very_next_request(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    client = token_for(users["editor"])
    assert get_status(client, session.session_id).status_code == 200
    SessionAccess.objects.filter(session=session, user=users["editor"]).delete()
    assert get_status(client, session.session_id).status_code == 404
    User.objects.filter(pk=users["editor"].pk).update(is_superuser=True)
    assert get_status(client, session.session_id).status_code == 200


def test_request_user_and_auth_are_drfs(
    make_session: MakeSession, users: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    session = make_session()
    seen: list[Any] = []
    original = KernelStatusView.get

    def spy(self: KernelStatusView, request: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((request.user, request.auth, request.successful_authenticator))
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(KernelStatusView, "get", spy)
    client = token_for(users["editor"])
    assert get_status(client, session.session_id).status_code == 200
    user, auth, authenticator = seen[0]
    assert isinstance(user, User)
    assert user.pk == users["editor"].pk
    assert (user.username, user.is_active, user.is_superuser) == ("editor", True, False)
    assert isinstance(auth, Token)
    assert auth.user_id == user.pk
    assert auth.user is user
    assert auth == Token.objects.get(user=users["editor"])
    assert type(authenticator) is TokenAuthentication


def rates(**scopes: str | None) -> Any:
    cache.clear()
    rest_framework = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {f"kernel_status.{k}": v for k, v in scopes.items()},
    }
    return override_settings(REST_FRAMEWORK=rest_framework)


def test_the_failed_auth_throttle_sees_failures_and_successes(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    good = token_for(users["editor"])
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    inactive = token_for(users["inactive"])
    with rates(status=None, events=None, failed_auth="3/min"):
        assert get_status(good, session.session_id).status_code == 200  # proven
        statuses = [get_status(c, session.session_id).status_code for c in [bad, inactive, bad]]
        assert statuses == [401, 401, 401]
        assert get_status(bad, session.session_id).status_code == 429
        assert get_status(good, session.session_id).status_code == 200  # its pass holds
    cache.clear()


def test_status_throttle_counts_per_user_on_the_token_path(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    editor, owner = token_for(users["editor"]), token_for(users["owner"])
    with rates(status="2/min", events=None, failed_auth=None):
        assert [get_status(editor, session.session_id).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert get_status(owner, session.session_id).status_code == 200
    cache.clear()


def test_session_authentication_keeps_the_normal_path(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session(cells=cells(Cell.RUNNING))
    client = APIClient()
    client.force_login(users["editor"])
    (code, body, *_), fast_queries, normal_queries = both_paths(client, session.session_id)
    assert (code, body) == (200, b'{"state":"running","last_activity":null}')
    assert fast_queries == normal_queries > 1  # the session row, the user, the status


class HostTokenAuthentication(TokenAuthentication):
    """A host's own token check: its answers must be kept, so the normal path runs."""

    def authenticate_credentials(self, key: str) -> Any:
        if key.startswith("f"):
            from rest_framework.exceptions import AuthenticationFailed

            raise AuthenticationFailed("Frozen key.")
        return super().authenticate_credentials(key)


class BearerAuthentication(TokenAuthentication):
    keyword = "Bearer"


@pytest.mark.parametrize(
    ("classes", "one_query"),
    [
        ([HostTokenAuthentication, SessionAuthentication], False),
        ([SessionAuthentication, TokenAuthentication], False),
        ([BearerAuthentication], True),
    ],
)
def test_other_authentication_classes(
    make_session: MakeSession,
    users: dict[str, User],
    monkeypatch: pytest.MonkeyPatch,
    classes: list[type[Any]],
    one_query: bool,
) -> None:
    monkeypatch.setattr(KernelStatusView, "authentication_classes", classes)
    session = make_session()
    # Not a random key: HostTokenAuthentication refuses those starting with "f" (1 in 16).
    token = Token.objects.create(user=users["editor"], key="a" + "0" * 39)
    client = APIClient()
    keyword = classes[0].keyword if hasattr(classes[0], "keyword") else "Token"
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {token.key}")
    (code, *_), fast_queries, normal_queries = both_paths(client, session.session_id)
    assert code == 200
    assert fast_queries == (1 if one_query else normal_queries)


def test_the_frozen_key_of_a_host_class_is_refused(
    make_session: MakeSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KernelStatusView, "authentication_classes", [HostTokenAuthentication])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token f" + "0" * 39)
    response = get_status(client, make_session().session_id)
    assert (response.status_code, response.json()) == (401, {"detail": "Frozen key."})


def test_a_policy_with_its_own_rules_keeps_the_normal_path(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    client = token_for(users["editor"])
    with override_settings(KERNEL_STATUS_ACCESS_POLICY=OWN_RULES_POLICY):
        (code, *_), queries = answer(client, session.session_id)
    assert (code, queries) == (200, 2)


def test_the_sql_is_compiled_once_per_shape(
    make_session: MakeSession, users: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[Any] = []
    original = status_queries._compile_token

    def counting(*args: Any) -> Any:
        compiled.append(args)
        return original(*args)

    monkeypatch.setattr(status_queries, "_compile_token", counting)
    session = make_session()
    for username in ["owner", "editor", "superuser", "stranger"]:  # one shape for all users
        get_status(token_for(users[username]), session.session_id)
    assert len(compiled) == 1
    with override_settings(KERNEL_STATUS_LIVENESS_WINDOW=None):  # another shape
        assert get_status(token_for(users["viewer"]), session.session_id).status_code == 403
    assert len(compiled) == 2


def test_an_uncompilable_shape_falls_back_to_the_orm_in_one_query(
    make_session: MakeSession, users: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any) -> Any:
        raise status_queries._Uncompilable

    monkeypatch.setattr(status_queries, "_compile_token", refuse)
    session = make_session(cells=cells(Cell.RUNNING))
    (code, body, *_), fast_queries, _ = both_paths(token_for(users["editor"]), session.session_id)
    assert (code, body) == (200, b'{"state":"running","last_activity":null}')
    assert fast_queries == 1
    (code, *_), fast_queries, _ = both_paths(token_for(users["inactive"]), session.session_id)
    assert (code, fast_queries) == (401, 1)


def test_the_token_query_agrees_with_the_policy_for_every_user(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    session = make_session()
    policy = DefaultAccessPolicy()
    for user in users.values():
        token = Token.objects.create(user=user)
        found = status_queries.fetch_token_status(Token, token.key, session.session_id)
        assert found is not None
        assert found.status is not None
        assert found.status.access_level == policy.get_access_level(user, session)


class SameOwnerPolicy(DefaultAccessPolicy):
    """The default rules, plus view access to every session of an owner on one of whose
    sessions the user holds a grant: a hook with a subquery two levels below the session, as
    in docs/access.md."""

    def access_level_expression(self, user: Any) -> Expression:
        level = super().access_level_expression(user)
        if not user.is_authenticated or not user.is_active:
            return level
        return Greatest(level, self._same_owner(user.pk, is_active=Value(True)))

    def token_access_level_expression(self, user: TokenUser) -> Expression | None:
        level = super().token_access_level_expression(user)
        assert level is not None
        return Greatest(level, self._same_owner(user.field("pk", depth=3), user.field("is_active")))

    def _same_owner(self, user_pk: Any, is_active: Any) -> Case:
        granted = SessionAccess.objects.filter(user_id=user_pk).values("session_id")
        same_owner = Exists(Session.objects.filter(owner_id=OuterRef("owner_id"), pk__in=granted))
        return Case(
            When(Exact(is_active, False), then=Value(AccessLevel.NONE.value)),
            When(same_owner, then=Value(AccessLevel.VIEW.value)),
            default=Value(AccessLevel.NONE.value),
            output_field=IntegerField(),
        )


def test_a_hook_with_nested_subqueries_agrees_with_its_policy(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    mine = make_session()
    theirs = make_session(owner=users["superuser"])
    SessionAccess.objects.create(session=theirs, user=users["stranger"], role="view")
    other = make_session(owner=users["superuser"])  # stranger sees it through the same owner
    with override_settings(KERNEL_STATUS_ACCESS_POLICY=f"{__name__}.SameOwnerPolicy"):
        policy = SameOwnerPolicy()
        levels = {}
        for user in users.values():
            token = Token.objects.create(user=user)
            for session in (mine, theirs, other):
                found = status_queries.fetch_token_status(Token, token.key, session.session_id)
                assert found is not None
                assert found.status is not None
                expected = policy.get_access_level(user, session)
                assert found.status.access_level == expected
                levels[user.username, session.pk] = expected
    assert levels["stranger", other.pk] == AccessLevel.VIEW
    assert levels["stranger", mine.pk] == AccessLevel.NONE
    assert levels["inactive", other.pk] == AccessLevel.NONE


def test_postgresql_prepares_the_token_statement_when_allowed(
    make_session: MakeSession, users: dict[str, User]
) -> None:
    with prepared_statements_allowed():
        session = make_session(cells=cells(Cell.RUNNING))
        client = token_for(users["editor"])
        for _ in range(3):
            (code, body, *_), queries = answer(client, session.session_id)
            assert (code, body, queries) == (200, b'{"state":"running","last_activity":null}', 1)
        prepared = prepared_statements()
    assert any('"authtoken_token"' in statement for statement in prepared), prepared
