"""System checks report bad settings with stable ids."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db.utils import ConnectionHandler
from django.test import override_settings
from rest_framework.authentication import TokenAuthentication
from rest_framework.throttling import SimpleRateThrottle

from kernel_status.checks import (
    check_database_vendors,
    check_settings,
    check_sqlite_transaction_mode,
)
from kernel_status.throttle_rates import (
    DEFAULT_RATES,
    FAILED_AUTH_SCOPE,
    NO_THROTTLES,
    STATUS_SCOPE,
    parse_rate,
)


def check_ids() -> list[str]:
    return [message.id for message in check_settings() if message.id]


def throttle_rates(rates: object) -> override_settings:
    return override_settings(
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    )


def test_default_settings_pass() -> None:
    assert check_ids() == []


@pytest.mark.parametrize("window", [None, 1, 0.5, timedelta(minutes=2)])
def test_good_liveness_windows_pass(window: object) -> None:
    with override_settings(KERNEL_STATUS_LIVENESS_WINDOW=window):
        assert check_ids() == []


@pytest.mark.parametrize("window", ["60", True, [60], {}])
def test_liveness_window_of_wrong_type_is_e001(window: object) -> None:
    with override_settings(KERNEL_STATUS_LIVENESS_WINDOW=window):
        assert check_ids() == ["kernel_status.E001"]


@pytest.mark.parametrize(
    "window", [0, -5, timedelta(0), timedelta(seconds=-1), float("nan"), float("inf"), 1e20]
)
def test_liveness_window_not_positive_is_e002(window: object) -> None:
    with override_settings(KERNEL_STATUS_LIVENESS_WINDOW=window):
        assert check_ids() == ["kernel_status.E002"]


def test_access_policy_that_cannot_be_imported_is_e003() -> None:
    with override_settings(KERNEL_STATUS_ACCESS_POLICY="nowhere.Policy"):
        assert check_ids() == ["kernel_status.E003"]


@pytest.mark.parametrize("path", ["kernel_status.models.Session", "kernel_status.conf.conf"])
def test_access_policy_of_wrong_kind_is_e004(path: str) -> None:
    with override_settings(KERNEL_STATUS_ACCESS_POLICY=path):
        assert check_ids() == ["kernel_status.E004"]


@pytest.mark.parametrize("size", [0, -1, 1.5, "100", True])
def test_max_batch_size_not_a_positive_integer_is_e005(size: object) -> None:
    with override_settings(KERNEL_STATUS_MAX_BATCH_SIZE=size):
        assert check_ids() == ["kernel_status.E005"]


def test_checks_run_with_manage_py_check() -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    with (
        override_settings(KERNEL_STATUS_LIVENESS_WINDOW=-1),
        pytest.raises(SystemCheckError, match=r"kernel_status\.E002"),
    ):
        call_command("check")


def test_use_tz_off_is_e006() -> None:
    with override_settings(USE_TZ=False):
        assert check_ids() == ["kernel_status.E006"]


def test_access_policy_module_that_raises_on_import_is_e003() -> None:
    with override_settings(KERNEL_STATUS_ACCESS_POLICY="tests.broken_policy.Policy"):
        assert check_ids() == ["kernel_status.E003"]


def test_sqlite_without_immediate_transactions_is_w001() -> None:
    databases = {
        "default": settings.DATABASES["default"],
        "extra": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"},
        "pg": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"},
    }
    warnings = check_sqlite_transaction_mode(databases)
    assert [(w.id, "'extra'" in w.msg) for w in warnings] == [("kernel_status.W001", True)]


WITHOUT_AUTHTOKEN = [app for app in settings.INSTALLED_APPS if app != "rest_framework.authtoken"]
TOKEN = "rest_framework.authentication.TokenAuthentication"
SESSION = "rest_framework.authentication.SessionAuthentication"


class ProjectToken(TokenAuthentication):
    """A subclass that keeps DRF's Token model, so it needs the authtoken app too."""


