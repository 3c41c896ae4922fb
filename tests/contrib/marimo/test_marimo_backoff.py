"""The sub-app's one retry delay: doubling from ``initial`` up to ``cap``, times [0.5, 1.0]."""

from __future__ import annotations

import random

import pytest

from kernel_status.contrib.marimo.backoff import backoff_delay


def highest(low: float, high: float) -> float:
    return high


def lowest(low: float, high: float) -> float:
    return low


def test_the_delay_doubles_per_attempt_up_to_the_cap() -> None:
    delays = [backoff_delay(attempt, 0.5, 30.0, uniform=highest) for attempt in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_the_jitter_takes_off_at_most_half() -> None:
    delays = [backoff_delay(attempt, 0.5, 30.0, uniform=lowest) for attempt in range(8)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_the_jitter_factor_is_drawn_from_half_to_one() -> None:
    calls: list[tuple[float, float]] = []

    def recording(low: float, high: float) -> float:
        calls.append((low, high))
        return 0.75

    assert backoff_delay(2, 1.0, 30.0, uniform=recording) == 3.0
    assert calls == [(0.5, 1.0)]


@pytest.mark.parametrize("attempt", [0, 1, 3, 6, 20])
def test_random_delays_stay_within_the_bounds_and_vary(attempt: int) -> None:
    ceiling = min(30.0, 0.5 * 2.0**attempt)
    draws = random.Random(attempt).uniform
    delays = [backoff_delay(attempt, 0.5, 30.0, uniform=draws) for _ in range(500)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 400  # spread out, not one fixed value
    # The default draws from random.uniform, within the same bounds.
    assert ceiling / 2 <= backoff_delay(attempt, 0.5, 30.0) <= ceiling


@pytest.mark.parametrize("attempt", [1023, 1024, 10**6])
def test_any_number_of_failures_in_a_row_gives_the_cap(attempt: int) -> None:
    # 2.0 ** 1024 raises OverflowError: the formula each caller had before failed there
    # (about 8.5 hours of failures at 30 s), and ended the task that retried.
    assert backoff_delay(attempt, 0.5, 30.0, uniform=highest) == 30.0
    assert backoff_delay(attempt, 1e-300, 30.0, uniform=lowest) == 15.0


def test_an_initial_delay_over_the_cap_is_capped() -> None:
    assert backoff_delay(0, 60.0, 30.0, uniform=highest) == 30.0


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt must not be negative"):
        backoff_delay(-1, 0.5, 30.0)
