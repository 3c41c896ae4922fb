# The change log behind blocking status reads and change streams (docs/watching.md).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("kernel_status", "0007_session_quiet_since_index"),
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
