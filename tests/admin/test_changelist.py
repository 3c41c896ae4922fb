"""The session admin's changelist: each session's derived state, filters, search, sorting and
query counts. The badge must agree with ``Session.objects.with_state()`` (what the API
answers), and the page may not run a query per session."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import cycle
from typing import Any

import pytest
from bs4 import Tag
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from kernel_status.admin import (
    heartbeat_age,
)
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState, SessionState
from kernel_status.models import KernelProcess, Session
from tests.admin.situations import SITUATIONS
from tests.utils import (
    CHANGELIST_URL,
    MakeSession,
    cells,
    count_queries,
    parse,
    result_rows,
    row_ids,
)

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
