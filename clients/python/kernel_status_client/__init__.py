"""A client library for accessing kernel_status"""

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx

from .api.kernel import kernel_status
from .client import AuthenticatedClient, Client
from .errors import UnexpectedStatus
from .models.kernel_session import KernelSession
from .models.kernel_sessions_stream_state import KernelSessionsStreamState
from .models.kernel_status_error import KernelStatusError
from .models.kernel_status_response import KernelStatusResponse
from .models.kernel_status_state_enum import KernelStatusStateEnum
from .types import UNSET, Response, Unset

# --- Waiting until a kernel is idle: hand-written (clients/python-templates/package_init.py.jinja)


class KernelStatusRequestError(Exception):
    """The server answered one of the documented error statuses (400, 401, 403, 404, 405, 429
    or 503; retry the last two after a pause) with its `{"detail": ...}` body."""

    def __init__(self, session_id: str, status_code: int, error: KernelStatusError) -> None:
        self.session_id = session_id
        self.status_code = status_code
        self.error = error
        self.detail = error.detail
        super().__init__(f"GET /api/kernel/status for session {session_id!r}: {status_code} {error.detail}")


class KernelStoppedError(Exception):
    """`wait_until_idle` read `stopped`. A stopped kernel (or one not started yet) does not
    become idle by itself: the platform must start a kernel first, so waiting longer would only
    run into the timeout."""

    def __init__(self, session_id: str, response: KernelStatusResponse) -> None:
        self.session_id = session_id
        self.response = response
        super().__init__(f"Session {session_id!r} is stopped: its kernel will not become idle until one is started")


class WaitTimeoutError(TimeoutError):
    """`wait_until_idle` gave up: the kernel was not idle within `timeout` seconds."""

    def __init__(self, session_id: str, timeout: float, last_state: KernelStatusStateEnum | None) -> None:
        self.session_id = session_id
        self.timeout = timeout
        self.last_state = last_state
        seen = " (no answer yet)" if last_state is None else f" (last state: {last_state.value})"
        super().__init__(f"Session {session_id!r} was not idle after {timeout} s{seen}")


class _Waiter:
    """What the sync and async waits share: the arguments, the deadline, the backoff, the ETag
    and the reading of each answer."""

    def __init__(
        self, session_id: str, timeout: float, interval: float, max_interval: float, max_wait: int = 60
    ) -> None:
        if not timeout >= 0:  # also refuses NaN
            raise ValueError(f"timeout must be 0 or more seconds, not {timeout!r}")
        if not interval > 0:
            raise ValueError(f"interval must be more than 0 seconds, not {interval!r}")
        if not max_interval >= interval:
            raise ValueError(f"max_interval must be at least interval ({interval!r}), not {max_interval!r}")
        _check_wait("max_wait", max_wait)
        self.session_id = session_id
        self.timeout = timeout
        self.max_wait = max_wait
        self.max_interval = max_interval
        self.pause = interval
        self.deadline = time.monotonic() + timeout
        self.etag: str | None = None
        self.last: KernelStatusResponse | None = None

    def if_none_match(self) -> str | Unset:
        """The last `ETag`, once there is an answer it stands for."""
        return UNSET if self.last is None or self.etag is None else self.etag

    def wait(self) -> int | None:
        """The seconds to ask the server to hold the next read for: none left before there is
        a tag, else the time left (whole seconds, at least 1), at most `max_wait`."""
        if isinstance(self.if_none_match(), Unset):
            return None
        return max(1, min(self.max_wait, int(self.deadline - time.monotonic())))

    def read(self, response: Response[Any]) -> KernelStatusResponse | None:
        """The idle answer, or None to poll again; raises on `stopped` and on error answers."""
        if response.status_code == HTTPStatus.OK and isinstance(response.parsed, KernelStatusResponse):
            self.last = response.parsed
        elif response.status_code == HTTPStatus.NOT_MODIFIED and self.last is not None:
            pass  # the last answer is still current
        elif isinstance(response.parsed, KernelStatusError):
            raise KernelStatusRequestError(self.session_id, response.status_code, response.parsed)
        else:
            raise UnexpectedStatus(response.status_code, response.content)
        self.etag = response.headers.get("ETag", self.etag)
        if self.last.state is KernelStatusStateEnum.IDLE:
            return self.last
        if self.last.state is KernelStatusStateEnum.STOPPED:
            raise KernelStoppedError(self.session_id, self.last)
        return None

    def delay(self) -> float:
        """The pause before the next poll: the backoff's, cut short at the deadline."""
        pause = max(0.0, min(self.pause, self.deadline - time.monotonic()))
        self.pause = min(self.pause * 2, self.max_interval)
        return pause

    def check_deadline(self) -> None:
        if time.monotonic() >= self.deadline:
            raise WaitTimeoutError(self.session_id, self.timeout, None if self.last is None else self.last.state)


