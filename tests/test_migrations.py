from __future__ import annotations

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_missing_migrations() -> None:
    # Exits non-zero (SystemExit) when models and migrations differ.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
