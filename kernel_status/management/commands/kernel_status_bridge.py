"""Follow one session of a running marimo server and mirror it (see kernel_status.bridge)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from argparse import ArgumentParser
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from kernel_status import mirror
from kernel_status.models import Session

TOKEN_ENV = "KERNEL_STATUS_BRIDGE_TOKEN"


class Command(BaseCommand):
    help = (
        "Connect to a running marimo server's websocket for one session and mirror its kernel "
        "and cell statuses into kernel_status, until the kernel stops, the connection is lost "
        "for good, or SIGINT/SIGTERM. Needs the 'bridge' extra (websockets)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--url",
            required=True,
            help="Base URL of the marimo server, e.g. http://127.0.0.1:2718 (https gives wss).",
        )
        parser.add_argument(
            "--session-id",
            required=True,
            help="The marimo session id to follow; also the mirrored session's id. If marimo "
            "has no session with this id, connecting creates one and starts its kernel.",
        )
        parser.add_argument(
            "--token",
            default=os.environ.get(TOKEN_ENV) or None,
            help="marimo's access token (sent as access_token on the websocket and as a "
            f"bearer token to its status endpoint). Defaults to ${TOKEN_ENV}, which keeps "
            "the token out of process listings.",
        )
        parser.add_argument(
            "--heartbeat-interval",
            type=float,
            default=15.0,
            help="Seconds between heartbeats while connected (default 15). Keep it well under "
            "KERNEL_STATUS_LIVENESS_WINDOW.",
        )
        parser.add_argument(
            "--give-up-after",
            type=float,
            default=60.0,
            help="Seconds of lost connection (reconnecting with backoff) after which the "
            "kernel is recorded as stopped, cause 'connection lost' (default 60).",
        )
        parser.add_argument(
            "--owner",
            help="Username of the session's owner: register the session in the mirror if it "
            "is missing (with --notebook). Without it, the session must already exist.",
        )
        parser.add_argument(
            "--notebook",
            help="The notebook path to record when registering the session (with --owner).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            from kernel_status.bridge import BridgeConfig, BridgeError, MarimoBridge, Outcome
        except ImportError as error:  # websockets is an optional dependency
            raise CommandError(
                f"The bridge needs the 'bridge' extra: pip install 'kernel-status[bridge]' "
                f"({error})."
            ) from error

        session_id: str = options["session_id"]
        try:
            config = BridgeConfig(
                url=options["url"],
                session_id=session_id,
                token=options["token"],
                heartbeat_interval=options["heartbeat_interval"],
                give_up_after=options["give_up_after"],
            )
        except BridgeError as error:
            raise CommandError(str(error)) from error
        self._ensure_session(session_id, options["owner"], options["notebook"])

        bridge = MarimoBridge(config)
        try:
            with _bridge_logging(options["verbosity"]), _stop_on_signals(bridge.stop_event):
                outcome = bridge.run()
        except BridgeError as error:
            raise CommandError(str(error)) from error
        if outcome is Outcome.CONNECTION_LOST:
            raise CommandError(
                f"Lost the connection to marimo for {config.give_up_after:g} s; recorded the "
                f"kernel of session {session_id!r} as stopped."
            )
        if outcome is Outcome.DISPLACED:
            raise CommandError(
                f"Another client took session {session_id!r} over; the mirror was left as is."
            )
        self.stdout.write(f"Session {session_id!r}: {outcome.value}.")

    def _ensure_session(self, session_id: str, owner: str | None, notebook: str | None) -> None:
        if owner is None and notebook is None:
            if not Session.objects.filter(session_id=session_id).exists():
                raise CommandError(
                    f"No session with id {session_id!r} in the mirror. Register it first, or "
                    "pass --owner USERNAME and --notebook PATH to register it."
                )
            return
        if owner is None or notebook is None:
            raise CommandError("--owner and --notebook go together.")
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(owner)
        except user_model.DoesNotExist:
            raise CommandError(f"No user {owner!r}.") from None
        try:
            mirror.register_session(session_id, owner=user, notebook=notebook)
        except (ValidationError, mirror.SessionOwnerMismatch) as error:
            messages = error.messages if isinstance(error, ValidationError) else [str(error)]
            raise CommandError(" ".join(messages)) from error


@contextmanager
def _bridge_logging(verbosity: int) -> Iterator[None]:
    """Show the bridge's log on stderr (by --verbosity) unless the project's LOGGING does."""
    logger = logging.getLogger("kernel_status.bridge")
    if logger.hasHandlers():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM stop the bridge cleanly (main thread only; handlers restored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
