"""The marimo sub-app is optional: without websockets and httpx, the core works in full and the
bridge's and the culler's commands say which extra to install.
(tests/integration/test_packaging.py checks the same with the wheel in a fresh virtual
environment.)"""

from __future__ import annotations

import os
import sys
import textwrap

from tests.utils import REPO, run

# Runs in a fresh interpreter where importing websockets or httpx fails, as when the marimo
# extra is not installed; the project's settings list kernel_status.contrib.marimo.
SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"websockets", "httpx"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocked())

    import django
    import kernel_status

    django.setup()
    from django.core.management import call_command, get_commands
    from django.core.management.base import CommandError

    core = [
        module.name
        for module in pkgutil.walk_packages(kernel_status.__path__, "kernel_status.")
        if not module.name.startswith("kernel_status.contrib.marimo.")
        or module.name.endswith(
            ("apps", "commands.kernel_status_bridge", "commands.kernel_status_cull")
        )
    ]
    for name in core:
        importlib.import_module(name)
    call_command("check", fail_level="ERROR")
    assert get_commands()["kernel_status_bridge"] == "kernel_status.contrib.marimo"
    assert get_commands()["kernel_status_cull"] == "kernel_status.contrib.marimo"
    try:
        call_command("kernel_status_bridge", "--marimo-url", "http://127.0.0.1:9", "--direct")
    except CommandError as error:
        print("bridge:", error)
    try:
        call_command("kernel_status_cull", "--marimo-url", "http://127.0.0.1:9", "--idle-for", "1")
    except CommandError as error:
        print("culler:", error)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"websockets", "httpx"})
    print("imported:", len(core), "loaded:", loaded)
    """
)


def test_core_and_the_command_work_without_the_marimo_extra() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    lines = run(sys.executable, "-c", SCRIPT, cwd=REPO, env=env, timeout=120).splitlines()
    assert lines[0] == "System check identified no issues (0 silenced)."
    assert lines[1] == (
        "bridge: The bridge needs the 'marimo' extra: pip install 'kernel-status[marimo]' "
        "(No module named 'websockets')."
    )
    assert lines[2] == (
        "culler: The culler needs the 'marimo' extra: pip install 'kernel-status[marimo]' "
        "(No module named 'httpx')."
    )
    imported = int(lines[3].split()[1])
    assert imported >= 20  # every core module, the sub-app's config and its commands
    assert lines[3].endswith("loaded: []")
