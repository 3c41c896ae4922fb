"""Parking held blocking reads outside Django's request chain.

A blocking read held inside Django keeps its whole request alive while it waits: the
handler's and every middleware's coroutines, the request, DRF's request and view, the 304
it would send. About 200 objects, 25 KB or so a waiter. :class:`WaitParkingMiddleware`, an
ASGI middleware around Django's application, lets Django finish that request instead: the
status view, when it would wait, hands the waiter's subscription to the middleware on a
:class:`Ticket` in the ASGI scope, and answers the 304 it would send at the timeout, which
the middleware keeps rather than sends. Parked, a waiter is its connection, its
subscription and that 304.

When the session changes (or its liveness window runs out), the middleware runs the same
request through Django again: authentication, permission and the state, as a new request
would be, except that the rate throttle does not count it again (the ticket is in the scope,
which no client can write). An unchanged answer parks again; any other is sent. The timeout
sends the kept 304, and so does the server's shutdown; a client that disconnects frees its
waiter at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

if TYPE_CHECKING:
    from kernel_status.live.hub import Subscription

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose: Django's ASGIHandler types its own arguments a little differently.
ASGIApp = Callable[..., Awaitable[None]]

SCOPE_KEY = "kernel_status.parking"
_EMPTY_BODY: Message = {"type": "http.request", "body": b"", "more_body": False}


class Ticket:
    """What a blocking read's pass through Django leaves for the middleware: the waiter's
    subscription, its session, when its wait ends, and whether to park it at all."""

    __slots__ = ("database_failed", "deadline", "missed", "parked", "session_pk", "subscription")

    def __init__(self) -> None:
        self.subscription: Subscription | None = None
        self.session_pk: int | None = None
        self.deadline = 0.0  # on the event loop's clock
        self.missed = False  # the session changed while the pass read it: run again at once
        self.parked = False  # this pass's answer is the 304 to keep, not to send
        self.database_failed = False  # the middleware's own read failed: the pass answers 503

    @property
    def woken(self) -> bool:
        """This pass runs a parked read again (its rate limit was counted already)."""
        return self.subscription is not None and not self.parked

    def park(
        self, subscription: Subscription, session_pk: int, deadline: float, missed: bool
    ) -> None:
        """Hand the waiter to the middleware; the view then answers the 304 to keep."""
        self.subscription = subscription
        self.session_pk = session_pk
        self.deadline = deadline
        self.missed = missed
        self.parked = True


def ticket_of(request: Any) -> Ticket | None:
    """The request's ticket, if the parking middleware serves it."""
    scope = getattr(request, "scope", None)
    ticket = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    return ticket if isinstance(ticket, Ticket) else None


def may_wait(scope: Scope) -> bool:
    """A GET that asks to wait (``Prefer`` and ``If-None-Match``): the view decides the rest."""
    if scope["type"] != "http" or scope.get("method") != "GET":
        return False
    names = {name for name, _ in scope.get("headers", ())}
    return b"prefer" in names and b"if-none-match" in names