class OwnModelToken(TokenAuthentication):
    """A subclass with a token model of its own: it does not need the authtoken app."""

    model = User


@pytest.mark.parametrize(
    "classes", [[TOKEN, SESSION], [SESSION, TOKEN], [f"{__name__}.ProjectToken"]]
)
def test_token_authentication_without_the_authtoken_app_is_e007(classes: list[str]) -> None:
    rest_framework = {**settings.REST_FRAMEWORK, "DEFAULT_AUTHENTICATION_CLASSES": classes}
    with override_settings(INSTALLED_APPS=WITHOUT_AUTHTOKEN, REST_FRAMEWORK=rest_framework):
        messages = [m for m in check_settings() if m.id == "kernel_status.E007"]
        assert check_ids() == ["kernel_status.E007"]
    assert "rest_framework.authtoken" in messages[0].msg
    assert messages[0].hint == "Add 'rest_framework.authtoken' to INSTALLED_APPS and run migrate."


@pytest.mark.parametrize("classes", [[SESSION], [f"{__name__}.OwnModelToken", SESSION]])
def test_no_e007_without_drfs_token_model(classes: list[str]) -> None:
    rest_framework = {**settings.REST_FRAMEWORK, "DEFAULT_AUTHENTICATION_CLASSES": classes}
    with override_settings(INSTALLED_APPS=WITHOUT_AUTHTOKEN, REST_FRAMEWORK=rest_framework):
        assert check_ids() == []


def test_no_e007_when_the_authtoken_app_is_installed() -> None:
    assert TOKEN in settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]
    assert "rest_framework.authtoken" in settings.INSTALLED_APPS
    assert check_ids() == []


@pytest.mark.parametrize("skew", [None, 0, 300, 0.5, timedelta(minutes=10)])
def test_good_max_clock_skews_pass(skew: object) -> None:
    with override_settings(KERNEL_STATUS_MAX_CLOCK_SKEW=skew):
        assert check_ids() == []


@pytest.mark.parametrize(
    "skew",
    ["300", True, [300], -1, timedelta(seconds=-1), float("nan"), float("inf"), 1e20],
)
def test_bad_max_clock_skew_is_e008(skew: object) -> None:
    with override_settings(KERNEL_STATUS_MAX_CLOCK_SKEW=skew):
        assert check_ids() == ["kernel_status.E008"]


@pytest.mark.parametrize(
    "rate",
    ["10/fortnight", "abc", "10", "10/", "/m", "ten/m", "10/m/x", "0/m", "-5/m", 600, b"6/m"],
)
@pytest.mark.parametrize("scope", sorted(DEFAULT_RATES))
def test_a_throttle_rate_drf_cannot_use_is_e009(scope: str, rate: object) -> None:
    with throttle_rates({scope: rate}):
        messages = check_settings()
    assert [message.id for message in messages] == ["kernel_status.E009"]
    assert scope in messages[0].msg
    assert repr(rate) in messages[0].msg


REDIS = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache"}}


@pytest.mark.parametrize("rate", [None, "1/s", "600/min", "12000/minute", "5/h", "100/day"])
def test_usable_throttle_rates_pass(rate: str | None) -> None:
    with throttle_rates(dict.fromkeys(DEFAULT_RATES, rate)), override_settings(CACHES=REDIS):
        assert check_ids() == []


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.dummy.DummyCache",
    ],
)
def test_rate_limits_on_a_per_process_cache_are_w002(backend: str) -> None:
    with (
        throttle_rates({**NO_THROTTLES, FAILED_AUTH_SCOPE: "30/min", STATUS_SCOPE: "9/s"}),
        override_settings(CACHES={"default": {"BACKEND": backend}}),
    ):
        messages = check_settings()
    assert [message.id for message in messages] == ["kernel_status.W002"]
    assert f"({STATUS_SCOPE}, {FAILED_AUTH_SCOPE})" in messages[0].msg
    assert backend.rsplit(".", 1)[1] in messages[0].msg


