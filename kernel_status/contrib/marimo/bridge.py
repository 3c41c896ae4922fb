"""Follow every session of one marimo server, read-only, and keep the mirror true.

One asyncio loop per marimo server:

- **Discovery.** Every ``poll_interval`` seconds the bridge lists marimo's sessions
  (``POST /api/home/running_notebooks``). It follows each new one, up to ``max_sessions``,
  and records a stop for each followed session that is no longer listed. When a listing
  fails it waits with backoff, but lists again at once when a follower's socket closes with
  ``MARIMO_NO_SESSION``/``MARIMO_SHUTDOWN`` or when ``GET /health`` (probed every
  ``health_probe_interval`` seconds meanwhile) answers again after failing: marimo is back.
  A refused access token (:class:`~kernel_status.contrib.marimo.client.MarimoUnauthorized`)
  ends the bridge: retrying cannot fix it.
- **Following.** One websocket per session, attached read-only:
  ``/ws?session_id=<a fresh id of the bridge's own>&file=<the notebook>&kiosk=true``. marimo
  finds no session with the bridge's id, falls back to the file key and adds the bridge as an
  extra, non-main consumer, so the browser tab keeps its socket and its right to run cells.
  A kiosk attach never creates a session: marimo answers ``MARIMO_NO_SESSION`` instead. If
  marimo ever attached the bridge as anything but a kiosk viewer, the bridge leaves at once.
  Frames go through :class:`~kernel_status.contrib.marimo.translate.SessionTranslator`; a
  heartbeat goes every ``heartbeat_interval`` seconds while attached. A lost connection is
  retried with backoff; meanwhile no heartbeat goes, so the mirror's liveness window, not
  the bridge, decides when a kernel nobody hears from counts as stopped.
- **Writing.** :class:`~kernel_status.contrib.marimo.writer.Writer`, keyed by marimo's
  session id (the tab's ``Marimo-Session-Id``), never by the bridge's attach id.

Stopping the bridge records nothing: the kernels are still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import websockets
from django.utils import timezone
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kernel_status.contrib.marimo.backoff import backoff_delay
from kernel_status.contrib.marimo.client import MarimoAPI, MarimoUnauthorized, MarimoUnavailable
from kernel_status.contrib.marimo.translate import SessionTranslator
from kernel_status.contrib.marimo.writer import Writer

__all__ = ["ATTACH_ID_PREFIX", "MARIMO_TOKEN_OPTION", "BridgeSettings", "MarimoBridge"]

logger = logging.getLogger("kernel_status.contrib.marimo")

ATTACH_ID_PREFIX = "kernel-status-bridge-"
# marimo's close reasons (marimo._server.codes.WebSocketCloseReason) after which the session
# may be gone: discovery is asked at once.
SESSION_MAY_BE_GONE = frozenset({"MARIMO_SHUTDOWN", "MARIMO_NO_SESSION"})
# Where the operator gives marimo's access token (the command's option and variable).
MARIMO_TOKEN_OPTION = "--marimo-token-file or $KERNEL_STATUS_MARIMO_TOKEN"


@dataclass(frozen=True)
class BridgeSettings:
    marimo_url: str
    marimo_token: str | None = None
    poll_interval: float = 2.0
    heartbeat_interval: float = 15.0
    max_sessions: int = 200
    open_timeout: float = 10.0
    http_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    health_file: Path | None = None
    # While listings fail: how often GET /health is asked, and how long each ask may take.
    # One probe at a time, so at most one cheap request per interval.
    health_probe_interval: float = 0.5
    health_probe_timeout: float = 2.0

    def __post_init__(self) -> None:
        for name in (
            "poll_interval",
            "heartbeat_interval",
            "open_timeout",
            "http_timeout",
            "health_probe_interval",
            "health_probe_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive.")
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1.")


class MarimoBridge:
    """Follows one marimo server's sessions into a :class:`Writer` until ``stop`` is set."""

    def __init__(
        self,
        settings: BridgeSettings,
        writer: Writer,
        *,
        now: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.now = now
        self.marimo = MarimoAPI(
            settings.marimo_url, token=settings.marimo_token, timeout=settings.http_timeout
        )
        self.followers: dict[str, _Follower] = {}
        self.followed_total = 0  # sessions followed since the start
        # "reachable", "unreachable" (down, or failing) or "unauthorized" (the access token).
        self.marimo_state = "unreachable"
        self.marimo_error: str | None = None  # why the last listing failed
        self.last_poll_at: float | None = None  # time.time() of the last good listing
        # Set by followers (a session may be gone) and by the health probe (marimo is back):
        # discovery lists at once instead of finishing its wait.
        self._poll_now = asyncio.Event()
        # /health failed since the last good listing: its next 200 means marimo came back.
        self._marimo_down = False
        self._warned: set[tuple[str, str]] = set()
        # Starts reported by an earlier bridge process, from its health file.
        self._known_starts = _read_kernel_starts(settings.health_file)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Raises :class:`FatalWriteError` when the mirror refuses
        the bridge for good, :class:`MarimoUnauthorized` when marimo refuses its access
        token."""
        logger.info("Bridging marimo at %s", self.marimo.base_url)
        discovery = asyncio.create_task(self._discover(), name="discovery")
        fatal = asyncio.create_task(self.writer.wait_fatal(), name="fatal")
        stopped = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait(
                {discovery, fatal, stopped}, return_when=asyncio.FIRST_COMPLETED
            )
            if fatal in done:
                raise fatal.result()
            if discovery in done:
                discovery.result()  # raises what ended it
        finally:
            for task in (discovery, fatal, stopped):
                task.cancel()
            await asyncio.gather(discovery, fatal, stopped, return_exceptions=True)
            await self._stop_followers()
            if not fatal.done() or fatal.cancelled():
                drained = await self.writer.drain(timeout=5.0)
                if not drained:
                    logger.warning("Stopping with %d events unwritten", self.writer.queued_events)
            await self.writer.aclose()
            await self.marimo.aclose()
            logger.info("Stopped")

    # --- discovery ----------------------------------------------------------------------------

    @property
    def marimo_reachable(self) -> bool:
        return self.marimo_state == "reachable"

    async def _discover(self) -> None:
        attempt = 0
        while True:
            self._poll_now.clear()
            try:
                running = await self.marimo.running_sessions()
            except MarimoUnauthorized as error:
                self.marimo_state, self.marimo_error = "unauthorized", str(error)
                self._write_health()
                logger.error(
                    "marimo refused the bridge's access token (%s): %s. Give marimo's token "
                    "with %s",
                    "none given" if self.marimo.token is None else "wrong token",
                    error,
                    MARIMO_TOKEN_OPTION,
                )
                raise
            except MarimoUnavailable as error:
                settings = self.settings
                delay = backoff_delay(attempt, settings.backoff_initial, settings.backoff_max)
                attempt += 1
                log = logger.warning if self.marimo_reachable or attempt == 1 else logger.debug
                log("marimo did not list its sessions (%s); retrying in %.1f s", error, delay)
                self.marimo_state, self.marimo_error = "unreachable", str(error)
                self._write_health()
                await self._wait_for_marimo(delay)
                continue
            if not self.marimo_reachable:
                logger.info("marimo lists %d sessions", len(running))
            self.marimo_state, self.marimo_error, attempt = "reachable", None, 0
            self._marimo_down = False
            self.last_poll_at = time.time()
            self._reconcile(running)
            self._write_health()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval):
                    await self._poll_now.wait()

    async def _wait_for_marimo(self, delay: float) -> None:
        """Wait out a failed listing's backoff, but no longer than until marimo is back."""
        probe = asyncio.create_task(self._probe_health(), name="health probe")
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._poll_now.wait()
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)

    async def _probe_health(self) -> None:
        """Ask ``/health`` until it answers after having failed, then ask for a listing.

        A listing that fails while /health answers (marimo up but refusing) keeps its
        backoff: only the step from down to up lists early."""
        settings = self.settings
        while True:
            if await self.marimo.healthy(settings.health_probe_timeout):
                if self._marimo_down:
                    logger.info("marimo answers /health again; listing its sessions")
                    self._marimo_down = False
                    self.poll_soon()
                    return
            else:
                self._marimo_down = True
            await asyncio.sleep(settings.health_probe_interval)

    def _reconcile(self, running: dict[str, str]) -> None:
        for session_id in [sid for sid in self.followers if sid not in running]:
            self._end(session_id)
        # Bounded memory: a session marimo no longer lists never comes back under its id.
        self._warned = {(sid, kind) for sid, kind in self._warned if not sid or sid in running}
        self._known_starts = {s: t for s, t in self._known_starts.items() if s in running}
        # Never an id of a bridge's own.
        running = {s: p for s, p in running.items() if not s.startswith(ATTACH_ID_PREFIX)}
        paths = Counter(running.values())
        for session_id, path in running.items():
            if session_id in self.followers:
                continue
            if paths[path] > 1:
                self._warn_once(
                    session_id,
                    "ambiguous",
                    "Not following session %r: %d sessions run %r, and a read-only attach "
                    "by file cannot tell them apart",
                    session_id,
                    paths[path],
                    path,
                )
                continue
            if len(self.followers) >= self.settings.max_sessions:
                self._warn_once(
                    session_id,
                    "limit",
                    "Not following session %r (%s) yet: already following %d sessions "
                    "(--max-sessions)",
                    session_id,
                    path,
                    len(self.followers),
                )
                continue
            follower = _Follower(self, session_id, path, self._known_starts.pop(session_id, None))
            self.followers[session_id] = follower
            self.followed_total += 1
            follower.task = asyncio.create_task(follower.run(), name=f"follow {session_id}")
            logger.info("Following session %r (%s)", session_id, path)

    def _end(self, session_id: str) -> None:
        """marimo no longer lists the session: its kernel is gone."""
        follower = self.followers.pop(session_id)
        if follower.task is not None:
            follower.task.cancel()
        events = follower.translator.session_closed(self.now())
        if events:
            logger.info("Session %r ended in marimo; recording its kernel as stopped", session_id)
        self.writer.submit(session_id, events)
        self.writer.session_ended(session_id)

    async def _stop_followers(self) -> None:
        tasks = [f.task for f in self.followers.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _warn_once(self, session_id: str, kind: str, message: str, *args: object) -> None:
        if (session_id, kind) not in self._warned:
            self._warned.add((session_id, kind))
            logger.warning(message, *args)

    def poll_soon(self) -> None:
        self._poll_now.set()

    # --- health -------------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        return {
            "updated_at": time.time(),
            "marimo_url": self.marimo.base_url,
            "marimo": self.marimo_state,
            "marimo_reachable": self.marimo_reachable,
            "marimo_error": self.marimo_error,
            "last_poll_at": self.last_poll_at,
            "sessions": sorted(self.followers),
            "attached": sorted(sid for sid, f in self.followers.items() if f.attached),
            "unknown_to_mirror": self.writer.unknown_sessions,
            "queued_events": self.writer.queued_events,
            "written_batches": self.writer.stats.batches,
            "last_written_at": self.writer.stats.last_written_at,
            "kernel_starts": self.kernel_starts(),
        }

    def kernel_starts(self) -> dict[str, str]:
        """The start each live kernel was reported with (ISO 8601, exact to the
        microsecond), so that a restarted bridge reports the same one."""
        starts = {sid: at.isoformat() for sid, at in self._known_starts.items()}
        for session_id, follower in self.followers.items():
            start = follower.translator.reported_start
            if start is not None:
                starts[session_id] = start.isoformat()
        return dict(sorted(starts.items()))

    def _write_health(self) -> None:
        path = self.settings.health_file
        if path is None:
            return
        temporary = path.with_name(path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(self.health(), indent=1) + "\n")
            os.replace(temporary, path)
        except OSError as error:
            self._warn_once("", "health", "Cannot write the health file %s: %s", path, error)


