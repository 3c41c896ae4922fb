"""The session admin, used by a superuser: changelist, filters, search, change page, grants.

The status badge must agree with ``Session.objects.with_state()`` (what the API answers),
and neither page may run a query per session, cell or grant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from itertools import cycle
from typing import Any

import pytest
from django.contrib.admin.helpers import InlineAdminFormSet
from django.contrib.admin.utils import display_for_value
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pytest_django.asserts import assertRedirects

from kernel_status.admin import (
    CellStatusInline,
    ExistingGrantInline,
    KernelProcessInline,
    NewGrantInline,
)
from kernel_status.choices import AccessRole, CellRuntimeState, ProcessState, SessionState
from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess
from tests.utils import MakeSession, cells

CHANGELIST_URL = "admin:kernel_status_session_changelist"
CHANGE_URL = "admin:kernel_status_session_change"

IDLE = CellRuntimeState.IDLE
QUEUED = CellRuntimeState.QUEUED
RUNNING = CellRuntimeState.RUNNING
DISABLED = CellRuntimeState.DISABLED_TRANSITIVELY


# --- Reading the rendered pages ---------------------------------------------------------


@dataclass
class Cell:
    """One ``field-<name>`` cell of a changelist row."""

    text: str = ""
    span_classes: list[str] = field(default_factory=list)


class ResultListParser(HTMLParser):
    """The rows of the changelist's ``#result_list`` table, as {field name: Cell}."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Cell]] = []
        self._in_table = False
        self._in_body = False
        self._cell: Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id") == "result_list":
            self._in_table = True
        elif self._in_table and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append({})
        elif self._in_body and tag in {"th", "td"}:
            classes = (attributes.get("class") or "").split()
            names = [name.removeprefix("field-") for name in classes if name.startswith("field-")]
            if names:
                self._cell = self.rows[-1][names[0]] = Cell()
        elif self._cell is not None and tag == "span":
            self._cell.span_classes.append(attributes.get("class") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"th", "td"}:
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._in_table = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data


def result_rows(content: bytes) -> list[dict[str, Cell]]:
    parser = ResultListParser()
    parser.feed(content.decode())
    return parser.rows


def row_ids(content: bytes) -> set[str]:
    return {row["session_id"].text.strip() for row in result_rows(content)}


