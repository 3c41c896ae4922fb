"""The sliding-window counter under the rate limits: exact counts at given moments, with
the previous window weighted, refused requests not counted, and no 500 from a failing cache."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from kernel_status.api.throttling import WindowCounter


@pytest.fixture
def cache() -> LocMemCache:
    return LocMemCache(f"throttling-{os.urandom(4).hex()}", {})  # the name shares its store


def test_a_window_takes_its_limit_and_no_more(cache: LocMemCache) -> None:
    counter = WindowCounter(cache, "k", limit=3, duration=60)
    assert [counter.take(600 + n) for n in range(5)] == [True, True, True, False, False]
    assert counter.count(605) == 3  # refused requests are not counted
    # Refused at 604, full in this window alone: the next starts at 660, where the 3 fade
    # until one has gone, a third of the way in (680).
    assert counter.wait(604) == pytest.approx(76)


def test_the_previous_window_counts_by_the_part_still_covered(cache: LocMemCache) -> None:
    counter = WindowCounter(cache, "k", limit=4, duration=60)
    assert all(counter.take(600 + n) for n in range(4))
    # 15 s into the next window, 3 of the previous 4 still count: room for exactly one.
    assert counter.take(675) is True
    assert counter.take(675) is False
    assert counter.count(675) == pytest.approx(4)
    assert counter.wait(675) == pytest.approx(15)  # at 690, 2 of the 4 still count: 2 + 1 < 4
    assert counter.take(690) is True


def test_giving_back_makes_room(cache: LocMemCache) -> None:
    counter = WindowCounter(cache, "k", limit=1, duration=60)
    assert counter.take(600) is True
    counter.give_back(601)
    assert counter.take(602) is True


def test_threads_never_pass_more_than_the_limit(cache: LocMemCache) -> None:
    def take(_: int) -> bool:
        return WindowCounter(cache, "k", limit=50, duration=3600).take(7200.5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        taken = list(pool.map(take, range(400)))
    assert taken.count(True) == 50


def test_a_cache_that_keeps_nothing_limits_nothing() -> None:
    counter = WindowCounter(DummyCache("dummy", {}), "k", limit=1, duration=60)
    assert [counter.take(600), counter.take(600)] == [True, True]
    counter.give_back(600)
    counter.add(600)


class FailingCache(LocMemCache):
    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Redis is down")

    incr = add = decr = get


def test_a_failing_cache_lets_requests_through_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    counter = WindowCounter(FailingCache("failing", {}), "k", limit=1, duration=60)
    assert [counter.take(600), counter.take(600)] == [True, True]
    counter.give_back(600)
    counter.add(600)
    assert "Rate limit k not applied, the cache failed" in caplog.text
