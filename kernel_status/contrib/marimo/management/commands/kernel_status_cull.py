"""Shut down marimo sessions idle or stopped for too long (see docs/pollers.md)."""

from __future__ import annotations

import os
from argparse import ArgumentParser, ArgumentTypeError
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from kernel_status.queries.listing import FilterError, parse_idle_for

TOKEN_ENV = "KERNEL_STATUS_MARIMO_TOKEN"
SERVER_TOKEN_ENV = "KERNEL_STATUS_MARIMO_SERVER_TOKEN"


def seconds(value: str) -> timedelta:
    try:
        return parse_idle_for(value)
    except FilterError as error:
        raise ArgumentTypeError(str(error)) from None


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ArgumentTypeError(f"must be a positive integer, not {value!r}")
    return int(value)


class Command(BaseCommand):
    help = (
        "Shut down the sessions of a marimo server that the mirror shows idle or stopped, "
        "with no activity for at least --idle-for seconds, and record them as closed. Prints "
        "one line per session; exits 1 when marimo refuses. Needs the 'marimo' extra."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--marimo-url", required=True, help="marimo's base URL, e.g. http://127.0.0.1:2718."
        )
        parser.add_argument(
            "--token",
            default=os.environ.get(TOKEN_ENV) or None,
            help=f"marimo's access token, sent as a bearer token. Defaults to ${TOKEN_ENV}.",
        )
        parser.add_argument(
            "--server-token",
            default=os.environ.get(SERVER_TOKEN_ENV) or None,
            help="marimo's server token (its Marimo-Server-Token header). Defaults to "
            f"${SERVER_TOKEN_ENV}; without either, it is read from marimo's page.",
        )
        parser.add_argument(
            "--idle-for",
            required=True,
            type=seconds,
            help="Seconds without activity (a kernel start, or a cell queued, starting to run "
            "or finishing) after which an idle or stopped session is shut down.",
        )
        parser.add_argument(
            "--limit",
            type=positive_int,
            default=None,
            help="Shut down at most this many sessions in this run, oldest activity first.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be shut down; change nothing."
        )
        parser.add_argument(
            "--timeout", type=float, default=10.0, help="Seconds to wait for each marimo request."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            from kernel_status.contrib.marimo import culler
        except ImportError as error:  # httpx is the marimo extra
            raise CommandError(
                f"The culler needs the 'marimo' extra: pip install 'kernel-status[marimo]' "
                f"({error})."
            ) from error

        try:
            home = culler.MarimoHome(
                options["marimo_url"],
                token=options["token"],
                server_token=options["server_token"],
                timeout=options["timeout"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from error

        def report(culled: culler.Culled) -> None:
            self.stdout.write(culled.line(timezone.now()))

        with home as marimo:
            try:
                result = culler.cull(
                    marimo,
                    idle_for=options["idle_for"],
                    limit=options["limit"],
                    dry_run=options["dry_run"],
                    report=report,
                )
            except culler.MarimoUnavailable as error:
                raise CommandError(f"marimo refused to list its sessions: {error}") from None
        done = sum(1 for c in result.culled if c.action in ("shut down", "would shut down"))
        verb = "would shut down" if options["dry_run"] else "shut down"
        self.stdout.write(
            f"{verb} {done} session(s) idle for at least "
            f"{options['idle_for'].total_seconds():g} s on {marimo.base_url}; "
            f"{result.not_on_server} more idle in the mirror are not open on this server."
        )
        refused = result.refused
        if refused is not None:
            raise CommandError(
                f"marimo refused to shut down {refused.session_id}: {refused.reason}"
            )
