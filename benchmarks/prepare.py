"""Create the bench database's tables and data; print the token as JSON.

Run by benchmarks/bench.py with DATABASE_URL naming a fresh database (a SQLite file or a
PostgreSQL database it created), and DJANGO_SETTINGS_MODULE=benchmarks.settings.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from benchmarks.seed import seed  # noqa: E402


def main() -> None:
    cells = [int(arg) for arg in sys.argv[1:]]
    call_command("migrate", verbosity=0, interactive=False)
    print(json.dumps({"token": seed(cells)}))


if __name__ == "__main__":
    main()
