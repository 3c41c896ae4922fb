"""The session admin, used by a superuser: changelist, filters, search, change page, grants.

The status badge must agree with ``Session.objects.with_state()`` (what the API answers),
and neither page may run a query per session, cell or grant.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import cycle
from typing import Any

import pytest
from bs4 import BeautifulSoup, Tag
from django.contrib.admin.helpers import InlineAdminFormSet
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains, assertRedirects

from kernel_status.admin import (
    CellStatusInline,
    ExistingGrantInline,
    KernelProcessInline,
    NewGrantInline,
    heartbeat_age,
)
from kernel_status.choices import AccessRole, ProcessState, SessionState
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess
from tests.utils import MakeSession, cells

CHANGELIST_URL = "admin:kernel_status_session_changelist"
CHANGE_URL = "admin:kernel_status_session_change"
CELLS_URL = "admin:kernel_status_cellstatus_changelist"


# --- Reading the rendered pages ---------------------------------------------------------


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
                *cells(Cell.IDLE, Cell.DISABLED_TRANSITIVELY),
                # Stale cells that are not queued or running do not make the kernel busy.
                *cells(Cell.IDLE, Cell.DISABLED_TRANSITIVELY, stale=True),
            ]
        },
        SessionState.IDLE,
        "running",
    ),
    "idle-recent-heartbeat": Situation(
        {"heartbeat_age": timedelta(seconds=20), "cells": cells(Cell.IDLE)},
        SessionState.IDLE,
        "running",
    ),
    "busy-queued": Situation(
        {"cells": cells(Cell.IDLE, Cell.QUEUED, Cell.DISABLED_TRANSITIVELY)},
        SessionState.RUNNING,
        "running",
    ),
    "busy-running": Situation(
        {"cells": cells(Cell.RUNNING, Cell.IDLE), "owner": "editor"},
        SessionState.RUNNING,
        "running",
        owner="editor",
    ),
    "down-stopped": Situation(
        {"kernel": ProcessState.STOPPED, "cells": cells(Cell.RUNNING, Cell.QUEUED)},
        SessionState.STOPPED,
        "stopped",
    ),
    "down-not-started": Situation(
        {"kernel": ProcessState.NOT_STARTED, "heartbeat_age": None, "cells": cells(Cell.QUEUED)},
        SessionState.STOPPED,
        "not started",
    ),
    "down-no-kernel-row": Situation(
        {"kernel": None, "cells": cells(Cell.RUNNING)}, SessionState.STOPPED, "not started"
    ),
    # Past the default 60 s liveness window: a running kernel that went silent is stopped.
    "down-silent": Situation(
        {"heartbeat_age": timedelta(minutes=5), "cells": cells(Cell.RUNNING)},
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
    rows = {row["session_id"].get_text(strip=True): row for row in result_rows(response.content)}
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
        assert [span.get_attribute_list("class") for span in row["status_badge"]("span")] == [
            ["kernel-status-badge", f"kernel-status-{situation.status.value}"]
        ], session_id
        assert row["status_badge"].get_text(strip=True) == str(situation.status.label)
        assert row["owner"].get_text(strip=True) == situation.owner
        assert row["notebook"].get_text(strip=True) == "nb.py"
        assert row["kernel_state"].get_text(strip=True) == situation.kernel_state, session_id
        kernel = kernels.get(session_id)
        heartbeat = kernel.last_heartbeat_at if kernel is not None else None
        age = row["last_heartbeat_at"].find("time")
        if heartbeat is None:
            assert (age, row["last_heartbeat_at"].get_text(strip=True)) == (None, "-")
        else:
            # A short age, with the exact moment in its attributes.
            assert isinstance(age, Tag)
            assert age["datetime"] == heartbeat.isoformat()
            assert re.fullmatch(r"\d+ (s|min) ago", age.get_text()), age


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 s ago"),
        (59.9, "59 s ago"),
        (60, "1 min ago"),
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (86400 * 3 + 5, "3 d ago"),
        (-30, "0 s ago"),
    ],
)
def test_heartbeat_age_is_short(seconds: float, shown: str) -> None:
    now = timezone.now()
    html = heartbeat_age(now - timedelta(seconds=seconds), now=now)
    age = parse(html.encode()).find("time")
    assert isinstance(age, Tag)
    assert age.get_text() == shown
    assert age["class"] == ["kernel-status-age"]
    assert heartbeat_age(None) == "-"


def test_changelist_filter_titles_tell_the_two_states_apart(
    admin_client_: Client, situations: dict[str, Session]
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL))

    assert response.status_code == 200
    page = parse(response.content)
    titles = [summary.get_text(strip=True) for summary in page.select("#changelist-filter summary")]
    assert titles == ["By derived state", "By kernel process"]
    headers = [th.get_text(strip=True) for th in page.select("#result_list thead th")]
    assert headers == [
        "",  # the action checkbox
        "Session id",
        "Owner",
        "Notebook",
        "Kernel process",
        "Derived state",
        "Last heartbeat",
        "Last activity",
    ]


def test_changelist_has_only_the_reset_action_and_no_add_link(
    admin_client_: Client, situations: dict[str, Session]
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL))

    assert response.status_code == 200
    # No "delete selected": only the reset of a stuck mirror (tests/mirror/test_ordering.py).
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert actions == ["", "reset_mirror"]
    assert response.context["has_add_permission"] is False
    assert reverse("admin:kernel_status_session_add").encode() not in response.content


@pytest.mark.parametrize("status", SessionState.values)
def test_changelist_filters_by_derived_status(
    admin_client_: Client, situations: dict[str, Session], status: str
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL), {"state": status})

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
        reverse(CHANGELIST_URL), {"state": "stopped", "kernel__state": "running"}
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


@pytest.mark.parametrize("column", range(8))
@pytest.mark.parametrize("direction", ["", "-"])
def test_changelist_sorts_by_every_column(
    admin_client_: Client, situations: dict[str, Session], column: int, direction: str
) -> None:
    response = admin_client_.get(reverse(CHANGELIST_URL), {"o": f"{direction}{column}"})

    assert response.status_code == 200
    assert row_ids(response.content) == set(SITUATIONS)


@pytest.mark.parametrize("direction", ["", "-"])
def test_changelist_shows_and_sorts_by_last_activity(
    admin_client_: Client, situations: dict[str, Session], direction: str
) -> None:
    # Activity in an order unrelated to ids and creation.
    ids = sorted(SITUATIONS, key=lambda sid: sid[::-1])
    base = timezone.now() - timedelta(hours=1)
    for minutes, session_id in enumerate(ids):
        Session.objects.filter(session_id=session_id).update(
            last_activity=base + timedelta(minutes=minutes)
        )
    column = 7  # last activity: after the action checkbox and six columns
    response = admin_client_.get(reverse(CHANGELIST_URL), {"o": f"{direction}{column}"})

    assert response.status_code == 200
    rows = result_rows(response.content)
    shown = [row["session_id"].get_text(strip=True) for row in rows]
    assert shown == (ids if direction == "" else ids[::-1])
    for row, session_id in zip(rows, shown, strict=True):
        activity = Session.objects.get(session_id=session_id).last_activity
        assert activity is not None
        age = row["activity_age"].find("time")
        assert isinstance(age, Tag)
        assert age["datetime"] == activity.isoformat()
        assert re.fullmatch(r"\d+ (min|h) ago", age.get_text()), age


# Variants of sessions that each filter matches; cycled through to build the datasets.
FOUR_CELLS = cells(Cell.IDLE, Cell.DISABLED_TRANSITIVELY, Cell.IDLE) + cells(
    Cell.DISABLED_TRANSITIVELY, stale=True
)
MATCHING: dict[str, list[dict[str, Any]]] = {
    "state=running": [
        {"cells": [*FOUR_CELLS, *cells(Cell.RUNNING)]},
        {"cells": [*FOUR_CELLS, *cells(Cell.QUEUED)]},
    ],
    "state=idle": [{"cells": FOUR_CELLS}, {}],
    "state=stopped": [
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
    status = SITUATIONS[session_id].status
    assertContains(
        response,
        f'<span class="kernel-status-badge kernel-status-{status.value}">{status.label}</span>',
        html=True,
    )
    page = parse(response.content)
    kernel_inline = inline_formset(response, KernelProcessInline)
    has_kernel = KernelProcess.objects.filter(session=session).exists()
    assert [form.instance for form in kernel_inline.formset.forms] == (
        [session.kernel] if has_kernel else []
    )
    headings = [h3.get_text(" ", strip=True) for h3 in page.select("#kernel-group h3")]
    if has_kernel:
        # Names, not keys: "Kernel process: busy-queued (running)".
        label = session.kernel.get_state_display()
        assert headings == [f"Kernel process: {session_id} ({label})"]
    else:
        assert headings == []
    # The inline lists the busy cells (queued or running, stale or not) ...
    cell_inline = inline_formset(response, CellStatusInline)
    shown = {form.instance.cell_id: form.instance.status for form in cell_inline.formset.forms}
    busy = session.cells.filter(status__in=[Cell.QUEUED, Cell.RUNNING])
    assert shown == dict(busy.values_list("cell_id", "status"))
    rows = page.select("#cells-group tbody tr.has_original")
    assert [
        [td.get_text(strip=True) for td in row.select("td.field-cell_id, td.field-status")]
        for row in rows
    ] == [[cell.cell_id, cell.get_status_display()] for cell in busy.order_by("cell_id")]
    # ... with staleness as text, never Django's green "yes" icon.
    assert [text_of(row.select_one("td.field-stale_flag")) for row in rows] == [
        "stale inputs" if cell.stale else "" for cell in busy.order_by("cell_id")
    ]
    assert not page.select('#cells-group img[src*="icon-yes"], #cells-group img[src*="icon-no"]')
    # ... and every cell is counted, with a link to the list of all of them.
    counts = page.select_one(".field-cell_counts .readonly")
    assert counts is not None
    total = session.cells.count()
    if total:
        assert counts.get_text(" ", strip=True).startswith(f"{total} (")
        link = counts.find("a")
        assert isinstance(link, Tag)
        assert link["href"] == f"{reverse(CELLS_URL)}?session={session.pk}"
    else:
        assert counts.get_text(strip=True) == "no cells"
    # Grant rows name the user and the session.
    grant_labels = [
        p.get_text(strip=True)
        for p in page.select("#grants-group tbody tr.has_original td.original p")
    ]
    assert sorted(grant_labels) == [
        f"editor may edit {session_id}",
        f"inactive may edit {session_id}",
        f"viewer may view {session_id}",
    ]


def test_change_page_counts_cells_by_status(
    admin_client_: Client, make_session: MakeSession
) -> None:
    session = make_session(
        cells=cells(Cell.RUNNING, Cell.QUEUED)
        + cells(Cell.IDLE) * 5
        + cells(Cell.IDLE, stale=True)
        + cells(Cell.DISABLED_TRANSITIVELY)
    )

    response = admin_client_.get(reverse(CHANGE_URL, args=[session.pk]))

    counts = parse(response.content).select_one(".field-cell_counts .readonly")
    assert counts is not None
    assert counts.get_text(" ", strip=True) == (
        "9 (1 running, 1 queued, 6 idle, 1 disabled transitively; 1 with stale inputs) all cells"
    )


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
    small = make_session(cells=cells(Cell.RUNNING))
    SessionAccess.objects.filter(session=small).exclude(user=users["viewer"]).delete()
    large = make_session(
        cells=cells(Cell.RUNNING, Cell.QUEUED, Cell.DISABLED_TRANSITIVELY) + cells(Cell.IDLE) * 1997
    )
    SessionAccess.objects.bulk_create(
        SessionAccess(
            session=large,
            user=User.objects.create_user(username=f"grantee{i}"),
            role=AccessRole.VIEW,
        )
        for i in range(7)
    )
    assert (small.cells.count(), small.grants.count()) == (1, 1)
    assert (large.cells.count(), large.grants.count()) == (2000, 10)
    small_url = reverse(CHANGE_URL, args=[small.pk])
    large_url = reverse(CHANGE_URL, args=[large.pk])
    admin_client_.get(small_url)  # warm up per-process caches

    few, response = count_queries(admin_client_, small_url)
    assert len(inline_formset(response, CellStatusInline).formset.forms) == 1
    assert len(inline_formset(response, ExistingGrantInline).formset.forms) == 1
    many, response = count_queries(admin_client_, large_url)
    # Thousands of cells: the page lists the busy ones and counts the rest.
    assert len(inline_formset(response, CellStatusInline).formset.forms) == 2
    counts = parse(response.content).select_one(".field-cell_counts .readonly")
    assert counts is not None
    assert counts.get_text(" ", strip=True).startswith("2000 (1 running, 1 queued, 1997 idle")
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
        f"{cells_prefix}-0-status": Cell.IDLE,
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


# --- All cells of a session ----------------------------------------------------------------


def test_cell_list_pages_through_one_sessions_cells(
    admin_client_: Client, make_session: MakeSession
) -> None:
    other = make_session("other", cells=cells(Cell.RUNNING) * 3)
    session = make_session("big", cells=cells(Cell.RUNNING) + cells(Cell.IDLE) * 249)
    url = f"{reverse(CELLS_URL)}?session={session.pk}"

    response = admin_client_.get(url)

    assert response.status_code == 200
    page = parse(response.content)
    rows = page.select("#result_list tbody tr")
    assert len(rows) == 100  # the first page of 250
    assert {text_of(row.select_one("td.field-session")) for row in rows} == {"big"}
    assert response.context["cl"].result_count == 250
    # The session filter shows the chosen session, and no list of every session.
    chosen = page.select('#changelist-filter details[data-filter-title="session"] li')
    assert [li.get_text(strip=True) for li in chosen] == ["All", "big"]
    assert "other" not in text_of(page.select_one("#changelist-filter"))
    assert len(admin_client_.get(f"{url}&p=3").context["cl"].result_list) == 50
    assert other.cells.count() == 3


def test_cell_list_is_read_only_and_its_queries_do_not_grow(
    admin_client_: Client, make_session: MakeSession
) -> None:
    few = make_session(cells=cells(Cell.RUNNING))
    many = make_session(cells=cells(Cell.IDLE) * 60)
    admin_client_.get(f"{reverse(CELLS_URL)}?session={few.pk}")  # warm up

    small, _ = count_queries(admin_client_, f"{reverse(CELLS_URL)}?session={few.pk}")
    large, response = count_queries(admin_client_, f"{reverse(CELLS_URL)}?session={many.pk}")

    assert small == large
    assert response.context["has_add_permission"] is False
    assert response.context["action_form"] is None
    cell = many.cells.first()
    assert cell is not None
    change = admin_client_.get(reverse("admin:kernel_status_cellstatus_change", args=[cell.pk]))
    assert change.status_code == 200
    assert change.context["has_change_permission"] is False
    assert admin_client_.get(reverse("admin:kernel_status_cellstatus_add")).status_code == 403


def test_str_names_sessions_and_users(make_session: MakeSession, users: dict[str, User]) -> None:
    session = make_session("s_named")
    grant = SessionAccess.objects.select_related("user", "session").get(
        session=session, user=users["viewer"]
    )
    assert str(grant) == "viewer may view s_named"
    assert str(KernelProcess.objects.get(session=session)) == "s_named (running)"