def wait_until_idle(
    client: AuthenticatedClient,
    session_id: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.25,
    max_interval: float = 5.0,
    max_wait: int = 60,
) -> KernelStatusResponse:
    """Wait until the session's kernel is idle; return that answer.

    The first read is immediate. Each read after it sends the last `ETag` in `If-None-Match`
    and `Prefer: wait=N` (a blocking read, as `wait_for_change` makes; N is the time left, at
    most `max_wait` seconds): a server that holds it (ASGI, `Preference-Applied`) answers when
    the state changes, so there is one request per change and no sleeping. A server that does
    not (WSGI) answers at once, and then it polls: it sleeps `interval` seconds, doubling the
    pause each time up to `max_interval`; while nothing changes the answers are 304s.

    Raises:
        KernelStoppedError: as soon as it reads `stopped` (a stopped kernel, or one not started
            yet, does not become idle by itself).
        WaitTimeoutError: the kernel was not idle after `timeout` seconds; `last_state` is the
            last state read. A request in flight at the deadline is not cut short (a blocking
            read asks for the whole seconds left, at least 1), and its answer counts.
        KernelStatusRequestError: at once on an error answer (401, 403, 404, 429, 503...).
        errors.UnexpectedStatus: on an undocumented answer (a 500, say).
        ValueError: `timeout` < 0, `interval` <= 0, `max_interval` < `interval`, or
            `max_wait` not a whole number of seconds from 1.
    """
    waiter = _Waiter(session_id, timeout, interval, max_interval, max_wait)
    while True:
        wait = waiter.wait()
        answer = client.get_httpx_client().request(**_status_request(client, session_id, waiter.if_none_match(), wait))
        response = kernel_status._build_response(client=client, response=answer)
        idle = waiter.read(response)
        if idle is not None:
            return idle
        if _applied_wait(answer) is None:
            # The server did not hold the read (WSGI, or the first read): poll after a pause.
            time.sleep(waiter.delay())
        waiter.check_deadline()


async def async_wait_until_idle(
    client: AuthenticatedClient,
    session_id: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.25,
    max_interval: float = 5.0,
    max_wait: int = 60,
) -> KernelStatusResponse:
    """`wait_until_idle` for asyncio: the same reads, answers and errors, with `asyncio.sleep`."""
    waiter = _Waiter(session_id, timeout, interval, max_interval, max_wait)
    while True:
        wait = waiter.wait()
        answer = await client.get_async_httpx_client().request(
            **_status_request(client, session_id, waiter.if_none_match(), wait)
        )
        response = kernel_status._build_response(client=client, response=answer)
        idle = waiter.read(response)
        if idle is not None:
            return idle
        if _applied_wait(answer) is None:
            await asyncio.sleep(waiter.delay())
        waiter.check_deadline()