def test_the_default_rates_on_the_default_cache_are_w002() -> None:
    rest_framework = {k: v for k, v in settings.REST_FRAMEWORK.items() if "THROTTLE" not in k}
    with override_settings(REST_FRAMEWORK=rest_framework):  # no CACHES: LocMemCache
        assert check_ids() == ["kernel_status.W002"]


@pytest.mark.parametrize(
    ("debug", "rates", "caches"),
    [
        (True, DEFAULT_RATES, None),  # runserver, the demo: one process
        (False, NO_THROTTLES, None),  # no limits to multiply
        (False, DEFAULT_RATES, REDIS),
        (
            False,
            DEFAULT_RATES,
            {"default": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache"}},
        ),
    ],
)
def test_shared_caches_no_limits_or_debug_pass_w002(
    debug: bool, rates: object, caches: object
) -> None:
    with (
        throttle_rates(rates),
        override_settings(DEBUG=debug, **({"CACHES": caches} if caches else {})),
    ):
        assert check_ids() == []


def test_a_project_without_urls_serves_no_limits_and_is_not_w002() -> None:
    # The bridge's HTTP mode: a settings module with the apps but no ROOT_URLCONF.
    with throttle_rates(DEFAULT_RATES), override_settings(DEBUG=False, ROOT_URLCONF=None):
        assert check_ids() == []
    with throttle_rates(DEFAULT_RATES), override_settings(DEBUG=False):
        assert check_ids() == ["kernel_status.W002"]


def test_every_bad_scope_is_reported_and_missing_scopes_take_the_defaults() -> None:
    rates = {STATUS_SCOPE: "abc", FAILED_AUTH_SCOPE: "3/fortnight"}
    with throttle_rates(rates):
        messages = check_settings()
    assert [message.id for message in messages] == ["kernel_status.E009"] * 2
    assert [STATUS_SCOPE in messages[0].msg, FAILED_AUTH_SCOPE in messages[1].msg] == [True, True]


def test_throttle_rates_that_are_not_a_dict_are_e009() -> None:
    with throttle_rates(["600/min"]):
        assert check_ids() == ["kernel_status.E009"]


def drf_parse_rate(rate: str) -> tuple[int | None, int | None]:
    # What DRF's throttles run on every request (__init__ would read a scope's rate first).
    return SimpleRateThrottle.__new__(SimpleRateThrottle).parse_rate(rate)


@pytest.mark.parametrize("rate", ["10/m", " 10/m", "+10/m", "1_0/m", "10/minute", "3/day"])
def test_a_rate_the_check_accepts_is_one_drf_parses_the_same_way(rate: str) -> None:
    assert parse_rate(rate) == drf_parse_rate(rate)


@pytest.mark.parametrize("rate", ["10/x", "10", "²/m", "10/m/s", "10/"])
def test_a_rate_drf_cannot_parse_is_refused(rate: str) -> None:
    with pytest.raises((ValueError, KeyError, IndexError)):
        drf_parse_rate(rate)
    with pytest.raises(ValueError, match=r"^a rate is"):
        parse_rate(rate)


UNSUPPORTED = "tests.unsupported_backend"


def test_a_database_backend_without_our_statements_is_e010() -> None:
    # tests.unsupported_backend stands in for Oracle or a third-party backend.
    handler = ConnectionHandler(
        {
            "default": settings.DATABASES["default"],
            "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"},
            "pg": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"},
            "maria": {"ENGINE": "django.db.backends.mysql", "NAME": "x"},
            "other": {"ENGINE": UNSUPPORTED},
            # No database at all (the bridge's HTTP mode): nothing is stored, nothing to refuse.
            "none": {"ENGINE": "django.db.backends.dummy"},
        }
    )
    errors = check_database_vendors(handler)
    assert [error.id for error in errors] == ["kernel_status.E010"]
    assert "'other'" in errors[0].msg
    assert f"{UNSUPPORTED}, vendor 'oracle'" in errors[0].msg
    assert errors[0].hint is not None
    assert "PostgreSQL" in errors[0].hint
    assert "MariaDB (10.6+) or MySQL (8.0+)" in errors[0].hint
    # Checking opened no connection.
    assert all(handler[alias].connection is None for alias in handler)


