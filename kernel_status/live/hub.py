"""The in-memory fan-out: one hub per event loop (per server process), many subscriptions.

A subscription names the sessions (primary keys) it waits for, or all of them (a stream). The
hub wakes it when a change of one of them is dispatched: from this process's commits
(:data:`kernel_status.mirror.changes.sessions_changed`, sent in the writer's thread and
handed to the loop thread-safely), from the PostgreSQL listener or the change-counter poller
(:mod:`kernel_status.live.listener`, on the loop). A "resync" (the listener reconnected,
"many changed") wakes every subscription, which then re-reads once. A change id seen twice
(this process's commit, then its own notification) is dispatched once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

from kernel_status.live.listener import Listener
from kernel_status.mirror.changes import sessions_changed

logger = logging.getLogger("kernel_status.live")

# Change ids remembered to dispatch each change once; more than any burst between two polls.
SEEN_IDS = 4096


class Subscription:
    """What one waiter or stream waits for, and what happened since it last looked."""

    # Thousands are held at once: slots, and a bare future to wait on, no Event or task.
    __slots__ = ("_waiter", "_woken", "changed", "closing", "everything", "hub", "keys",
                 "newest_change")  # fmt: skip

    def __init__(self, hub: Hub, keys: Collection[int] | None) -> None:
        self.hub = hub
        self.keys: frozenset[int] | None = None if keys is None else frozenset(keys)
        self.changed: set[int] = set()
        self.everything = False  # "re-read all": many changed, or the listener reconnected
        self.closing = False  # the server is shutting down
        self.newest_change = 0
        self._woken = False
        self._waiter: asyncio.Future[bool] | None = None

    def notify(self, pk: int | None, change_id: int | None) -> None:
        if pk is None:
            self.everything = True
        else:
            self.changed.add(pk)
        if change_id is not None:
            self.newest_change = max(self.newest_change, change_id)
        self._wake()

    def interrupt(self) -> None:
        """Wake the owner with no change to report (its client left, say)."""
        self._wake()

    def _wake(self) -> None:
        self._woken = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(True)

    def narrow(self, keys: Collection[int]) -> bool:
        """Wait for ``keys`` only from now on; ``True`` if one of them changed already."""
        keys = frozenset(keys)
        self.hub._rekey(self, keys)
        missed = self.everything or bool(self.changed & keys)
        self.changed &= keys
        return missed

    @property
    def pending(self) -> bool:
        return self._woken

    async def wait(self, timeout: float | None) -> bool:
        """``True`` when woken (a change, a resync, shutdown), ``False`` on timeout. One
        owner waits at a time (a waiter, or a stream's producer)."""
        assert self._waiter is None, "a subscription has one waiting owner"
        if self._woken or (timeout is not None and timeout <= 0):
            return self._woken
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _time_out, waiter)
        try:
            return bool(await waiter)
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take(self) -> tuple[set[int], bool]:
        """The sessions changed since the last take, and whether to re-read everything."""
        changed, everything = self.changed, self.everything
        self.changed, self.everything = set(), False
        self._woken = self.closing  # shutting down, it stays woken: the owner leaves
        return changed, everything

    def close(self) -> None:
        self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Hub:
    """The subscriptions of one event loop, and the listener that feeds them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._by_key: dict[int, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.closing = False
        self.listener: Listener | None = None  # started with the first subscription

    # --- subscriptions (on the loop) -----------------------------------------------------

    def subscribe(self, keys: Collection[int] | None) -> Subscription:
        subscription = Subscription(self, keys)
        self._add(subscription)
        if self.closing:
            subscription.closing = True
            subscription.notify(None, None)
        self._ensure_listener()
        return subscription

    @property
    def subscriptions(self) -> int:
        return len(self._all) + len({s for subs in self._by_key.values() for s in subs})

    def _add(self, subscription: Subscription) -> None:
        if subscription.keys is None:
            self._all.add(subscription)
        else:
            for key in subscription.keys:
                self._by_key.setdefault(key, set()).add(subscription)

    def _remove(self, subscription: Subscription) -> None:
        if subscription.keys is None:
            self._all.discard(subscription)
        else:
            for key in subscription.keys:
                waiting = self._by_key.get(key)
                if waiting is not None:
                    waiting.discard(subscription)
                    if not waiting:
                        del self._by_key[key]

    def _rekey(self, subscription: Subscription, keys: frozenset[int]) -> None:
        self._remove(subscription)
        subscription.keys = keys
        self._add(subscription)

    def _ensure_listener(self) -> None:
        if self.listener is None:
            self.listener = Listener(self)
            self.listener.start()
            install_signal_handlers()

    # --- dispatch (on the loop) ----------------------------------------------------------

    def dispatch(self, change_id: int | None, session_pks: Collection[int] | None) -> None:
        """Wake the subscriptions of these sessions (``None``: every subscription)."""
        if change_id is not None:
            if change_id in self._seen:
                return
            self._seen[change_id] = None
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
        if session_pks is None:
            self.wake_all(change_id)
            return
        for pk in session_pks:
            for subscription in tuple(self._by_key.get(pk, ())):
                subscription.notify(pk, change_id)
            for subscription in tuple(self._all):
                subscription.notify(pk, change_id)

    def wake_all(self, change_id: int | None = None) -> None:
        """Every subscription re-reads once (a listener reconnected; many sessions changed)."""
        for subscription in self._every():
            subscription.notify(None, change_id)

    def shut_down(self) -> None:
        """Answer every waiter now and every later one at once: the server is stopping."""
        self.closing = True
        for subscription in self._every():
            subscription.closing = True
            subscription.notify(None, None)

    def _every(self) -> set[Subscription]:
        return {*self._all, *(s for subs in self._by_key.values() for s in subs)}


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
_hubs_lock = threading.Lock()


def get_hub() -> Hub:
    """The running loop's hub (created on first use)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            for old in [old for old in _hubs if old.is_closed()]:
                del _hubs[old]
            hub = _hubs[loop] = Hub(loop)
        return hub


def publish(change_id: int | None, session_pks: Collection[int] | None) -> None:
    """Dispatch a change to every loop's hub, from any thread."""
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        try:
            hub.loop.call_soon_threadsafe(hub.dispatch, change_id, session_pks)
        except RuntimeError:  # the loop is closed
            with _hubs_lock:
                _hubs.pop(hub.loop, None)


def shut_down() -> None:
    """Answer every waiter and end every stream of this process (thread-safe): call it when
    the server begins to stop, if its own shutdown signal is not the one handled here."""
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            hub.loop.call_soon_threadsafe(hub.shut_down)


def _on_commit(
    sender: object, change_id: int, session_pks: Collection[int] | None, **_: Any
) -> None:
    publish(change_id, session_pks)


def connect() -> None:
    """Hear this process's commits (the app's ready() calls it)."""
    sessions_changed.connect(_on_commit, dispatch_uid="kernel_status.live.hub")


_signals_installed = False


def install_signal_handlers() -> None:
    """Answer waiters as soon as the server is told to stop (SIGTERM, SIGINT), then let the
    server's own handler run: a server waits for open requests before it stops, and waiters
    would otherwise hold it for their whole wait.

    Only where handlers are installed with :func:`signal.signal` from the main thread
    (uvicorn does); elsewhere call :func:`shut_down` from the server's shutdown hook.
    """
    global _signals_installed
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True
    for number in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(number)
        if not callable(previous):
            continue  # SIG_DFL / SIG_IGN: not a server that handles its own shutdown

        def handler(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            shut_down()
            previous(signum, frame)

        signal.signal(number, handler)