class _Follower:
    """One websocket, attached read-only to one marimo session, reattached when lost."""

    def __init__(
        self, bridge: MarimoBridge, session_id: str, path: str, known_start: datetime | None
    ) -> None:
        self.bridge = bridge
        self.session_id = session_id
        self.path = path
        self.translator = SessionTranslator(session_id, known_start)
        self.task: asyncio.Task[None] | None = None
        self.attached = False

    async def run(self) -> None:
        settings = self.bridge.settings
        attempt = 0
        while not self.translator.stopped:
            reason = ""
            attach_id = ATTACH_ID_PREFIX + uuid.uuid4().hex  # fresh: never the tab's id
            url = self.bridge.marimo.attach_url(attach_id, self.path)
            logger.info(
                "Session %r: attaching as %s",
                self.session_id,
                self.bridge.marimo.attach_url(attach_id, self.path, redact=True),
            )
            try:
                async with websockets.connect(
                    url,
                    open_timeout=settings.open_timeout,
                    ping_interval=settings.heartbeat_interval,
                    ping_timeout=max(settings.heartbeat_interval, 20.0),
                    close_timeout=3.0,
                    max_size=None,  # outputs can be large; marimo's frontend has no cap either
                ) as websocket:
                    if await self._follow(websocket):
                        attempt = 0
            except ConnectionClosed as closed:
                reason = closed.rcvd.reason if closed.rcvd else ""
                code = closed.rcvd.code if closed.rcvd else 1006
                logger.info(
                    "Session %r: marimo closed the connection (%s %s)",
                    self.session_id,
                    code,
                    reason or "-",
                )
            except InvalidStatus as error:
                logger.warning(
                    "Session %r: marimo refused the attach: HTTP %s",
                    self.session_id,
                    error.response.status_code,
                )
            except (OSError, TimeoutError, InvalidHandshake) as error:
                logger.warning(
                    "Session %r: cannot connect to marimo: %s",
                    self.session_id,
                    str(error) or type(error).__name__,
                )
            finally:
                self.attached = False
            if self.translator.stopped:
                break
            if reason in SESSION_MAY_BE_GONE:
                self.bridge.poll_soon()  # discovery ends the follower if the session is gone
            delay = backoff_delay(attempt, settings.backoff_initial, settings.backoff_max)
            attempt += 1
            await asyncio.sleep(delay)

    async def _follow(self, websocket: ClientConnection) -> bool:
        """Follow one connection until it closes or the kernel stops; ``True`` if attached."""
        bridge, translator, interval = self.bridge, self.translator, self.bridge.settings
        next_heartbeat = time.monotonic() + interval.heartbeat_interval
        attached = False
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_heartbeat - time.monotonic())):
                    raw = await websocket.recv()
            except TimeoutError:
                bridge.writer.submit(self.session_id, translator.heartbeat(bridge.now()))
                next_heartbeat = time.monotonic() + interval.heartbeat_interval
                continue
            result = translator.translate_raw([raw], bridge.now())
            if result.attached is not None:
                if result.not_read_only:
                    # Never hold a session as its frontend: that would displace the tab.
                    logger.error(
                        "Session %r: marimo attached the bridge as a frontend, not read-only; "
                        "leaving at once",
                        self.session_id,
                    )
                    await websocket.close()
                    await asyncio.Event().wait()  # stay out until discovery drops it
                attached = self.attached = True
                logger.info(
                    "Session %r: attached read-only (%d cells)",
                    self.session_id,
                    len(result.attached),
                )
            bridge.writer.submit(self.session_id, result.events)
            if result.stopped:
                logger.info("Session %r: marimo reports its kernel stopped", self.session_id)
                await websocket.close()
                return attached


def _read_kernel_starts(path: Path | None) -> dict[str, datetime]:
    """The kernel starts an earlier bridge process wrote into the health file; none if there
    is no such file or it cannot be read."""
    if path is None:
        return {}
    try:
        starts = json.loads(path.read_text()).get("kernel_starts") or {}
        known = {str(sid): datetime.fromisoformat(at) for sid, at in starts.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as error:
        logger.warning("Cannot read the kernel starts in %s (%s); reporting new ones", path, error)
        return {}
    known = {sid: at for sid, at in known.items() if at.tzinfo is not None}
    if known:
        logger.info("%d kernel starts remembered from %s", len(known), path)
    return known
