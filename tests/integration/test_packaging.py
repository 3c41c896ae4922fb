"""The package as users get it: its declared versions, the sdist and the wheel that
``python -m build`` makes, and a fresh host project that installs the wheel from scratch and
answers the endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from packaging.requirements import Requirement

import kernel_status
from tests.utils import REPO, free_port, run, stop

PACKAGE = REPO / "kernel_status"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DIST_NAME = f"kernel_status-{kernel_status.__version__}"
SESSION_ID = "packaged-session"

# The slow tests build the package and install it into a new virtual environment with a host
# project on its own SQLite file, so the database under test plays no part in them. They run
# once per `make test`: in the SQLite run on Python 3.11 (make test-sqlite). The PostgreSQL run
# sets DATABASE_URL, which skips them here, and make test-django6 deselects them (-m "not slow").
not_with_database_url = pytest.mark.skipif(
    "DATABASE_URL" in os.environ,
    reason="builds and installs the package apart from the database; the SQLite run covers it",
)


def test_declared_versions_cover_the_django_and_python_under_test() -> None:
    # Not slow, so it runs in every pass of `make test`: each tested Django and Python is declared.
    django_series = "{}.{}".format(*django.VERSION[:2])
    python_series = "{}.{}".format(*sys.version_info[:2])
    (django_requirement,) = (
        requirement
        for requirement in map(Requirement, PROJECT["dependencies"])
        if requirement.name.lower() == "django"
    )
    assert django_requirement.specifier.contains(django.get_version())
    assert f"Framework :: Django :: {django_series}" in PROJECT["classifiers"]
    assert f"Programming Language :: Python :: {python_series}" in PROJECT["classifiers"]


def copy_checkout(destination: Path) -> None:
    """Copy the files a clean checkout has, plus new ones that git does not ignore. Build
    leftovers in the work tree, such as a stale kernel_status.egg-info/SOURCES.txt that
    setuptools would reuse, could otherwise put into the sdist files that the configuration
    leaves out."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        check=False,
    )
    if listed.returncode != 0:  # not a git checkout
        shutil.copytree(
            REPO,
            destination,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".*", "*.egg-info", "build", "dist", "node_modules", "__pycache__", "db.sqlite3"
            ),
        )
        return
    for name in listed.stdout.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():  # skips files deleted from the work tree
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built from a clean copy of the checkout. Like a release,
    `python -m build` makes the wheel from the sdist, so a file that the sdist misses is
    missing from the wheel too."""
    source = tmp_path_factory.mktemp("source")
    copy_checkout(source)
    outdir = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", outdir, source, cwd=source)
    return {
        "sdist": outdir / f"{DIST_NAME}.tar.gz",
        "wheel": outdir / f"{DIST_NAME}-py3-none-any.whl",
    }


def source_package_files() -> set[str]:
    """Every module of the package in the source tree, and its data files."""
    files = {"kernel_status/py.typed"}
    for path in PACKAGE.rglob("*"):
        relative = path.relative_to(REPO)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
            continue
        if path.suffix == ".py" or relative.parts[1] == "static":
            files.add(relative.as_posix())
    return files


@pytest.mark.slow
@not_with_database_url
def test_the_wheel_holds_the_package_with_its_migrations_and_data(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())

    missing = source_package_files() - names
    assert not missing, f"missing from the wheel: {sorted(missing)}"
    assert {
        "kernel_status/migrations/__init__.py",
        "kernel_status/migrations/0001_initial.py",
        "kernel_status/static/kernel_status/admin.css",
        "kernel_status/py.typed",
    } <= names
    # Only the package and its metadata: not the example project, the tests or manage.py.
    assert {name.split("/")[0] for name in names} == {"kernel_status", f"{DIST_NAME}.dist-info"}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


@pytest.mark.slow
@not_with_database_url
def test_the_sdist_holds_the_package_readme_license_and_schema(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.removeprefix(f"{DIST_NAME}/") for name in sdist.getnames()}

    missing = source_package_files() - names
    assert not missing, f"missing from the sdist: {sorted(missing)}"
    assert {"README.md", "CHANGELOG.md", "LICENSE", "schema.yml", "pyproject.toml"} <= names
    assert not [name for name in names if name.startswith(("project/", "tests/"))]


HOST_SETTINGS = """\
SECRET_KEY = "kernel-status-packaging-test"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "kernel_status",
    # The marimo sub-app, installed without its extra: the core must not need websockets.
    "kernel_status.contrib.marimo",
]
ROOT_URLCONF = "host.urls"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
"""

HOST_URLS = """\
from django.urls import include, path

