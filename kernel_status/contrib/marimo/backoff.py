"""The one retry delay of the marimo sub-app: the bridge's reattaches and listings, the writer's
batches."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable

__all__ = ["backoff_delay"]

# 2.0 ** 1024 overflows (OverflowError, not inf); the cap is reached long before anyway.
_MAX_EXPONENT = sys.float_info.max_exp - 1


def backoff_delay(
    attempt: int,
    initial: float,
    cap: float,
    *,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Exponential: ``initial`` doubled per attempt, at most ``cap``; then a random factor in
    [0.5, 1.0], so that the sessions of one server that failed together do not retry in step.
    The result is within [``min(cap, initial * 2**attempt) / 2``, ``min(cap, initial *
    2**attempt)``] for any attempt, however many failures in a row.

    ``uniform`` draws the factor (``random.uniform``'s signature); tests pass a fixed one.
    """
    if attempt < 0:
        raise ValueError(f"attempt must not be negative, not {attempt}.")
    ceiling = min(cap, initial * 2.0 ** min(attempt, _MAX_EXPONENT))
    return ceiling * uniform(0.5, 1.0)
