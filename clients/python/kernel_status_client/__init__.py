"""A client library for accessing kernel_status"""

import asyncio
import time
from http import HTTPStatus
from typing import Any

from .api.kernel import kernel_status
from .client import AuthenticatedClient, Client
from .errors import UnexpectedStatus
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

    def __init__(self, session_id: str, timeout: float, interval: float, max_interval: float) -> None:
        if not timeout >= 0:  # also refuses NaN
            raise ValueError(f"timeout must be 0 or more seconds, not {timeout!r}")
        if not interval > 0:
            raise ValueError(f"interval must be more than 0 seconds, not {interval!r}")
        if not max_interval >= interval:
            raise ValueError(f"max_interval must be at least interval ({interval!r}), not {max_interval!r}")
        self.session_id = session_id
        self.timeout = timeout
        self.max_interval = max_interval
        self.pause = interval
        self.deadline = time.monotonic() + timeout
        self.etag: str | None = None
        self.last: KernelStatusResponse | None = None

    def if_none_match(self) -> str | Unset:
        """The last `ETag`, once there is an answer it stands for."""
        return UNSET if self.last is None or self.etag is None else self.etag

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
) -> KernelStatusResponse:
    """Poll `GET /api/kernel/status` until the session's kernel is idle; return that answer.

    The first poll is immediate. After each non-idle answer it sleeps `interval` seconds,
    doubling the pause each time up to `max_interval`. Each poll after the first sends the last
    `ETag` in `If-None-Match`, so while nothing changes the server answers 304 with no body.

    Raises:
        KernelStoppedError: as soon as it reads `stopped` (a stopped kernel, or one not started
            yet, does not become idle by itself).
        WaitTimeoutError: the kernel was not idle after `timeout` seconds; `last_state` is the
            last state read. A request in flight at the deadline is not cut short (the client's
            `timeout` bounds it), and its answer counts.
        KernelStatusRequestError: at once on an error answer (401, 403, 404, 429, 503...).
        errors.UnexpectedStatus: on an undocumented answer (a 500, say).
        ValueError: `timeout` < 0, `interval` <= 0 or `max_interval` < `interval`.
    """
    waiter = _Waiter(session_id, timeout, interval, max_interval)
    while True:
        answer = kernel_status.sync_detailed(
            client=client, marimo_session_id=session_id, if_none_match=waiter.if_none_match()
        )
        idle = waiter.read(answer)
        if idle is not None:
            return idle
        time.sleep(waiter.delay())
        waiter.check_deadline()


async def async_wait_until_idle(
    client: AuthenticatedClient,
    session_id: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.25,
    max_interval: float = 5.0,
) -> KernelStatusResponse:
    """`wait_until_idle` for asyncio: the same polls, answers and errors, with `asyncio.sleep`."""
    waiter = _Waiter(session_id, timeout, interval, max_interval)
    while True:
        answer = await kernel_status.asyncio_detailed(
            client=client, marimo_session_id=session_id, if_none_match=waiter.if_none_match()
        )
        idle = waiter.read(answer)
        if idle is not None:
            return idle
        await asyncio.sleep(waiter.delay())
        waiter.check_deadline()


__all__ = (
    "AuthenticatedClient",
    "Client",
    "KernelStatusRequestError",
    "KernelStoppedError",
    "WaitTimeoutError",
    "async_wait_until_idle",
    "wait_until_idle",
)
