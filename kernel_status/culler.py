"""Shut down marimo sessions that the mirror shows idle or stopped for too long.

The mirror decides who is idle (the listing's ``idle_for`` rule, with the one shared state
derivation); marimo is asked to close each session with ``POST /api/home/shutdown_session``,
and the mirror then records the session as closed (:func:`kernel_status.mirror.close_session`).

Only sessions that marimo itself lists (``POST /api/home/running_notebooks``) are touched: the
mirror may hold sessions of other marimo servers, or sessions closed long ago.

marimo 0.25 gates both endpoints by edit access (its access token, sent as a bearer token)
and by the ``Marimo-Server-Token`` header, the token it embeds in its page as
``serverToken``; without it they answer 401 ``Missing server token``.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from kernel_status import mirror
from kernel_status.listing import SessionFilter, listing
from kernel_status.models import Session

RUNNING_NOTEBOOKS = "/api/home/running_notebooks"
SHUTDOWN_SESSION = "/api/home/shutdown_session"
SERVER_TOKEN_HEADER = "Marimo-Server-Token"
# SQLite allows 999 parameters per statement; marimo's list is looked up in chunks.
LOOKUP_CHUNK = 500


class MarimoRefused(Exception):
    """marimo answered with an error, or could not be reached; the message says why."""


@dataclass
class MarimoServer:
    """The two home endpoints of one marimo server (and its page, for the server token)."""

    url: str
    token: str | None = None
    server_token: str | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            headers[SERVER_TOKEN_HEADER] = self.get_server_token()
            data = json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, headers=headers, method="GET" if data is None else "POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            raise MarimoRefused(
                f"{'POST' if data else 'GET'} {path} answered {error.code}: {_reason(error.read())}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise MarimoRefused(f"marimo at {self.url} is unreachable: {reason}") from None

    def get_server_token(self) -> str:
        """The given server token, or the one marimo embeds in its page."""
        if not self.server_token:
            _, page = self._request("/", None)
            match = re.search(rb'"serverToken":\s*"([^"]+)"', page)
            if match is None:
                raise MarimoRefused(f"marimo's page at {self.url}/ has no serverToken")
            self.server_token = match.group(1).decode()
        return self.server_token

    def _session_ids(self, path: str, body: dict[str, Any]) -> set[str]:
        _, raw = self._request(path, body)
        try:
            files = json.loads(raw)["files"]
            return {f["sessionId"] for f in files if f.get("sessionId")}
        except (ValueError, KeyError, TypeError):
            raise MarimoRefused(f"POST {path} answered an unexpected body: {raw[:200]!r}") from None

    def running_sessions(self) -> set[str]:
        """Ids of the sessions marimo has open (connected or orphaned)."""
        return self._session_ids(RUNNING_NOTEBOOKS, {})

    def shutdown(self, session_id: str) -> set[str]:
        """Close one session; marimo answers with the sessions still open."""
        # camelCase: marimo answers 400 to {"session_id": ...}.
        return self._session_ids(SHUTDOWN_SESSION, {"sessionId": session_id})


def _reason(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip() or "(empty body)"
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return json.dumps(data)[:200]


@dataclass(frozen=True)
class Culled:
    """What happened to one session."""

    session_id: str
    notebook: str
    state: str
    last_activity: datetime | None
    action: str  # "shut down", "would shut down", "skipped", "refused"
    reason: str = ""

    def line(self, now: datetime) -> str:
        since = self.last_activity
        quiet = "no activity yet" if since is None else f"last activity {since.isoformat()}"
        if since is not None:
            quiet += f" ({(now - since).total_seconds():.0f} s ago)"
        text = f"{self.action}: {self.session_id} ({self.notebook}) {self.state}, {quiet}"
        return f"{text}: {self.reason}" if self.reason else text


@dataclass
class CullReport:
    culled: list[Culled]
    not_on_server: int  # idle in the mirror, but this marimo server does not list them

    @property
    def refused(self) -> Culled | None:
        return next((c for c in self.culled if c.action == "refused"), None)


def candidates(running: set[str], idle_for: timedelta, *, now: datetime) -> list[Session]:
    """Sessions marimo lists that the mirror shows idle or stopped for ``idle_for``, oldest
    activity first."""
    rule = SessionFilter(idle_for=idle_for)
    ids = sorted(running)
    rows: list[Session] = []
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        rows += listing(Session.objects.filter(session_id__in=chunk), rule, now=now)
    return sorted(rows, key=lambda s: (s.last_activity or s.created_at, s.pk))


def idle_in_mirror(idle_for: timedelta, *, now: datetime) -> Iterator[str]:
    rule = SessionFilter(idle_for=idle_for)
    yield from listing(Session.objects.all(), rule, now=now).values_list("session_id", flat=True)


def cull(
    marimo: MarimoServer,
    *,
    idle_for: timedelta,
    limit: int | None = None,
    dry_run: bool = False,
    clock: Callable[[], datetime] = timezone.now,
    report: Callable[[Culled], None] = lambda culled: None,
) -> CullReport:
    """Shut down (up to ``limit``) sessions idle or stopped for ``idle_for``.

    Stops at the first refusal from marimo (an authentication problem would refuse them all).
    Raises :class:`MarimoRefused` when marimo cannot even list its sessions.
    """
    running = marimo.running_sessions()
    now = clock()
    found = candidates(running, idle_for, now=now)
    not_on_server = sum(1 for sid in idle_in_mirror(idle_for, now=now) if sid not in running)
    result = CullReport([], not_on_server)
    for session in found[:limit]:
        entry = _cull_one(marimo, session, idle_for, dry_run, clock)
        result.culled.append(entry)
        report(entry)
        if entry.action == "refused":
            break
    return result


def _cull_one(
    marimo: MarimoServer,
    session: Session,
    idle_for: timedelta,
    dry_run: bool,
    clock: Callable[[], datetime],
) -> Culled:
    def outcome(action: str, reason: str = "") -> Culled:
        return Culled(
            session.session_id,
            session.notebook,
            session.state,  # type: ignore[attr-defined]
            session.last_activity,
            action,
            reason,
        )

    if dry_run:
        return outcome("would shut down")
    # The listing may be seconds old: a cell may have started running since.
    rule = SessionFilter(idle_for=idle_for)
    if not listing(Session.objects.filter(pk=session.pk), rule, now=clock()).exists():
        return outcome("skipped", "active again since it was listed")
    try:
        still_open = marimo.shutdown(session.session_id)
    except MarimoRefused as error:
        return outcome("refused", str(error))
    if session.session_id in still_open:
        return outcome("refused", "marimo still lists the session after shutting it down")
    mirror.close_session(session.session_id, at=clock())
    return outcome("shut down")
