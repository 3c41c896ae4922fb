"""The statement timeout on MariaDB and MySQL, set on each new connection.

The two name it differently, and the settings cannot tell which server answers:
``max_statement_time`` (seconds, every statement) on MariaDB, ``max_execution_time``
(milliseconds, read-only SELECTs) on MySQL, whose writes are bounded by
``innodb_lock_wait_timeout`` and ``lock_wait_timeout`` (set in ``init_command``). Imported
by project.settings only when the engine is MySQL.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created


def set_statement_timeout(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if connection.vendor != "mysql":
        return
    milliseconds = int(settings.DATABASE_STATEMENT_TIMEOUT)
    with connection.cursor() as cursor:
        if connection.mysql_is_mariadb:  # type: ignore[attr-defined]
            cursor.execute("SET SESSION max_statement_time = %s", [milliseconds / 1000])
        else:
            cursor.execute("SET SESSION max_execution_time = %s", [milliseconds])


connection_created.connect(set_statement_timeout, dispatch_uid="project.mysql.statement_timeout")
