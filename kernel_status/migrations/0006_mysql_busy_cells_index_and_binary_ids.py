"""MariaDB and MySQL: the busy-cell index on (session, status), and ids compared byte for byte.

Both are no-ops on PostgreSQL and SQLite, whose partial index and byte-wise comparison of
text are already right.

- ``kernel_status_busy_cells``: MySQL has no partial indexes, so migration 0001 left a plain
  index on ``session_id`` there (Django drops the condition). ``BusyCellsIndex`` builds
  ``(session_id, status)`` instead; the state changes on every database, the schema only on
  MySQL.
- Collation: MariaDB's and MySQL's default collations ignore case, accents and trailing
  spaces, so "S1" and "s1" would be one session. ``session_id`` and ``cell_id`` get a binary
  collation without padding (``utf8mb4_nopad_bin`` on MariaDB, ``utf8mb4_0900_bin`` on
  MySQL). ``db_collation`` is one name for every database, hence plain SQL here. A later
  migration that alters either column on MySQL must keep the collation.
"""

from django.db import migrations, models

import kernel_status.models

BUSY = "kernel_status_busy_cells"
ID_COLUMNS = [("session", "session_id"), ("cellstatus", "cell_id")]


def _mysql(schema_editor):
    return not schema_editor.connection.features.supports_partial_indexes


def busy_index_forward(apps, schema_editor):
    if _mysql(schema_editor):
        model = apps.get_model("kernel_status", "CellStatus")
        schema_editor.remove_index(model, models.Index(fields=["session"], name=BUSY))
        schema_editor.add_index(model, kernel_status.models.BusyCellsIndex(name=BUSY))


def busy_index_backward(apps, schema_editor):
    if _mysql(schema_editor):
        model = apps.get_model("kernel_status", "CellStatus")
        schema_editor.remove_index(model, kernel_status.models.BusyCellsIndex(name=BUSY))
        schema_editor.add_index(model, models.Index(fields=["session"], name=BUSY))


def _set_id_collation(apps, schema_editor, collation):
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    quote = schema_editor.quote_name
    for model_name, field_name in ID_COLUMNS:
        model = apps.get_model("kernel_status", model_name)
        field = model._meta.get_field(field_name)
        charset = f" CHARACTER SET utf8mb4 COLLATE {collation}" if collation else ""
        schema_editor.execute(
            f"ALTER TABLE {quote(model._meta.db_table)} MODIFY {quote(field.column)} "
            f"varchar({field.max_length}){charset} NOT NULL"
        )


def binary_ids(apps, schema_editor):
    mariadb = getattr(schema_editor.connection, "mysql_is_mariadb", False)
    _set_id_collation(
        apps, schema_editor, "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    )


def default_collation_ids(apps, schema_editor):
    _set_id_collation(apps, schema_editor, None)


class Migration(migrations.Migration):
    dependencies = [
        ("kernel_status", "0005_last_activity_help_text"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="cellstatus", name=BUSY),
                migrations.AddIndex(
                    model_name="cellstatus",
                    index=kernel_status.models.BusyCellsIndex(name=BUSY),
                ),
            ],
            database_operations=[
                migrations.RunPython(busy_index_forward, busy_index_backward, atomic=False),
            ],
        ),
        migrations.RunPython(binary_ids, default_collation_ids, atomic=False),
    ]