def test_a_database_the_router_keeps_the_mirror_out_of_is_not_e010() -> None:
    handler = ConnectionHandler(
        {"default": settings.DATABASES["default"], "other": {"ENGINE": UNSUPPORTED}}
    )

    class MirrorElsewhere:
        def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
            return db != "other" if app_label == "kernel_status" else None

    with override_settings(DATABASE_ROUTERS=[MirrorElsewhere()]):
        assert check_database_vendors(handler) == []


def test_e010_runs_with_manage_py_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    import kernel_status.checks

    handler = ConnectionHandler({"default": {"ENGINE": UNSUPPORTED}})
    monkeypatch.setattr(kernel_status.checks, "connections", handler)
    with pytest.raises(SystemCheckError, match=r"kernel_status\.E010"):
        call_command("check")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("nope", "not an alias of DATABASES"),
        (42, "must be a DATABASES alias"),
        ("host=db port=notaport =x", "connection string"),
    ],
)
def test_a_listen_database_that_cannot_work_is_e011(value: object, fragment: str) -> None:
    with override_settings(KERNEL_STATUS_LISTEN_DATABASE=value):
        errors = [e for e in check_settings() if e.id == "kernel_status.E011"]
    assert len(errors) == 1
    assert fragment in errors[0].msg


def test_a_listen_connection_string_passes() -> None:
    with override_settings(KERNEL_STATUS_LISTEN_DATABASE="postgresql://postgres@db:5432/x"):
        assert [e for e in check_settings() if e.id == "kernel_status.E011"] == []


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "30", timedelta(1)])
def test_a_stream_lifetime_that_is_not_positive_seconds_is_e012(value: object) -> None:
    with override_settings(KERNEL_STATUS_STREAM_MAX_SECONDS=value):
        errors = [e for e in check_settings() if e.id == "kernel_status.E012"]
    assert len(errors) == 1
    assert f"got {value!r}" in errors[0].msg


@pytest.mark.parametrize("value", [None, 0.25, 300])
def test_a_stream_lifetime_of_none_or_positive_seconds_passes(value: object) -> None:
    with override_settings(KERNEL_STATUS_STREAM_MAX_SECONDS=value):
        assert [e for e in check_settings() if e.id == "kernel_status.E012"] == []


@pytest.mark.parametrize(("deadline", "cooldown"), [(None, 1.0), (5.5, 0), (1, 0.25), (0.1, 30)])
def test_good_database_deadlines_and_cooldowns_pass(deadline: object, cooldown: object) -> None:
    with override_settings(
        KERNEL_STATUS_QUERY_DEADLINE=deadline, KERNEL_STATUS_DATABASE_COOLDOWN=cooldown
    ):
        assert check_ids() == []


@pytest.mark.parametrize("deadline", ["5", True, [5], 0, -1, float("nan"), float("inf")])
def test_a_bad_database_deadline_is_e013(deadline: object) -> None:
    with override_settings(KERNEL_STATUS_QUERY_DEADLINE=deadline):
        messages = check_settings()
    assert [message.id for message in messages] == ["kernel_status.E013"]
    assert "KERNEL_STATUS_QUERY_DEADLINE" in messages[0].msg


@pytest.mark.parametrize("cooldown", ["1", None, False, -0.5, float("nan"), float("inf")])
def test_a_bad_database_cooldown_is_e013(cooldown: object) -> None:
    with override_settings(KERNEL_STATUS_DATABASE_COOLDOWN=cooldown):
        messages = check_settings()
    assert [message.id for message in messages] == ["kernel_status.E013"]
    assert "KERNEL_STATUS_DATABASE_COOLDOWN" in messages[0].msg
