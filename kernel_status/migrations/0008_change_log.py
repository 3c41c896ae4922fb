# The change log behind blocking status reads and change streams (docs/watching.md).
# Numbered 0008 while another branch adds 0007: renumber on merge if needed.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("kernel_status", "0006_mysql_busy_cells_index_and_binary_ids"),
    ]

    operations = [
        migrations.CreateModel(
            name="Change",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "session_pk",
                    models.BigIntegerField(
                        blank=True, null=True, verbose_name="session primary key"
                    ),
                ),
                ("at", models.DateTimeField(verbose_name="at")),
                ("access", models.BooleanField(default=False, verbose_name="access changed")),
            ],
            options={
                "verbose_name": "change",
                "verbose_name_plural": "changes",
            },
        ),
    ]
