"""The session admin's change page: the session, its kernel and busy cells, read-only mirror
fields, and query counts that do not grow with cells or grants."""

from __future__ import annotations

import pytest
from bs4 import Tag
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertContains

from kernel_status.admin import (
    CellStatusInline,
    ExistingGrantInline,
    KernelProcessInline,
)
from kernel_status.choices import AccessRole
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.models import CellStatus, KernelProcess, Session, SessionAccess
from tests.admin.situations import SITUATIONS
from tests.utils import (
    CELLS_URL,
    CHANGE_URL,
    MakeSession,
    cells,
    count_queries,
    inline_formset,
    parse,
    session_form,
    text_of,
)

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


def test_cell_rows_survive_a_save(admin_client_: Client, situations: dict[str, Session]) -> None:
    """Saving the change form unchanged neither deletes nor alters cells or the kernel."""
    session = situations["idle-quiet-cells"]
    url = reverse(CHANGE_URL, args=[session.pk])
    before = list(CellStatus.objects.filter(session=session).order_by("cell_id").values())
    page = admin_client_.get(url)

    response = admin_client_.post(url, session_form(page.content).data)

    assert response.status_code == 302
    assert list(CellStatus.objects.filter(session=session).order_by("cell_id").values()) == before


def test_str_names_sessions_and_users(make_session: MakeSession, users: dict[str, User]) -> None:
    session = make_session("s_named")
    grant = SessionAccess.objects.select_related("user", "session").get(
        session=session, user=users["viewer"]
    )
    assert str(grant) == "viewer may view s_named"
    assert str(KernelProcess.objects.get(session=session)) == "s_named (running)"