class WaitParkingMiddleware:
    """ASGI middleware: held blocking reads wait parked, outside Django's request chain.

    Importable before Django is set up, as an ``asgi.py`` imports it.

    Wrap the project's ASGI application with it (``project/asgi.py``)::

        application = WaitParkingMiddleware(get_asgi_application())

    Every other request passes through untouched. Without it, blocking reads wait inside
    their request, as before, at about twice the memory each.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not may_wait(scope):
            await self.app(scope, receive, send)
            return
        ticket = Ticket()
        scope = {**scope, SCOPE_KEY: ticket}
        kept = _Kept()
        incoming = _Incoming(receive)
        try:
            await self.app(scope, incoming.first_pass, _keeping(ticket, kept, send))
            if ticket.parked:
                await self._park(scope, ticket, kept, incoming, send)
        finally:
            if ticket.subscription is not None:
                ticket.subscription.close()  # also when a pass failed after parking
            await incoming.close()

    async def _park(
        self, scope: Scope, ticket: Ticket, kept: _Kept, incoming: _Incoming, send: Send
    ) -> None:
        from kernel_status.live import reads  # models: importable before Django is set up

        subscription = ticket.subscription
        assert subscription is not None
        assert ticket.session_pk is not None
        loop = asyncio.get_running_loop()
        leaving = incoming.leaving()
        leaving.add_done_callback(lambda _: subscription.interrupt())
        try:
            while True:
                woke = True  # missed: a change during the last pass, run again at once
                if not ticket.missed:
                    timeout = ticket.deadline - loop.time()
                    try:
                        expiry = await reads.read(reads.next_expiry, [ticket.session_pk])
                    except DatabaseError:
                        ticket.database_failed = True  # the view answers its 503
                        timeout = 0.0
                    else:
                        if expiry is not None:
                            timeout = min(timeout, reads.until_expiry(expiry))
                    woke = await subscription.wait(max(0.0, timeout))
                if leaving.done():
                    return  # the client left: nothing to answer
                past_deadline = not woke and loop.time() >= ticket.deadline
                if subscription.closing or (past_deadline and not ticket.database_failed):
                    for message in kept.messages():  # the timeout's (or shutdown's) 304
                        await send(message)
                    return
                # Taken before every pass: what changes during the pass is the next one's.
                subscription.take()
                ticket.parked = ticket.missed = False
                await self.app(scope, incoming.again(), _keeping(ticket, kept, send))
                if not ticket.parked:
                    return  # answered: a change, a refusal, an error
        finally:
            subscription.close()


class _Kept:
    """A parked read's 304, packed: a few hundred bytes instead of a list of tuples."""

    __slots__ = ("body", "headers", "status")

    def __init__(self) -> None:
        self.status = 304
        self.headers = b""
        self.body = b""

    def keep(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            pairs = message.get("headers", ())
            self.headers = b"\r\n".join(bytes(name) + b": " + bytes(value) for name, value in pairs)
            self.body = b""
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def messages(self) -> list[Message]:
        lines = self.headers.split(b"\r\n") if self.headers else []
        headers = [tuple(line.split(b": ", 1)) for line in lines]
        return [
            {"type": "http.response.start", "status": self.status, "headers": headers},
            {"type": "http.response.body", "body": self.body, "more_body": False},
        ]


def _keeping(ticket: Ticket, kept: _Kept, send: Send) -> Send:
    """Send the pass's answer, or keep it when the pass parked the waiter."""

    async def send_or_keep(message: Message) -> None:
        if ticket.parked and message["type"] == "http.response.start" and message["status"] != 304:
            ticket.parked = False  # a middleware answered otherwise after the view parked
        if ticket.parked:
            kept.keep(message)
        else:
            await send(message)

    return send_or_keep


class _Incoming:
    """The client's messages, shared by every pass of one request: its body once, then its
    leaving (``http.disconnect``), which whoever listens (Django's handler during a pass,
    the middleware while parked) sees, however many passes there are."""

    __slots__ = ("_body_read", "_leaving", "_receive")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._body_read = False
        self._leaving: asyncio.Future[Message] | None = None

    def leaving(self) -> asyncio.Future[Message]:
        if self._leaving is None:
            self._leaving = asyncio.ensure_future(self._receive())
        return self._leaving

    async def first_pass(self) -> Message:
        if not self._body_read:
            message = await self._receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                self._body_read = True
            return message
        return await asyncio.shield(self.leaving())

    def again(self) -> Receive:
        """The receive of a pass run again: its (empty) body, then the client's leaving."""
        body_read = False

        async def receive() -> Message:
            nonlocal body_read
            if not body_read:
                body_read = True
                return dict(_EMPTY_BODY)
            return await asyncio.shield(self.leaving())

        return receive

    async def close(self) -> None:
        if self._leaving is not None and not self._leaving.done():
            self._leaving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._leaving
