"""Settings of benchmarks/watch.py's server: the benchmark settings without a liveness window.

No kernel host sends heartbeats during the run, so with the default window (60 s) every
seeded kernel would expire a minute in and wake every waiter at once; the benchmark measures
wake-ups caused by writes. Waits up to 10 minutes (as Consul allows) are honoured, so that a
run can set how often each held read is renewed (``--wait``).
"""

from benchmarks.settings import *  # noqa: F403

KERNEL_STATUS_LIVENESS_WINDOW = None
KERNEL_STATUS_MAX_WAIT = 600
