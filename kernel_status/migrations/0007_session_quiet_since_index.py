"""An index for the ``idle_for`` rule of the listing and the culler.

"Last activity before the cutoff, or none and registered before it" scanned every session;
on ``(last_activity, created_at)`` it is two ranges of one index (``last_activity <= cutoff``,
and ``last_activity IS NULL AND created_at <= cutoff``), read by the planners of PostgreSQL
(a bitmap OR), SQLite (a multi-index OR) and MariaDB/MySQL (one range scan). Plain columns, no
collation change: the binary id collations of 0006 are untouched.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("kernel_status", "0006_mysql_busy_cells_index_and_binary_ids"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="session",
            index=models.Index(
                fields=["last_activity", "created_at"], name="kernel_status_quiet_since"
            ),
        ),
    ]
