"""A client-side bound on the database work of each request, and a per-process breaker.

A frozen PostgreSQL (``SIGSTOP``, a hung host) still has its kernel acknowledge TCP, so the
server's ``statement_timeout`` and TCP keepalives never fire: a call on an open connection
blocks in ``recv`` for as long as the freeze lasts. :func:`bounded` registers the calling
thread's connections for the length of a request; one watchdog thread per process shuts
down the socket (``shutdown(SHUT_RDWR)``) of any request that outlives
``KERNEL_STATUS_QUERY_DEADLINE``, so the blocked call raises ``OperationalError`` (a 503 with
``Retry-After``) and Django discards the broken connection. The whole request is bounded, not
each statement: Django's health check (``SELECT 1`` on a reused connection) and ``COMMIT`` do
not pass through ``execute_wrapper``, and they block on a frozen server too.

After a request was cut off, or its connect timed out, the *breaker* opens: for
``KERNEL_STATUS_DATABASE_COOLDOWN`` seconds :func:`shed_if_open` answers 503 at once without
touching the database; then one request is let through as a probe, which closes the breaker
if it gets its answer, and opens it again if not. A frozen database so holds at most one
thread per process at a time once the first requests were cut off (docs/deployment.md).
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import Any

from django.db import connections

from kernel_status.conf import conf
from kernel_status.exceptions import DatabaseUnavailable

# How often the watchdog looks at the running requests: the bound is the deadline plus this.
TICK = 0.05
# A failed connect this slow was a timeout (libpq's shortest is 2 s), and opens the breaker.
SLOW_CONNECT = 1.0
_VENDORS = frozenset({"postgresql", "mysql"})  # those whose connections have a socket


class _Scope:
    """One request's database work in one thread."""

    __slots__ = ("connect_failed", "ends_at", "killed", "probe", "wrappers")

    def __init__(self, wrappers: list[Any], ends_at: float) -> None:
        self.wrappers = wrappers
        self.ends_at = ends_at
        self.killed = False
        self.connect_failed = False
        self.probe = False


class _State:
    """The process's running scopes, its watchdog and its breaker (reset in a forked child)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scopes: dict[int, _Scope] = {}  # by id(scope)
        self.work = threading.Event()
        self.watchdog: threading.Thread | None = None
        self.open_until = 0.0  # monotonic; 0: the breaker is closed
        self.probing = False
        self.kills = 0  # for the tests and the fault suite's figures
        self.shed = 0


class _Local(threading.local):
    scope: _Scope | None = None  # a class default: cheaper than getattr(..., None)


_state = _State()
_local = _Local()


def reset() -> None:
    """Forget the running scopes and close the breaker: in a forked child (whose watchdog
    thread was not forked with it), and between tests. The old watchdog, if any, keeps
    watching only the old scopes."""
    global _state, _local
    _state = _State()
    _local = _Local()


os.register_at_fork(after_in_child=reset)


def deadline_seconds() -> float | None:
    """``KERNEL_STATUS_QUERY_DEADLINE`` as a float, or ``None`` when off (or unusable: E013)."""
    value = conf.KERNEL_STATUS_QUERY_DEADLINE
    if value is None or type(value) not in (int, float):  # bool is not a number here
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def cooldown_seconds() -> float:
    value = conf.KERNEL_STATUS_DATABASE_COOLDOWN
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return max(0.0, float(value))


class bounded:
    """Bound the calling thread's work on the databases ``aliases`` for the block (nested
    blocks count as the outer one). A class, not a generator: it runs on every request."""

    __slots__ = ("aliases", "scope")

    def __init__(self, aliases: tuple[str, ...]) -> None:
        self.aliases = aliases
        self.scope: _Scope | None = None

    def __enter__(self) -> None:
        seconds = deadline_seconds()
        if seconds is None or _local.scope is not None:
            return
        wrappers = []
        for alias in self.aliases:
            wrapper = connections[alias]
            if wrapper.vendor in _VENDORS:
                if "get_new_connection" not in wrapper.__dict__:
                    _guard_connect(wrapper)
                wrappers.append(wrapper)
        if not wrappers:
            return
        scope = self.scope = _Scope(wrappers, time.monotonic() + seconds)
        state = _state
        with state.lock:
            state.scopes[id(scope)] = scope
            if not state.work.is_set():
                state.work.set()
            if state.watchdog is None:
                state.watchdog = threading.Thread(
                    target=_watch, args=(state,), name="kernel-status-deadline", daemon=True
                )
                state.watchdog.start()
        _local.scope = scope

    def __exit__(self, *exc_info: object) -> None:
        scope = self.scope
        if scope is None:
            return
        _local.scope = None
        state = _state
        with state.lock:
            state.scopes.pop(id(scope), None)  # gone if reset() ran meanwhile (tests)
            if scope.killed or scope.connect_failed:
                state.open_until = time.monotonic() + cooldown_seconds()
            elif scope.probe:
                state.open_until = 0.0
            if scope.probe:
                state.probing = False


def shed_if_open() -> None:
    """Raise :class:`DatabaseUnavailable` (503) while the breaker is open, unless this request
    is let through as the probe. Call it inside :func:`bounded`, before any database work."""
    state = _state
    scope = _local.scope
    if not state.open_until or scope is None:  # closed, or the deadline is off (no probe)
        return
    with state.lock:
        if not state.open_until:
            return
        if time.monotonic() >= state.open_until and not state.probing:
            state.probing = scope.probe = True
            return
        state.shed += 1
    raise DatabaseUnavailable()


def _watch(state: _State) -> None:
    while True:
        state.work.wait()
        time.sleep(TICK)
        now = time.monotonic()
        with state.lock:
            if not state.scopes:
                state.work.clear()
                continue
            for scope in state.scopes.values():
                if not scope.killed and now >= scope.ends_at:
                    # Under the lock: the request thread cannot leave its scope (and close
                    # or replace its connection) while its socket is shut down.
                    scope.killed = True
                    state.kills += 1
                    for wrapper in scope.wrappers:
                        _shut_down(wrapper.connection)


def _shut_down(raw: Any) -> None:
    """Shut down the socket of a DB-API connection (psycopg 3 and 2, mysqlclient: fileno())."""
    if raw is None:
        return  # connecting: the connect timeout bounds it
    try:
        fileno = raw.fileno()
        sock = socket.socket(fileno=os.dup(fileno))
    except Exception:  # closed meanwhile, or a driver without fileno()
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more
    finally:
        sock.close()  # only the duplicate; the driver keeps its descriptor


def _guard_connect(wrapper: Any) -> None:
    """Make the thread's connection wrapper refuse to connect once its request was cut off
    (Django reconnects after a failed health check, which would wait the whole connect
    timeout on a frozen server), and note a connection that failed, for the breaker."""
    original = wrapper.get_new_connection  # bound: each thread has its own wrapper

    def get_new_connection(conn_params: Any) -> Any:
        scope = _local.scope
        if scope is not None and scope.killed:
            raise wrapper.Database.OperationalError("the request outlived its database deadline")
        started = time.monotonic()
        try:
            return original(conn_params)
        except wrapper.Database.OperationalError:
            # A connect that timed out held the thread; a refused one (a server down) did not.
            if scope is not None and time.monotonic() - started >= SLOW_CONNECT:
                scope.connect_failed = True
            raise

    wrapper.get_new_connection = get_new_connection


def stats() -> dict[str, int]:
    """Requests cut off and shed by this process so far."""
    return {"killed": _state.kills, "shed": _state.shed}