urlpatterns = [path("api/", include("kernel_status.urls"))]
"""

MANAGE = """\
import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "host.settings")
execute_from_command_line(sys.argv)
"""

# Run by the new environment's Python: makes a user with a token, and a session of theirs whose
# kernel runs a cell. Prints where kernel_status was imported from, and the token.
SEED = """\
import json
import os
import sysconfig

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "host.settings")
django.setup()

from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token

import kernel_status
from kernel_status.models import CellStatus, KernelProcess, Session

now = timezone.now()
user = User.objects.create_user(username="editor", password="editor")
session = Session.objects.create(session_id=SESSION_ID, owner=user, notebook="notebook.py")
KernelProcess.objects.create(
    session=session, state="running", started_at=now, last_heartbeat_at=now
)
CellStatus.objects.create(session=session, cell_id="c1", status="running", notified_at=now)
print(
    json.dumps(
        {
            "kernel_status": kernel_status.__file__,
            "site_packages": sysconfig.get_paths()["purelib"],
            "django": django.get_version(),
            "token": Token.objects.create(user=user).key,
        }
    )
)
"""


def write_host_project(root: Path) -> None:
    (root / "host").mkdir(parents=True)
    (root / "host" / "__init__.py").write_text("")
    (root / "host" / "settings.py").write_text(HOST_SETTINGS)
    (root / "host" / "urls.py").write_text(HOST_URLS)
    (root / "manage.py").write_text(MANAGE)
    (root / "seed.py").write_text(SEED.replace("SESSION_ID", repr(SESSION_ID)))


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    """GET the URL; the status, the headers and the JSON body, for errors too."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.load(error)


@pytest.fixture
def server(tmp_path: Path, dist: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """A new venv with the wheel installed, a host project migrated and seeded, and its
    runserver on a free port."""
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    host = tmp_path / "host"
    write_host_project(host)
    # Nothing of this checkout, nor of the test run's settings, may leak into the host project.
    leaky = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "DATABASE_URL"}
    env = {key: value for key, value in os.environ.items() if key not in leaky}

    run(sys.executable, "-m", "venv", venv, env=env)
    # Resolves the wheel's dependencies (Django, DRF, drf-spectacular) from the package index.
    run(python, "-m", "pip", "install", "--quiet", dist["wheel"], env=env)
    run(python, "manage.py", "migrate", "--noinput", cwd=host, env=env)
    # The packaged migrations match the packaged models under the Django that pip chose.
    run(python, "manage.py", "makemigrations", "--check", "--dry-run", cwd=host, env=env)
    seeded = json.loads(run(python, "seed.py", cwd=host, env=env))

    port = free_port()
    url = f"http://127.0.0.1:{port}/api/kernel/status"
    log = (tmp_path / "runserver.log").open("w")
    process = subprocess.Popen(
        [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=host,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "runserver.log").read_text()
            try:
                get(url, {})
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "runserver.log").read_text()
                time.sleep(0.2)
        yield {**seeded, "url": url, "python": python, "host": host, "env": env}
    finally:
        stop(process)
        log.close()


@pytest.mark.slow
@not_with_database_url
def test_a_fresh_host_project_with_the_wheel_answers_the_endpoint(
    server: dict[str, Any],
) -> None:
    # The app came from the wheel in the new venv, not from this checkout.
    assert Path(server["kernel_status"]).is_relative_to(server["site_packages"])

    status, _, body = get(
        server["url"],
        {"Authorization": f"Token {server['token']}", "Marimo-Session-Id": SESSION_ID},
    )
    assert (status, body["state"]) == (200, "running")

    status, headers, body = get(server["url"], {"Marimo-Session-Id": SESSION_ID})
    assert status == 401
    assert headers["WWW-Authenticate"] == "Token"
    assert body == {"detail": "Authentication credentials were not provided."}


@pytest.mark.slow
@not_with_database_url
def test_without_the_marimo_extra_the_bridge_names_it(server: dict[str, Any]) -> None:
    # migrate, makemigrations and runserver above ran with the sub-app installed; the extra's
    # packages are not there, and the bridge's command says what to install.
    python, host, env = server["python"], server["host"], server["env"]
    probe = "import importlib.util as u; print(u.find_spec('websockets'), u.find_spec('httpx'))"
    assert run(python, "-c", probe, env=env).strip() == "None None"
    result = subprocess.run(
        [python, "manage.py", "kernel_status_bridge", "--direct", "--marimo-url", "http://x"],
        cwd=host,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "pip install 'kernel-status[marimo]'" in result.stderr
    culler = subprocess.run(
        [python, "manage.py", "kernel_status_cull", "--marimo-url", "http://x", "--idle-for", "1"],
        cwd=host,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert culler.returncode == 1
    assert "The culler needs the 'marimo' extra" in culler.stderr
