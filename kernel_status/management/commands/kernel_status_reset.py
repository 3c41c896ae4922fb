"""Reset the mirror of sessions that are stuck (see kernel_status.mirror.reset_session)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from kernel_status import mirror
from kernel_status.models import Session


class Command(BaseCommand):
    help = (
        "Forget the mirrored kernel process, cells and last activity of the given sessions, "
        "for a mirror stuck by events the write API cannot undo (e.g. stamped far in the "
        "future). Each session stays registered and reads 'stopped' until its next "
        "kernel-started."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("session_ids", nargs="+", metavar="session_id")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[str] = options["session_ids"]
        with transaction.atomic():
            # All or nothing: a typo in one id resets none of them.
            known = set(
                Session.objects.filter(session_id__in=ids).values_list("session_id", flat=True)
            )
            unknown = [session_id for session_id in ids if session_id not in known]
            if unknown:
                raise CommandError(
                    "No session with id " + ", ".join(repr(i) for i in unknown) + "; nothing reset."
                )
            for session_id in ids:
                mirror.reset_session(session_id)
        for session_id in ids:
            self.stdout.write(f"Reset the mirror of session {session_id!r}.")
