"""The throttle scopes of kernel_status, their default rates, and what a valid rate is.

No Django or DRF imports, so settings modules can import it (``NO_THROTTLES``).
"""

from __future__ import annotations

# The public API: see "Public and internal modules" in docs/reference.md.
__all__ = [
    "DEFAULT_RATES",
    "EVENTS_SCOPE",
    "FAILED_AUTH_SCOPE",
    "NO_THROTTLES",
    "SESSIONS_SCOPE",
    "STATUS_SCOPE",
    "parse_rate",
]

STATUS_SCOPE = "kernel_status.status"
EVENTS_SCOPE = "kernel_status.events"
SESSIONS_SCOPE = "kernel_status.sessions"
FAILED_AUTH_SCOPE = "kernel_status.failed_auth"

DEFAULT_RATES: dict[str, str | None] = {
    # A client polling every 250 ms for a minute, with room for a few tabs.
    STATUS_SCOPE: "600/min",
    # One account may report for a whole server: the marimo bridge posts one batch per
    # session per burst of frames, as one service account, at most 4 at once. At 20 ms a
    # write that is 200 requests/s: this default does not throttle a bridge on a healthy
    # server, and still stops a runaway client (docs/deployment.md, "Rate limits").
    EVENTS_SCOPE: "12000/min",
    # A culler or dashboard pages through the listing now and then.
    SESSIONS_SCOPE: "120/min",
    FAILED_AUTH_SCOPE: "30/min",
}

# REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] with every kernel_status limit off (tests, load
# generators: one user on one IP).
NO_THROTTLES: dict[str, str | None] = dict.fromkeys(DEFAULT_RATES)

# DRF's periods: it reads only the first letter after the slash ("10/min", "10/minute").
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: object) -> tuple[int, int] | None:
    """``(requests, seconds)`` for a rate DRF can use, ``None`` for ``None`` (no limit).

    Raises ``ValueError`` for anything else, including a count below one (use ``None`` to
    turn a limit off).
    """
    if rate is None:
        return None
    if not isinstance(rate, str):
        raise ValueError("a rate is a string such as '600/min', or None")
    count, slash, period = rate.partition("/")
    try:
        requests = int(count)  # what DRF does with it
    except ValueError:
        requests = None
    if requests is None or not slash or "/" in period or period[:1] not in PERIODS:
        raise ValueError("a rate is '<requests>/<period>', the period s, m, h or d (or longer)")
    if requests < 1:
        raise ValueError("a rate allows at least one request; None turns the limit off")
    return requests, PERIODS[period[:1]]