def _check_wait(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of seconds from 1, not {value!r}")


# The server adds up to a second of jitter to a wait; this much more covers the round trip.
_WAIT_MARGIN = 10.0


def _status_request(
    client: AuthenticatedClient, session_id: str, etag: str | Unset, wait: int | None
) -> dict[str, Any]:
    """The status request's arguments (the generated ones), with `Prefer: wait=N` and a read
    timeout that outlasts the wait (httpx's default of 5 s would cut a held read short)."""
    kwargs = kernel_status._get_kwargs(
        marimo_session_id=session_id,
        if_none_match=etag,
        prefer=UNSET if wait is None else f"wait={wait}",
    )
    if wait is not None:
        current = client._timeout or httpx.Timeout(5.0)  # httpx's default when none is set
        kwargs["timeout"] = current.__class__(
            current.connect, read=max(current.read or 0.0, wait + _WAIT_MARGIN), write=current.write, pool=current.pool
        )
    return kwargs


_APPLIED = re.compile(r"(?:^|[\s,;])wait=(\d+)", re.IGNORECASE)


def _applied_wait(response: httpx.Response) -> int | None:
    """N from `Preference-Applied: wait=N`: the server held (or would have held) the read."""
    match = _APPLIED.search(response.headers.get("Preference-Applied", ""))
    return None if match is None else int(match.group(1))


@dataclass(frozen=True)
class StatusChange:
    """The answer to a blocking read (`wait_for_change`)."""

    #: The new answer, or None when the one with the tag sent is still current (304).
    status: KernelStatusResponse | None
    #: The current `ETag`: send it to the next `wait_for_change`.
    etag: str | None
    #: The seconds that the server agreed to hold the read (`Preference-Applied: wait=N`), or
    #: None when it does not hold reads (a WSGI server answers at once).
    waited: int | None

    @property
    def changed(self) -> bool:
        return self.status is not None


def _change(session_id: str, etag: str, answer: httpx.Response, response: Response[Any]) -> StatusChange:
    waited = _applied_wait(answer)
    if response.status_code == HTTPStatus.OK and isinstance(response.parsed, KernelStatusResponse):
        return StatusChange(response.parsed, answer.headers.get("ETag"), waited)
    if response.status_code == HTTPStatus.NOT_MODIFIED:
        return StatusChange(None, answer.headers.get("ETag", etag), waited)
    if isinstance(response.parsed, KernelStatusError):
        raise KernelStatusRequestError(session_id, response.status_code, response.parsed)
    raise UnexpectedStatus(response.status_code, response.content)


def wait_for_change(client: AuthenticatedClient, session_id: str, etag: str, *, wait: int = 30) -> StatusChange:
    """One blocking read of `GET /api/kernel/status`: `If-None-Match: etag`, `Prefer: wait=N`.

    Returns as soon as the session's answer differs from the one tagged `etag` (`changed`,
    with the new `status` and `etag`), or after about `wait` seconds without a change (`status`
    None). A change that leaves the answer as it was does not end it. The server clamps `wait`
    to its maximum (`KERNEL_STATUS_MAX_WAIT`, 60 s by default) and adds a little jitter.

    Only an ASGI server holds the read, and says so in `waited`; a WSGI server answers at
    once (`waited` None): poll after a pause then, as `wait_until_idle` does. Permission is
    checked before and after the wait: a share revoked meanwhile raises the stranger's 404.

    Raises:
        KernelStatusRequestError: on an error answer (401, 403, 404, 429, 503...).
        errors.UnexpectedStatus: on an undocumented answer.
        ValueError: `wait` is not a whole number of seconds from 1.
    """
    _check_wait("wait", wait)
    answer = client.get_httpx_client().request(**_status_request(client, session_id, etag, wait))
    return _change(session_id, etag, answer, kernel_status._build_response(client=client, response=answer))


async def async_wait_for_change(
    client: AuthenticatedClient, session_id: str, etag: str, *, wait: int = 30
) -> StatusChange:
    """`wait_for_change` for asyncio. Cancelling it closes the request, which frees the
    server's waiter at once."""
    _check_wait("wait", wait)
    answer = await client.get_async_httpx_client().request(**_status_request(client, session_id, etag, wait))
    return _change(session_id, etag, answer, kernel_status._build_response(client=client, response=answer))


# --- Following the change stream: hand-written ----------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    """One event of `GET /api/kernel/sessions/stream` (docs: "Watching instead of polling")."""

    #: `status`, `removed`, `ready`, `reset`, `reconnect` or `error`.
    event: str
    #: The change position: what `Last-Event-ID` resumes from.
    id: str | None
    #: The event's JSON payload.
    data: Any

    @property
    def session(self) -> KernelSession:
        """A `status` event's session, as the listing's model."""
        if self.event != "status":
            raise ValueError(f"a {self.event!r} event carries no session")
        return KernelSession.from_dict(self.data)


class StreamError(Exception):
    """The stream could not be opened: the server answered `status_code` (501 under WSGI)."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(f"GET /api/kernel/sessions/stream: {status_code} {body[:200]!r}")


class _EventParser:
    """The text/event-stream format (WHATWG HTML, "Server-sent events"), a line at a time."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry: float | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> StreamEvent | None:
        if not line:  # a blank line ends an event
            event, data, self._event, self._data = self._event or "message", self._data, "", []
            if not data:
                return None
            return StreamEvent(event, self.last_event_id, json.loads("\n".join(data)))
        if line.startswith(":"):
            return None  # a comment: the heartbeat
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value) / 1000
        return None