class FormParser(HTMLParser):
    """The controls of one ``<form>``: what a browser would submit, and each control's type."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.data: dict[str, str] = {}
        self.types: dict[str, str] = {}
        self._in_form = False
        self._select: str | None = None
        self._select_first: str | None = None
        self._select_chosen = False
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self._in_form = attributes.get("id") == self.form_id
        if not self._in_form:
            return
        name = attributes.get("name")
        if tag == "input" and name is not None:
            kind = attributes.get("type") or "text"
            self.types[name] = kind
            if kind in {"submit", "button", "reset", "image", "file"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in attributes:
                return
            self.data[name] = attributes.get("value") or ("on" if kind == "checkbox" else "")
        elif tag == "select" and name is not None:
            self.types[name] = "select"
            self._select, self._select_first, self._select_chosen = name, None, False
        elif tag == "option" and self._select is not None:
            value = attributes.get("value") or ""
            if self._select_first is None:
                self._select_first = value
            if "selected" in attributes:
                self.data[self._select] = value
                self._select_chosen = True
        elif tag == "textarea" and name is not None:
            self.types[name] = "textarea"
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select" and self._select is not None:
            if not self._select_chosen and self._select_first is not None:
                self.data[self._select] = self._select_first
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.data[self._textarea] += data


def session_form(content: bytes) -> FormParser:
    parser = FormParser("session_form")
    parser.feed(content.decode())
    return parser


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


# --- Fixtures ----------------------------------------------------------------------------


@pytest.fixture
def admin_client_(client: Client, users: dict[str, User]) -> Client:
    """The test client, logged in as the superuser."""
    client.force_login(users["superuser"])
    return client


@dataclass(frozen=True)
class Situation:
    """A session in one situation, and what the changelist must show for it."""

    kwargs: dict[str, Any]
    status: SessionState
    kernel_state: str
    owner: str = "owner"


# Session id -> situation. Ids share no substring with usernames, so searches are exact.
SITUATIONS: dict[str, Situation] = {
    "idle-no-cells": Situation({}, SessionState.IDLE, "running"),
    "idle-quiet-cells": Situation(
        {
            "cells": [
                *cells(IDLE, DISABLED),
                # Stale cells that are not queued or running do not make the kernel busy.
                *cells(IDLE, DISABLED, stale=True),
            ]
        },
        SessionState.IDLE,
        "running",
    ),
    "idle-recent-heartbeat": Situation(
        {"heartbeat_age": timedelta(seconds=20), "cells": cells(IDLE)},
        SessionState.IDLE,
        "running",
    ),
    "busy-queued": Situation(
        {"cells": cells(IDLE, QUEUED, DISABLED)}, SessionState.RUNNING, "running"
    ),
    "busy-running": Situation(
        {"cells": cells(RUNNING, IDLE), "owner": "editor"},
        SessionState.RUNNING,
        "running",
        owner="editor",
    ),
    "down-stopped": Situation(
        {"kernel": ProcessState.STOPPED, "cells": cells(RUNNING, QUEUED)},
        SessionState.STOPPED,
        "stopped",
    ),
    "down-not-started": Situation(
        {"kernel": ProcessState.NOT_STARTED, "heartbeat_age": None, "cells": cells(QUEUED)},
        SessionState.STOPPED,
        "not started",
    ),
    "down-no-kernel-row": Situation(
        {"kernel": None, "cells": cells(RUNNING)}, SessionState.STOPPED, "not started"
    ),
    # Past the default 60 s liveness window: a running kernel that went silent is stopped.
    "down-silent": Situation(
        {"heartbeat_age": timedelta(minutes=5), "cells": cells(RUNNING)},
        SessionState.STOPPED,
        "running",
    ),
}


@pytest.fixture
def situations(make_session: MakeSession, users: dict[str, User]) -> dict[str, Session]:
    """One session per entry of SITUATIONS, keyed by session id."""
    made = {}
    for session_id, situation in SITUATIONS.items():
        kwargs = dict(situation.kwargs)
        if "owner" in kwargs:
            kwargs["owner"] = users[kwargs["owner"]]
        made[session_id] = make_session(session_id, **kwargs)
    return made


# --- Changelist ----------------------------------------------------------------------------


def test_changelist_shows_each_session_with_the_derived_status(
    admin_client_: Client, situations: dict[str, Session]
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL))

    assert response.status_code == 200
    rows = {row["session_id"].text.strip(): row for row in result_rows(response.content)}
    assert set(rows) == set(SITUATIONS)
    derived = dict(Session.objects.with_state().values_list("session_id", "state"))
    kernels = {
        kernel.session.session_id: kernel
        for kernel in KernelProcess.objects.select_related("session")
    }
    for session_id, situation in SITUATIONS.items():
        row = rows[session_id]
        # The admin shows what the API would answer, and that is the expected status.
        assert derived[session_id] == situation.status, session_id
        assert row["status_badge"].span_classes == [
            f"kernel-status-badge kernel-status-{situation.status.value}"
        ], session_id
        assert row["status_badge"].text.strip() == str(situation.status.label)
        assert row["owner"].text.strip() == situation.owner
        assert row["notebook"].text.strip() == "nb.py"
        assert row["kernel_state"].text.strip() == situation.kernel_state, session_id
        kernel = kernels.get(session_id)
        heartbeat = kernel.last_heartbeat_at if kernel is not None else None
        assert row["last_heartbeat_at"].text.strip() == display_for_value(heartbeat, "-")


def test_changelist_has_only_the_reset_action_and_no_add_link(
    admin_client_: Client, situations: dict[str, Session]
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL))

    assert response.status_code == 200
    # No "delete selected": only the reset of a stuck mirror (tests/test_ordering.py).
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert actions == ["", "reset_mirror"]
    assert response.context["has_add_permission"] is False
    assert reverse("admin:kernel_status_session_add").encode() not in response.content


@pytest.mark.parametrize("status", SessionState.values)
def test_changelist_filters_by_derived_status(
    admin_client_: Client, situations: dict[str, Session], status: str
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL), {"status": status})

    assert response.status_code == 200
    expected = {sid for sid, situation in SITUATIONS.items() if situation.status == status}
    assert expected  # each status has sessions in the fixture
    assert row_ids(response.content) == expected
    assert expected == set(
        Session.objects.with_state().filter(state=status).values_list("session_id", flat=True)
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (
            ProcessState.RUNNING,
            {
                "idle-no-cells",
                "idle-quiet-cells",
                "idle-recent-heartbeat",
                "busy-queued",
                "busy-running",
                "down-silent",
            },
        ),
        (ProcessState.STOPPED, {"down-stopped"}),
        # A session without a kernel row has no kernel state to filter on.
        (ProcessState.NOT_STARTED, {"down-not-started"}),
    ],
)
def test_changelist_filters_by_kernel_state(
    admin_client_: Client, situations: dict[str, Session], state: str, expected: set[str]
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL), {"kernel__state": state})

    assert response.status_code == 200
    assert row_ids(response.content) == expected


def test_changelist_combines_filters(admin_client_: Client, situations: dict[str, Session]) -> None:
    response = admin_client_.get(
        reverse(CHANGELIST_URL), {"status": "stopped", "kernel__state": "running"}
    )

    assert response.status_code == 200
    assert row_ids(response.content) == {"down-silent"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("busy-queued", {"busy-queued"}),
        ("BUSY-RUNNING", {"busy-running"}),
        ("busy", {"busy-queued", "busy-running"}),
        ("editor", {"busy-running"}),  # owner username
        ("nobody-matches-this", set()),
    ],
)
def test_changelist_search_by_session_id_and_owner(
    admin_client_: Client, situations: dict[str, Session], query: str, expected: set[str]
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL), {"q": query})

    assert response.status_code == 200
    assert row_ids(response.content) == expected


@pytest.mark.parametrize("column", range(6))
@pytest.mark.parametrize("direction", ["", "-"])
def test_changelist_sorts_by_every_column(
    admin_client_: Client, situations: dict[str, Session], column: int, direction: str
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL), {"o": f"{direction}{column}"})

    assert response.status_code == 200
    assert row_ids(response.content) == set(SITUATIONS)


# Variants of sessions that each filter matches; cycled through to build the datasets.
FOUR_CELLS = cells(IDLE, DISABLED, IDLE) + cells(DISABLED, stale=True)
MATCHING: dict[str, list[dict[str, Any]]] = {
    "status=running": [
        {"cells": [*FOUR_CELLS, *cells(RUNNING)]},
        {"cells": [*FOUR_CELLS, *cells(QUEUED)]},
    ],
    "status=idle": [{"cells": FOUR_CELLS}, {}],
    "status=stopped": [
        {"kernel": ProcessState.STOPPED, "cells": FOUR_CELLS},
        {"kernel": None, "cells": FOUR_CELLS},
        {"kernel": ProcessState.NOT_STARTED, "heartbeat_age": None, "cells": FOUR_CELLS},
        {"heartbeat_age": timedelta(minutes=5), "cells": FOUR_CELLS},
    ],
    "kernel__state=running": [
        {"cells": FOUR_CELLS},
        {"heartbeat_age": timedelta(minutes=5), "cells": FOUR_CELLS},
    ],
    "kernel__state=stopped": [{"kernel": ProcessState.STOPPED, "cells": FOUR_CELLS}],
    "kernel__state=not_started": [
        {"kernel": ProcessState.NOT_STARTED, "heartbeat_age": None, "cells": FOUR_CELLS}
    ],
    "q=s_": [{"cells": FOUR_CELLS}, {"kernel": None, "cells": FOUR_CELLS}],
}
# The plain changelist: every kind of session at once.
MATCHING[""] = [variant for variants in MATCHING.values() for variant in variants]


@pytest.mark.parametrize("query", list(MATCHING))
def test_changelist_query_count_does_not_grow_with_sessions(
    admin_client_: Client, make_session: MakeSession, query: str
) -> None:
    url = f"{reverse(CHANGELIST_URL)}?{query}"
    variants = cycle(MATCHING[query])
    make_session(**next(variants))
    admin_client_.get(url)  # warm up per-process caches

    few, response = count_queries(admin_client_, url)
    assert len(result_rows(response.content)) == 1
    for _ in range(14):
        make_session(**next(variants))
    many, response = count_queries(admin_client_, url)
    assert len(result_rows(response.content)) == 15

    assert few == many


# --- Change page ---------------------------------------------------------------------------


@pytest.mark.parametrize("session_id", list(SITUATIONS))
def test_change_page_shows_session_kernel_and_cells(
    admin_client_: Client, situations: dict[str, Session], session_id: str
) -> None:
    session = situations[session_id]

    response = admin_client_.get(reverse(CHANGE_URL, args=[session.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    status = SITUATIONS[session_id].status
    assert (
        f'<span class="kernel-status-badge kernel-status-{status.value}">{status.label}</span>'
        in content
    )
    kernel_inline = inline_formset(response, KernelProcessInline)
    has_kernel = KernelProcess.objects.filter(session=session).exists()
    assert [form.instance for form in kernel_inline.formset.forms] == (
        [session.kernel] if has_kernel else []
    )
    if has_kernel:
        assert f"{session.kernel.session_id}: {session.kernel.state}" in content
    cell_inline = inline_formset(response, CellStatusInline)
    shown = {form.instance.cell_id: form.instance.status for form in cell_inline.formset.forms}
    assert shown == dict(session.cells.values_list("cell_id", "status"))
    for cell in session.cells.all():
        assert f"<p>{cell.cell_id}</p>" in content
        assert f"<p>{cell.get_status_display()}</p>" in content


def test_change_page_mirror_fields_kernel_and_cells_are_read_only(
    admin_client_: Client, situations: dict[str, Session]
) -> None:
    session = situations["busy-queued"]

    response = admin_client_.get(reverse(CHANGE_URL, args=[session.pk]))

    assert response.status_code == 200
    form = session_form(response.content)
    assert form.types  # the form was found
    for name in ["session_id", "notebook", "owner", "created_at", "updated_at"]:
        assert name not in form.types
    cells_prefix = inline_formset(response, CellStatusInline).formset.prefix
    kernel_prefix = inline_formset(response, KernelProcessInline).formset.prefix
    for prefix, fields in [
        (cells_prefix, ["cell_id", "status", "stale", "notified_at", "DELETE"]),
        (kernel_prefix, ["state", "started_at", "last_heartbeat_at", "exit_code", "DELETE"]),
    ]:
        controls = {name: kind for name, kind in form.types.items() if name.startswith(prefix)}
        # Only the formset bookkeeping, all hidden: no editable control for any row.
        assert set(controls.values()) == {"hidden"}, controls
        for name in controls:
            assert name.rsplit("-", 1)[-1] not in fields
    assert response.context["has_add_permission"] is False
    assert response.context["has_delete_permission"] is False
    delete_url = reverse("admin:kernel_status_session_delete", args=[session.pk])
    assert delete_url.encode() not in response.content


def test_change_page_query_count_does_not_grow_with_cells_or_grants(
    admin_client_: Client, make_session: MakeSession, users: dict[str, User]
) -> None:
    small = make_session(cells=cells(RUNNING))
    SessionAccess.objects.filter(session=small).exclude(user=users["viewer"]).delete()
    large = make_session(cells=cells(RUNNING, QUEUED, DISABLED) + cells(IDLE) * 27)
    SessionAccess.objects.bulk_create(
        SessionAccess(
            session=large,
            user=User.objects.create_user(username=f"grantee{i}"),
            role=AccessRole.VIEW,
        )
        for i in range(7)
    )
    assert (small.cells.count(), small.grants.count()) == (1, 1)
    assert (large.cells.count(), large.grants.count()) == (30, 10)
    small_url = reverse(CHANGE_URL, args=[small.pk])
    large_url = reverse(CHANGE_URL, args=[large.pk])
    admin_client_.get(small_url)  # warm up per-process caches

    few, response = count_queries(admin_client_, small_url)
    assert len(inline_formset(response, CellStatusInline).formset.forms) == 1
    assert len(inline_formset(response, ExistingGrantInline).formset.forms) == 1
    many, response = count_queries(admin_client_, large_url)
    assert len(inline_formset(response, CellStatusInline).formset.forms) == 30
    assert len(inline_formset(response, ExistingGrantInline).formset.forms) == 10

    assert few == many


# --- Editing grants --------------------------------------------------------------------


def grant_index(response: Any, user: User) -> int:
    forms = inline_formset(response, ExistingGrantInline).formset.forms
    return next(i for i, form in enumerate(forms) if form.instance.user_id == user.pk)


def test_change_form_edits_adds_and_deletes_grants_only(
    admin_client_: Client, situations: dict[str, Session], users: dict[str, User]
) -> None:
    session = situations["busy-queued"]
    url = reverse(CHANGE_URL, args=[session.pk])
    before_cells = list(session.cells.order_by("cell_id").values_list("cell_id", "status"))
    before_kernel = KernelProcess.objects.filter(pk=session.pk).values().get()
    page = admin_client_.get(url)
    data = session_form(page.content).data
    existing = inline_formset(page, ExistingGrantInline).formset.prefix
    new = inline_formset(page, NewGrantInline).formset.prefix
    cells_prefix = inline_formset(page, CellStatusInline).formset.prefix
    assert existing != new  # both grant inlines are on SessionAccess; Django tells them apart

    data[f"{existing}-{grant_index(page, users['viewer'])}-role"] = AccessRole.EDIT
    data[f"{existing}-{grant_index(page, users['inactive'])}-DELETE"] = "on"
    data[f"{new}-0-user"] = str(users["stranger"].pk)
    data[f"{new}-0-role"] = AccessRole.VIEW
    # Read-only values sent anyway (a tampered form) are ignored.
    data |= {
        "session_id": "hijacked",
        "notebook": "evil.py",
        "owner": str(users["stranger"].pk),
        f"{cells_prefix}-0-status": CellRuntimeState.IDLE,
        "kernel-0-state": ProcessState.STOPPED,
        "_save": "Save",
    }
    response = admin_client_.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert response["Location"] == reverse(CHANGELIST_URL)
    assert dict(session.grants.values_list("user__username", "role")) == {
        "editor": AccessRole.EDIT,
        "viewer": AccessRole.EDIT,
        "stranger": AccessRole.VIEW,
    }
    session.refresh_from_db()
    assert (session.session_id, session.notebook, session.owner) == (
        "busy-queued",
        "nb.py",
        users["owner"],
    )
    assert list(session.cells.order_by("cell_id").values_list("cell_id", "status")) == (
        before_cells
    )
    assert KernelProcess.objects.filter(pk=session.pk).values().get() == before_kernel


def test_change_form_rejects_a_second_grant_for_the_same_user(
    admin_client_: Client, situations: dict[str, Session], users: dict[str, User]
) -> None:
    session = situations["busy-queued"]
    url = reverse(CHANGE_URL, args=[session.pk])
    page = admin_client_.get(url)
    data = session_form(page.content).data
    new = inline_formset(page, NewGrantInline).formset.prefix
    data |= {f"{new}-0-user": str(users["editor"].pk), f"{new}-0-role": AccessRole.VIEW}

    response = admin_client_.post(url, data)

    # The form again, with the error (Django 5.2 alone let this reach the database's
    # unique constraint: IntegrityError, a server error).
    assert response.status_code == 200
    assert inline_formset(response, NewGrantInline).formset.errors == [
        {"__all__": ["Session access grant with this Session and User already exists."]}
    ]
    assert dict(session.grants.values_list("user__username", "role")) == {
        "editor": AccessRole.EDIT,
        "viewer": AccessRole.VIEW,
        "inactive": AccessRole.EDIT,
    }


def test_change_form_rejects_two_new_grants_for_the_same_user(
    admin_client_: Client, situations: dict[str, Session], users: dict[str, User]
) -> None:
    session = situations["busy-queued"]
    url = reverse(CHANGE_URL, args=[session.pk])
    page = admin_client_.get(url)
    data = session_form(page.content).data
    new = inline_formset(page, NewGrantInline).formset.prefix
    stranger = str(users["stranger"].pk)
    data |= {
        f"{new}-TOTAL_FORMS": "2",
        f"{new}-0-user": stranger,
        f"{new}-0-role": AccessRole.VIEW,
        f"{new}-1-user": stranger,
        f"{new}-1-role": AccessRole.EDIT,
    }

    response = admin_client_.post(url, data)

    assert response.status_code == 200
    assert inline_formset(response, NewGrantInline).formset.non_form_errors() == [
        "Please correct the duplicate data for user."
    ]
    assert not session.grants.filter(user=users["stranger"]).exists()


# --- Permissions ---------------------------------------------------------------------------


def test_no_add_permission(admin_client_: Client) -> None:
    assert admin_client_.get(reverse("admin:kernel_status_session_add")).status_code == 403


def test_no_delete_permission(admin_client_: Client, situations: dict[str, Session]) -> None:
    session = situations["busy-queued"]
    url = reverse("admin:kernel_status_session_delete", args=[session.pk])

    assert admin_client_.get(url).status_code == 403
    assert admin_client_.post(url, {"post": "yes"}).status_code == 403
    changelist = admin_client_.post(
        reverse(CHANGELIST_URL),
        {"action": "delete_selected", "_selected_action": [str(session.pk)], "post": "yes"},
    )
    assert changelist.status_code in {200, 302}
    assert Session.objects.filter(pk=session.pk).exists()


UrlFor = Callable[[Session], str]


@pytest.mark.parametrize(
    "url_for",
    [
        lambda session: reverse(CHANGELIST_URL),
        lambda session: reverse(CHANGE_URL, args=[session.pk]),
    ],
    ids=["changelist", "change"],
)
@pytest.mark.parametrize("username", ["owner", None])
def test_non_staff_is_redirected_to_login(
    client: Client,
    users: dict[str, User],
    situations: dict[str, Session],
    url_for: UrlFor,
    username: str | None,
) -> None:
    if username is not None:
        client.force_login(users[username])
    url = url_for(situations["busy-queued"])

    response = client.get(url)

    assertRedirects(response, f"{reverse('admin:login')}?next={url}")


def test_staff_without_permissions_is_forbidden(
    client: Client, users: dict[str, User], situations: dict[str, Session]
) -> None:
    staff = users["stranger"]
    staff.is_staff = True
    staff.save()
    client.force_login(staff)

    assert client.get(reverse(CHANGELIST_URL)).status_code == 403
    assert client.get(reverse(CHANGE_URL, args=[situations["idle-no-cells"].pk])).status_code == (
        403
    )


def test_cell_rows_survive_a_save(admin_client_: Client, situations: dict[str, Session]) -> None:
    """Saving the change form unchanged neither deletes nor alters cells or the kernel."""
    session = situations["idle-quiet-cells"]
    url = reverse(CHANGE_URL, args=[session.pk])
    before = list(CellStatus.objects.filter(session=session).order_by("cell_id").values())
    page = admin_client_.get(url)

    response = admin_client_.post(url, session_form(page.content).data)

    assert response.status_code == 302
    assert list(CellStatus.objects.filter(session=session).order_by("cell_id").values()) == before
