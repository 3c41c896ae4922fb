"""The paged, read-only list of all cells of one session."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from kernel_status.choices import CellRuntimeState as Cell
from tests.utils import (
    CELLS_URL,
    MakeSession,
    cells,
    count_queries,
    parse,
    text_of,
)

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
