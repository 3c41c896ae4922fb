"""Test settings: the example project, with the package's default liveness window."""

import os
import tempfile

from kernel_status.throttle_rates import NO_THROTTLES
from project.settings import *  # noqa: F403
from project.settings import DATABASES, REST_FRAMEWORK

del KERNEL_STATUS_LIVENESS_WINDOW  # noqa: F821 - tests exercise the default window

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Servers a test starts may keep connections as the example project does (60 s).
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("KERNEL_STATUS_TEST_CONN_MAX_AGE", "0"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not the shared-cache in-memory default: threads (live server, bridge) then get
    # SQLite's ordinary locking with a busy timeout instead of "database table is locked".
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"kernel_status_test_{os.getpid()}.sqlite3")
    }

# No rate limits by accident: tests of throttling set their rates with override_settings.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": NO_THROTTLES}

# Watching tests shorten the stream's heartbeat for a server they start.
KERNEL_STATUS_STREAM_HEARTBEAT = float(os.environ.get("KERNEL_STATUS_TEST_HEARTBEAT", "15"))
