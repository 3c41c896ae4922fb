"""Follow every session of one marimo server and mirror it (see docs/bridge.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

TOKEN_ENV = "KERNEL_STATUS_BRIDGE_TOKEN"
MARIMO_TOKEN_ENV = "KERNEL_STATUS_MARIMO_TOKEN"
LOGGER_NAME = "kernel_status.contrib.marimo"


class Command(BaseCommand):
    help = (
        "Follow every session of a running marimo server (0.25) read-only, as an extra kiosk "
        "viewer that displaces no browser tab, and mirror kernel and cell states into "
        "kernel_status: over HTTP (--api-url, POST /api/kernel/events) or straight into the "
        "database (--direct). Runs until SIGINT or SIGTERM. Needs the 'marimo' extra."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--marimo-url",
            required=True,
            help="Base URL of the marimo server, e.g. http://127.0.0.1:2718.",
        )
        parser.add_argument(
            "--marimo-token-file",
            type=Path,
            help="File holding marimo's access token, if marimo runs with one (default: "
            f"${MARIMO_TOKEN_ENV}).",
        )
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument(
            "--api-url",
            help="URL of kernel_status's POST /api/kernel/events, e.g. "
            "https://platform.example/api/kernel/events (HTTP mode).",
        )
        mode.add_argument(
            "--direct",
            action="store_true",
            help="Write with the Python write API into this project's database (direct mode).",
        )
        parser.add_argument(
            "--token-file",
            type=Path,
            help="HTTP mode: file holding the service account's API token (default: "
            f"${TOKEN_ENV}). The account needs kernel_status.report_kernel_events.",
        )
        parser.add_argument(
            "--auth-scheme",
            default="Token",
            help="HTTP mode: the Authorization scheme (default: Token, DRF's TokenAuthentication).",
        )
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=2.0,
            help="Seconds between session listings (default 2).",
        )
        parser.add_argument(
            "--heartbeat-interval",
            type=float,
            default=15.0,
            help="Seconds between heartbeats per attached session (default 15); "
            "keep it well under KERNEL_STATUS_LIVENESS_WINDOW.",
        )
        parser.add_argument(
            "--max-sessions",
            type=int,
            default=200,
            help="Most sessions followed at once (default 200).",
        )
        parser.add_argument(
            "--unknown-retry",
            type=float,
            default=10.0,
            help="Seconds between tries for a session the mirror does not know yet (default 10).",
        )
        parser.add_argument(
            "--unknown-give-up",
            type=float,
            default=600.0,
            help="Seconds after a session ends in marimo before its events are dropped if the "
            "mirror still does not know it (default 600).",
        )
        parser.add_argument(
            "--health-file",
            type=Path,
            help="Write a JSON status here after every listing (for probes). It also keeps "
            "the kernel starts reported, so that a restarted bridge reports the same ones.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            from kernel_status.contrib.marimo.bridge import (
                MARIMO_TOKEN_OPTION,
                BridgeSettings,
                MarimoBridge,
            )
            from kernel_status.contrib.marimo.client import MarimoUnauthorized
            from kernel_status.contrib.marimo.writer import (
                DirectSink,
                FatalWriteError,
                HttpSink,
                Sink,
                Writer,
            )
        except ImportError as error:  # websockets and httpx are the marimo extra
            raise CommandError(
                f"The bridge needs the 'marimo' extra: pip install 'kernel-status[marimo]' "
                f"({error})."
            ) from error

        try:
            settings = BridgeSettings(
                marimo_url=options["marimo_url"],
                marimo_token=_secret(options["marimo_token_file"], MARIMO_TOKEN_ENV, False),
                poll_interval=options["poll_interval"],
                heartbeat_interval=options["heartbeat_interval"],
                max_sessions=options["max_sessions"],
                health_file=options["health_file"],
            )
            from kernel_status.contrib.marimo.client import check_base_url

            check_base_url(settings.marimo_url)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if options["unknown_retry"] <= 0:
            raise CommandError("--unknown-retry must be positive.")
        if options["unknown_give_up"] < 0:
            raise CommandError("--unknown-give-up must not be negative.")

        async def main() -> None:
            sink: Sink
            if options["direct"]:
                sink = DirectSink()
            else:
                token = _secret(options["token_file"], TOKEN_ENV, True)
                assert token is not None
                sink = HttpSink(options["api_url"], token, scheme=options["auth_scheme"])
            writer = Writer(
                sink,
                unknown_retry=options["unknown_retry"],
                unknown_give_up=options["unknown_give_up"],
            )
            bridge = MarimoBridge(settings, writer)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await bridge.run(stop)

        with _logging(options["verbosity"]):
            try:
                asyncio.run(main())
            except FatalWriteError as error:
                raise CommandError(f"The mirror refused the bridge: {error}") from error
            except MarimoUnauthorized as error:
                # Like the mirror's 401/403: the token is read once, so retrying cannot fix
                # it; exit 1 lets a supervisor restart the bridge with the corrected token.
                raise CommandError(
                    f"marimo refused the bridge's access token ({MARIMO_TOKEN_OPTION}): {error}"
                ) from error


def _secret(path: Path | None, env: str, required: bool) -> str | None:
    if path is not None:
        try:
            value = path.read_text().strip()
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error}") from error
    else:
        value = os.environ.get(env, "").strip()
    if required and not value:
        raise CommandError(f"HTTP mode needs a token: --token-file PATH or ${env}.")
    return value or None


class _logging:
    """Show the bridge's log on stderr (by --verbosity) unless the project's LOGGING does."""

    def __init__(self, verbosity: int) -> None:
        self.logger = logging.getLogger(LOGGER_NAME)
        self.level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
        self.handler: logging.Handler | None = None

    def __enter__(self) -> None:
        if self.logger.hasHandlers():
            return
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.logger.addHandler(self.handler)
        self.logger.setLevel(self.level)

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
