"""The change-counter poller (SQLite, MariaDB, and PostgreSQL while LISTEN is down): every
commit after its baseline is dispatched, whenever it lands between two of its reads."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User

from kernel_status import mirror
from kernel_status.live.listener import Listener
from kernel_status.models import Change

pytestmark = pytest.mark.django_db(transaction=True)


class RecordingHub:
    """What the listener tells a hub, recorded."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.dispatched: list[tuple[int | None, list[int] | None]] = []
        self.wakes = 0

    def dispatch(self, change_id: int | None, session_pks: Collection[int] | None) -> None:
        self.dispatched.append((change_id, None if session_pks is None else list(session_pks)))

    def wake_all(self, change_id: int | None = None) -> None:
        self.wakes += 1


def newest_change() -> tuple[int, int | None]:
    change = Change.objects.order_by("-pk").values_list("pk", "session_pk").first()
    assert change is not None
    return change


def test_commits_between_the_baseline_and_each_poll_are_dispatched(
    users: dict[str, User],
) -> None:
    session = mirror.register_session("one", owner=users["owner"], notebook="a.py")

    async def scenario() -> None:
        hub = RecordingHub()
        listener = Listener(hub)
        await listener._rebase()
        assert hub.wakes == 1  # what committed before the baseline, every waiter re-reads
        assert hub.dispatched == []

        # Right after the baseline, before the first poll.
        await sync_to_async(mirror.kernel_started)("one")
        first = await sync_to_async(newest_change)()
        assert first[0] > listener.position
        await listener._poll_for(0.01)
        assert hub.dispatched == [(first[0], [session.pk])]

        # Between two polls: the second compares with what the first left, not a fresh read.
        await sync_to_async(mirror.kernel_stopped)("one")
        second = await sync_to_async(newest_change)()
        await listener._poll_for(0.01)
        assert [change_id for change_id, _ in hub.dispatched] == [first[0], second[0]]
        assert listener.position == second[0]

        # Nothing new: nothing dispatched, whatever the number of polls.
        await listener._poll_for(0.05)
        assert len(hub.dispatched) == 2
        assert hub.wakes == 1

    async_to_sync(scenario)()