# Between heartbeats (15 s by default), a read longer than this means the connection is dead.
_STREAM_READ_TIMEOUT = 60.0


def _stream_request(
    state: KernelSessionsStreamState | Unset, idle_for: float | Unset, last_event_id: str | None
) -> dict[str, Any]:
    # Written out: the generated api.kernel.kernel_sessions_stream reads the whole body as JSON.
    params: dict[str, Any] = {}
    if not isinstance(state, Unset):
        params["state"] = state.value
    if not isinstance(idle_for, Unset):
        params["idle_for"] = idle_for
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return {
        "method": "GET",
        "url": "/api/kernel/sessions/stream",
        "params": params,
        "headers": headers,
        "timeout": httpx.Timeout(5.0, read=_STREAM_READ_TIMEOUT),
    }


def follow_sessions(
    client: AuthenticatedClient,
    *,
    state: KernelSessionsStreamState | Unset = UNSET,
    idle_for: float | Unset = UNSET,
    last_event_id: str | None = None,
    reconnect: bool = True,
) -> Iterator[StreamEvent]:
    """Follow `GET /api/kernel/sessions/stream`: yield each event as it comes.

    First a `status` event per session you may edit (under the `state` and `idle_for`
    filters of the listing), then `ready`, then one event per change. When the server closes
    the stream (`reconnect`, `error`, a dropped connection), it reconnects after the server's
    `retry` pause with `Last-Event-ID`, so no change is lost; after a `reset` event forget the
    sessions you had, a fresh snapshot follows. With `reconnect=False` it returns instead.
    Heartbeat comments are read, not yielded. Stop by leaving the loop (`break`).

    Raises:
        StreamError: the server refused the stream (401, 403, 429, 501 under WSGI...).
    """
    parser = _EventParser()
    parser.last_event_id = last_event_id
    while True:
        try:
            with client.get_httpx_client().stream(**_stream_request(state, idle_for, parser.last_event_id)) as answer:
                if answer.status_code != HTTPStatus.OK:
                    raise StreamError(answer.status_code, answer.read())
                for line in answer.iter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout):
            pass  # a dropped connection: as a closed stream
        if not reconnect:
            return
        time.sleep(parser.retry if parser.retry is not None else 2.0)


async def async_follow_sessions(
    client: AuthenticatedClient,
    *,
    state: KernelSessionsStreamState | Unset = UNSET,
    idle_for: float | Unset = UNSET,
    last_event_id: str | None = None,
    reconnect: bool = True,
) -> AsyncIterator[StreamEvent]:
    """`follow_sessions` for asyncio (an async generator)."""
    parser = _EventParser()
    parser.last_event_id = last_event_id
    while True:
        try:
            async with client.get_async_httpx_client().stream(
                **_stream_request(state, idle_for, parser.last_event_id)
            ) as answer:
                if answer.status_code != HTTPStatus.OK:
                    raise StreamError(answer.status_code, await answer.aread())
                async for line in answer.aiter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout):
            pass
        if not reconnect:
            return
        await asyncio.sleep(parser.retry if parser.retry is not None else 2.0)


__all__ = (
    "AuthenticatedClient",
    "Client",
    "KernelStatusRequestError",
    "KernelStoppedError",
    "StatusChange",
    "StreamError",
    "StreamEvent",
    "WaitTimeoutError",
    "async_follow_sessions",
    "async_wait_for_change",
    "async_wait_until_idle",
    "follow_sessions",
    "wait_for_change",
    "wait_until_idle",
)
