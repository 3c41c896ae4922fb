"""The house's layers: imports in ``kernel_status`` run one way, down, and never in a circle.

The layers, from the bottom (docs/development.md, "The map of the house"):

0. settings and vocabularies: ``conf``, ``choices``, ``exceptions``, ``validators``, and
   ``deadline`` (the bound on a request's database work);
1. ``queries``: every read query (it knows the models through the app registry only);
2. ``models``;
3. ``mirror``: the write side;
4. ``live``: live updates (the hub, the listener, waits' reads, the stream's engine, parked
   waits, the request thread let go while waiting);
5. ``api``: the HTTP layer;
6. the top: ``urls``, ``admin``, ``checks``, ``apps``, the management commands, ``contrib``,
   and the modules kept for their public import paths (``events``, ``state``, ``access``,
   ``permissions``, ``throttle_rates``, ``asgi``), which only re-export.

Every import counts, also one inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import REPO

PACKAGE = REPO / "kernel_status"

LAYERS: list[tuple[str, ...]] = [
    (
        "kernel_status",
        "kernel_status.conf",
        "kernel_status.choices",
        "kernel_status.exceptions",
        "kernel_status.validators",
        "kernel_status.deadline",
    ),
    ("kernel_status.queries",),
    ("kernel_status.models",),
    ("kernel_status.mirror",),
    ("kernel_status.live",),
    ("kernel_status.api",),
]
TOP = len(LAYERS)

# What the optional marimo sub-app may use besides the public modules (docs/development.md): it
# ships in the same package and version as the core.
CONTRIB_INTERNALS = (
    "kernel_status.mirror.events",  # read_cell_op, the one reader of cell-op data
    "kernel_status.mirror.ordering",  # the tie ranks, to compact a backlog as the mirror orders
    "kernel_status.queries.listing",  # the culler's query
)
PUBLIC = (
    "kernel_status.access",
    "kernel_status.asgi",
    "kernel_status.checks",
    "kernel_status.choices",
    "kernel_status.conf",
    "kernel_status.events",
    "kernel_status.exceptions",
    "kernel_status.mirror",
    "kernel_status.models",
    "kernel_status.permissions",
    "kernel_status.state",
    "kernel_status.throttle_rates",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "migrations" not in path.relative_to(PACKAGE).parts
}


def imported(path: Path) -> Iterator[str]:
    """The kernel_status modules that the file imports, wherever the import statement is."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from kernel_status.api.openapi import extensions" imports a module.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] == "kernel_status")


GRAPH = {name: sorted(set(imported(path)) - {name}) for name, path in MODULES.items()}


def layer(module: str) -> int:
    if module == "kernel_status":  # the package itself: its version, nothing else
        return 0
    for index, prefixes in enumerate(LAYERS):
        if any(under(module, prefix) for prefix in prefixes if prefix != "kernel_status"):
            return index
    return TOP


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def test_the_graph_was_read() -> None:
    assert "kernel_status.mirror.batch" in GRAPH["kernel_status.mirror.writes"]
    assert "kernel_status.api.openapi.extensions" in GRAPH["kernel_status.apps"]
    assert layer("kernel_status.queries.status") == 1
    assert layer("kernel_status.urls") == TOP


def test_no_import_runs_up_a_layer() -> None:
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_nothing_below_the_top_imports_a_module_kept_for_its_import_path() -> None:
    kept = {f"kernel_status.{name}" for name in ("events", "state", "access", "permissions")}
    kept |= {"kernel_status.throttle_rates", "kernel_status.asgi"}
    users = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if layer(module) < TOP or under(module, "kernel_status.contrib")
        for target in targets
        if target in kept
    ]
    assert users == []


def test_no_import_circle() -> None:
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            pytest.fail("import circle: " + " -> ".join((*path[path.index(module) :], module)))
        if module in done or module not in GRAPH:
            return
        for target in GRAPH[module]:
            visit(target, (*path, module))
        done.add(module)

    for module in GRAPH:
        visit(module, ())


def test_contrib_uses_the_public_api_and_the_documented_internals() -> None:
    allowed = (*PUBLIC, *CONTRIB_INTERNALS, "kernel_status.contrib")
    used = {
        target
        for module, targets in GRAPH.items()
        if under(module, "kernel_status.contrib")
        for target in targets
    }
    assert {t for t in used if not any(under(t, name) for name in allowed)} == set()
    # "kernel_status.mirror" allows the package, not every module inside it.
    inside_mirror = {
        t for t in used if under(t, "kernel_status.mirror") and t != "kernel_status.mirror"
    }
    assert inside_mirror <= set(CONTRIB_INTERNALS)


def test_each_folder_says_what_lives_there() -> None:
    folders = [path.parent for path in PACKAGE.rglob("__init__.py")]
    assert len(folders) >= 10
    for folder in folders:
        if folder.name == "migrations":
            continue  # Django's, named by convention
        docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert docstring, folder
        assert len(docstring) > 40, folder


def test_the_top_of_the_package_stays_small() -> None:
    # Six of them only re-export, for their public import paths (asgi, the latest).
    assert len(list(PACKAGE.glob("*.py"))) <= 17
