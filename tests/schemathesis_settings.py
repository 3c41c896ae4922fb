"""The server under schemathesis (tests/integration/test_schemathesis.py): the test settings
without the clock guard.

The guard refuses timestamps more than KERNEL_STATUS_MAX_CLOCK_SKEW ahead of the server's
clock. The schema says so in words, but a static schema cannot bound a number by "now", so
schemathesis would rightly count a far-future timestamp as valid data rejected. Everything
else, every check included, runs as configured.
"""

from tests.settings import *  # noqa: F403

KERNEL_STATUS_MAX_CLOCK_SKEW = None

# The change stream ends a moment after its snapshot, so that schemathesis reads whole
# streams (a client reconnects with Last-Event-ID, as it does when a proxy cuts one).
KERNEL_STATUS_STREAM_MAX_SECONDS = 0.2
