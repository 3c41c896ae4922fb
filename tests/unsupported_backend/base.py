from __future__ import annotations

from django.db.backends.dummy.base import DatabaseWrapper as DummyDatabaseWrapper


class DatabaseWrapper(DummyDatabaseWrapper):
    vendor = "oracle"
