"""The admin and the offline API docs in a real browser: Debian's chromium, headless.

Playwright drives ``/usr/bin/chromium`` (never a browser of its own) against pytest-django's
``live_server``, which also serves the static files: the admin's CSS, ``kernel_status``'s badge
CSS, and Swagger UI from drf-spectacular-sidecar. One journey, one screenshot per step in
``artifacts/screenshots/``:

1. log into the admin with its login form;
2. the sessions changelist, each row with its derived status as a coloured badge;
3. the derived state filter set to "running";
4. a running session's change page with its busy cells inline and the cell counts;
5. ``/api/docs/``, Swagger UI rendering the ``/api/kernel/status`` operation.

Throughout, the page may log no console error, throw no error, load nothing that fails, and
send no request to a host other than 127.0.0.1: the docs must work offline.

Without chromium the module is skipped (``apt-get install chromium``); under ``CI=true`` it
fails instead, because ``.ci/run`` installs chromium.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    ConsoleMessage,
    Locator,
    Page,
    Request,
    Response,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.choices import ProcessState
from tests.utils import REPO, MakeSession, cells

CHROMIUM = shutil.which("chromium")
IN_CI = os.environ.get("CI") == "true"

pytestmark = [
    # `make test` runs the suite twice, on SQLite and then on PostgreSQL (with DATABASE_URL
    # set). These pages exercise the admin's templates, CSS and the docs' assets rather than
    # the database, whose queries the rest of the suite checks on both; chromium is slow on
    # a small machine, so it runs once, in the SQLite pass.
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL")),
        reason="browser tests run once per `make test`, in the SQLite pass (DATABASE_URL is set)",
    ),
    pytest.mark.skipif(
        CHROMIUM is None and not IN_CI,
        reason="chromium is not installed (apt-get install chromium); CI=true makes this a failure",
    ),
]

SCREENSHOTS = REPO / "artifacts" / "screenshots"

# Chromium as root in a container, and quiet: no sandbox (root), no GPU, and none of the
# background traffic to Google's hosts (updates, sync, field trials) that it sends by default.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1"}
# Chromium asks every site for /favicon.ico on its own, although no page links it; the admin
# has none, so that one 404 (and its console line) is the browser's, not a page's.
BROWSER_OWN_PATHS = {"/favicon.ico"}
TRANSPARENT = "rgba(0, 0, 0, 0)"


def browser_own(url: str) -> bool:
    return urlsplit(url).path in BROWSER_OWN_PATHS


@dataclass
class BrowserLog:
    """What the page did besides rendering: console errors, uncaught errors, requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not browser_own(message.location.get("url", "")):
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def on_page_error(self, error: PlaywrightError) -> None:
        self.page_errors.append(f"{error.name}: {error.message}")

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_request_failed(self, request: Request) -> None:
        self.failures.append(f"{request.url}: {request.failure}")

    def on_response(self, response: Response) -> None:
        if response.status >= 400 and not browser_own(response.url):
            self.failures.append(f"{response.url}: HTTP {response.status}")

    def foreign_requests(self) -> list[str]:
        """Requests to anywhere but 127.0.0.1. data: and blob: URLs stay in the page."""
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in {"data", "blob"}:
                continue
            if parts.scheme not in {"http", "https"} or parts.hostname not in LOCAL_HOSTS:
                foreign.append(url)
        return foreign


