"""The public modules that docs/reference.md lists declare ``__all__``, and it is true."""

from __future__ import annotations

import importlib
import os
import re
import sys

import pytest

from tests.utils import REPO, run

REFERENCE = (REPO / "docs" / "reference.md").read_text()
SECTION = REFERENCE[REFERENCE.index("## Public and internal modules") :]
PUBLIC = re.findall(r"^\| `(kernel_status\.\w+)`", SECTION, flags=re.MULTILINE)
INTERNAL_TEXT = SECTION[
    SECTION.index("Everything else is internal") : SECTION.index("`kernel_status.events`, `state`")
]
INTERNAL = re.findall(r"`([\w.]+)`", INTERNAL_TEXT)
# Not modules to list: Django's folders, and the optional sub-app, documented on its own pages.
UNLISTED = ("migrations", "management", "contrib")


def package_modules() -> set[str]:
    """Every module of the package as a dotted path below ``kernel_status`` ("api.views")."""
    root = REPO / "kernel_status"
    modules = set()
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] in UNLISTED or parts == ("__init__",):
            continue
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_the_docs_list_public_and_internal_modules() -> None:
    assert len(PUBLIC) == 12
    public = {name.removeprefix("kernel_status.") for name in PUBLIC}
    internal = set(INTERNAL) - {"manage.py", 'include("kernel_status.urls")'}
    # Every module is one or the other, and none is both.
    assert public | internal == package_modules()
    assert not public & internal


@pytest.mark.parametrize("name", PUBLIC)
def test_public_modules_declare_all_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, name
    assert len(set(exported)) == len(exported)
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.{attribute}"
    # The names the docs table cites for the module are exported.
    row = next(line for line in SECTION.splitlines() if line.startswith(f"| `{name}`"))
    cited = set(re.findall(r"`(\w+)(?:\(\))?`", row.split("|")[2]))
    methods = {"with_state", "with_access_level", "visible_to"}  # SessionQuerySet's
    assert cited - methods <= set(exported), cited - set(exported)


def test_the_event_types_and_the_settings_names_import_before_django_is_set_up() -> None:
    # A settings module imports throttle_rates; a bridge or a host's code may build events
    # before django.setup(). None of these may need configured settings or the app registry.
    code = (
        "import kernel_status.events, kernel_status.mirror.events, kernel_status.conf, "
        "kernel_status.throttle_rates as rates; "
        "assert rates.parse_rate('5/m') == (5, 60)"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    run(sys.executable, "-c", code, cwd=REPO, env=env)
