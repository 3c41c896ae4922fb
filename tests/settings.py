"""Test settings: the example project, with the package's default liveness window."""

from project.settings import *  # noqa: F403
from project.settings import DATABASES

del KERNEL_STATUS_LIVENESS_WINDOW  # noqa: F821 - tests exercise the default window

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES["default"]["CONN_MAX_AGE"] = 0