@contextmanager
def chromium_page() -> Iterator[tuple[Page, BrowserLog]]:
    """A page in a fresh headless chromium; checks its log when the block ends cleanly."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed, and CI=true requires it: .ci/run installs it")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for stale in SCREENSHOTS.glob("*.png"):
        stale.unlink()  # no screenshot of an earlier run may pass for this one's
    log = BrowserLog()
    # Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls
    # while one runs: create the data before this block, and check it after.
    with sync_playwright() as playwright:
        # launch() gives chromium a fresh, empty profile of its own and removes it afterwards.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id="UTC"
            )
            # Generous: CI machines are small, and chromium shares them with the server.
            context.set_default_timeout(20_000)
            expect.set_options(timeout=20_000)
            page = context.new_page()
            page.on("console", log.on_console)
            page.on("pageerror", log.on_page_error)
            page.on("request", log.on_request)
            page.on("requestfailed", log.on_request_failed)
            page.on("response", log.on_response)
            try:
                yield page, log
            except BaseException:
                with suppress(PlaywrightError):
                    screenshot(page, "failure.png")  # where the journey stopped
                raise
            context.close()
        finally:
            browser.close()
    assert log.console_errors == [], "console errors"
    assert log.page_errors == [], "uncaught errors in the page"
    assert log.failures == [], "failed requests"
    assert log.requests, "no request was recorded"
    assert log.foreign_requests() == [], "requests to hosts other than 127.0.0.1"


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=SCREENSHOTS / name, full_page=True)


def changelist_rows(page: Page) -> dict[str, Locator]:
    """The changelist's rows by session id (the row's link text)."""
    rows = page.locator("#result_list tbody tr")
    return {row.locator("th.field-session_id").inner_text().strip(): row for row in rows.all()}


def colours(locator: Locator) -> tuple[str, str]:
    """The element's computed (text colour, background colour), as CSS rgb() strings."""
    found = locator.evaluate(
        "element => [getComputedStyle(element).color, getComputedStyle(element).backgroundColor]"
    )
    return found[0], found[1]


def contrast(first: str, second: str) -> float:
    """WCAG's contrast ratio of two opaque ``rgb(r, g, b)`` colours."""

    def luminance(colour: str) -> float:
        channels = [int(part) / 255 for part in re.findall(r"\d+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted([luminance(first), luminance(second)], reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.fixture
def sessions(make_session: MakeSession, settings: Any) -> dict[str, str]:
    """Sessions in every derived status, as {session id: expected status}."""
    # Long enough that the fresh heartbeats stay fresh however slowly chromium starts, short
    # enough that a kernel silent for two hours counts as stopped.
    settings.KERNEL_STATUS_LIVENESS_WINDOW = timedelta(hours=1)
    make_session("nb-running", cells=cells(Cell.IDLE, Cell.RUNNING, Cell.QUEUED))
    make_session("nb-queued", cells=cells(Cell.QUEUED))
    make_session(
        "nb-idle",
        cells=[(Cell.IDLE, False), (Cell.DISABLED_TRANSITIVELY, False), (Cell.IDLE, True)],
    )
    make_session("nb-stopped", kernel=ProcessState.STOPPED, cells=cells(Cell.IDLE))
    make_session("nb-silent", heartbeat_age=timedelta(hours=2), cells=cells(Cell.RUNNING))
    make_session("nb-not-started", kernel=None)
    return {
        "nb-running": "running",
        "nb-queued": "running",
        "nb-idle": "idle",
        "nb-stopped": "stopped",
        "nb-silent": "stopped",
        "nb-not-started": "stopped",
    }


def test_admin_and_api_docs_in_chromium(live_server: Any, sessions: dict[str, str]) -> None:
    # live_server listens on 127.0.0.1 under the name "localhost"; use the address itself so
    # that every request the page makes must go to 127.0.0.1.
    base = live_server.url.replace("://localhost:", "://127.0.0.1:")
    with chromium_page() as (page, log):
        # 1. The admin's login form.
        page.goto(f"{base}/admin/")
        expect(page).to_have_url(f"{base}/admin/login/?next=/admin/")
        page.get_by_label("Username").fill("superuser")
        page.get_by_label("Password").fill("superuser")
        screenshot(page, "01-admin-login.png")
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{base}/admin/")
        expect(page.get_by_role("link", name="Notebook sessions")).to_be_visible()

        # 2. The changelist: one badge per row, with the derived status, styled by admin.css.
        page.get_by_role("link", name="Notebook sessions").click()
        expect(page).to_have_url(f"{base}/admin/kernel_status/session/")
        expect(page.locator("#result_list tbody tr")).to_have_count(len(sessions))
        rows = changelist_rows(page)
        assert set(rows) == set(sessions)
        backgrounds: dict[str, set[str]] = {}
        for session_id, status in sessions.items():
            badge = rows[session_id].locator("td.field-status_badge .kernel-status-badge")
            expect(badge).to_be_visible()
            expect(badge).to_have_text(status)
            expect(badge).to_have_class(f"kernel-status-badge kernel-status-{status}")
            text, fill = colours(badge)
            assert fill != TRANSPARENT, f"{session_id}: admin.css did not style the badge"
            assert contrast(text, fill) >= 4.5, f"{session_id}: {text} on {fill} is hard to read"
            backgrounds.setdefault(status, set()).add(fill)
        # One colour per status, and a different one for each.
        assert all(len(found) == 1 for found in backgrounds.values()), backgrounds
        assert len(set.union(*backgrounds.values())) == 3, backgrounds
        # The kernel's own state is shown apart from the derived status: a silent kernel is
        # still "running" in its row but counts as stopped.
        expect(rows["nb-silent"].locator("td.field-kernel_state")).to_have_text("running")
        # At 1280 px with both sidebars open, no column is clipped: the table fits its box,
        # and the last heartbeat is a short age on one line.
        results = page.locator("#changelist .results")
        assert results.evaluate("box => box.scrollWidth <= box.clientWidth"), "table clipped"
        expect(rows["nb-running"].locator("td.field-last_heartbeat_at")).to_have_text(
            re.compile(r"^\d+ s ago$")
        )
        screenshot(page, "02-changelist.png")

        # 3. The derived state filter (not the kernel process filter, which has a "running" too).
        status_filter = page.locator(
            '#changelist-filter details[data-filter-title="derived state"]'
        )
        expect(status_filter.locator("summary")).to_have_text("By derived state")
        status_filter.get_by_role("link", name="running", exact=True).click()
        expect(page).to_have_url(f"{base}/admin/kernel_status/session/?state=running")
        expect(page.locator("#result_list tbody tr")).to_have_count(2)
        rows = changelist_rows(page)
        assert set(rows) == {"nb-running", "nb-queued"}
        for row in rows.values():
            expect(row.locator(".kernel-status-badge")).to_have_text("running")
        expect(status_filter.locator("li.selected")).to_have_text("running")
        screenshot(page, "03-filter-running.png")

        # 4. A running session's change page: its badge, kernel and busy cells, read-only.
        rows["nb-running"].get_by_role("link", name="nb-running").click()
        change_url = re.escape(f"{base}/admin/kernel_status/session/") + r"\d+/change/"
        expect(page).to_have_url(re.compile(change_url))
        expect(page.locator("h2", has_text="nb-running")).to_be_visible()
        expect(page.locator(".field-status_badge .kernel-status-badge")).to_have_text("running")
        expect(page.locator("#kernel-group .field-state .readonly")).to_have_text("running")
        cells_group = page.locator("#cells-group")
        cell_rows = cells_group.locator("tbody tr.has_original")
        expect(cell_rows).to_have_count(2)
        expect(cell_rows.locator("td.field-cell_id")).to_have_text(["c1", "c2"])
        expect(cell_rows.locator("td.field-status")).to_have_text(["running", "queued"])
        expect(page.locator(".field-cell_counts .readonly")).to_contain_text(
            "3 (1 running, 1 queued, 1 idle)"
        )
        expect(cells_group.locator("input:visible, select:visible")).to_have_count(0)
        screenshot(page, "04-change-page.png")

        # 5. Swagger UI from drf-spectacular-sidecar, rendering the endpoint's operation.
        page.goto(f"{base}/api/docs/")
        operation = page.locator('.opblock-summary-path[data-path="/api/kernel/status"]')
        expect(operation).to_be_visible()
        operation.click()
        expect(page.locator(".parameters-container")).to_contain_text("Marimo-Session-Id")
        screenshot(page, "05-api-docs.png")
    assert any(
        urlsplit(url).path.startswith("/static/drf_spectacular_sidecar/") for url in log.requests
    ), "Swagger UI's assets did not come from the sidecar"
