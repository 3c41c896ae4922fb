"""The documented host installation works as written.

On a fresh ``django-admin startproject``, this appends every ``settings.py`` and ``urls.py``
block of docs/installation.md to the new project's files, runs the documented ``manage.py``
commands (and compares their documented output), runs docs/platform.md's platform snippets and
token lines (``KERNEL_HOST_TOKEN=$(...)`` included), serves the project, and asks the endpoints
as the documented users: 200, 401, 403 and 404. It then runs installation.md's last step (its
shell snippet, token line and curl line) and docs/platform.md's event batch with its own curl
line, and expects their documented answers. The code is read from the docs, never copied here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.utils import REPO, CodeBlock, code_blocks, free_port, run

DOCS = REPO / "docs"

pytestmark = [
    # The host project has its own SQLite database: DATABASE_URL changes nothing here, so it
    # runs once per `make test`, in the SQLite pass.
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL")),
        reason="runs once per `make test`, in the SQLite pass (DATABASE_URL is set)",
    ),
]

# The first line of installation.md's block for `python manage.py shell`, its last step.
SHELL_SNIPPET = "# python manage.py shell"
# A console line that keeps a command's output in a variable: NAME=$(command).
ASSIGNMENT = re.compile(r"^(\w+)=\$\((.*)\)$")


def blocks(page: str) -> list[CodeBlock]:
    return code_blocks(DOCS / page)


def console_commands(block: CodeBlock) -> list[tuple[str, list[str]]]:
    """``$ command`` lines of a console block (with their ``\\`` continuation lines), each
    with the output lines shown under it."""
    commands: list[tuple[str, list[str]]] = []
    continued = False
    for line in block.text.splitlines():
        if continued:
            commands[-1] = (commands[-1][0] + "\n" + line, commands[-1][1])
        elif line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands and line.strip():
            commands[-1][1].append(line)
            continue
        continued = line.endswith("\\")
    return commands


def get(url: str, token: str | None = None, **headers: str) -> tuple[int, dict[str, str], Any]:
    if token is not None:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


@dataclass
class Host:
    root: Path
    env: dict[str, str]
    base_url: str
    tokens: dict[str, str]


def manage(host_root: Path, env: dict[str, str], command: str) -> str:
    """A documented ``python manage.py ...`` line, run with this interpreter."""
    argv = shlex.split(command)
    assert argv[:2] == ["python", "manage.py"], command
    return run(sys.executable, *argv[1:], cwd=host_root, env=env, merge_stderr=True)


def shell(host_root: Path, env: dict[str, str], script: str, base_url: str = "") -> str:
    """Documented shell lines, as a user's shell runs them: ``python`` is this interpreter,
    and the documented server address is the test's server."""
    path = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    if base_url:
        script = script.replace("http://127.0.0.1:8000", base_url)
    return run(
        *("bash", "-euo", "pipefail", "-c", script), cwd=host_root, env={**env, "PATH": path}
    )


def token_line(page: str, user: str) -> str:
    """The page's console line that keeps ``user``'s token in a variable."""
    [line] = [
        command
        for block in blocks(page)
        if block.language == "console"
        for command, _ in console_commands(block)
        if ASSIGNMENT.match(command) and f"drf_create_token {user} " in command
    ]
    return line


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("docs-host")
    # This checkout's kernel_status, and none of the test run's settings.
    leaky = {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH"}
    env = {key: value for key, value in os.environ.items() if key not in leaky}
    env["PYTHONPATH"] = str(REPO)
    run(sys.executable, "-m", "django", "startproject", "host", root, cwd=root, env=env)

    install = blocks("installation.md")
    appended = {"settings.py": 0, "urls.py": 0, SHELL_SNIPPET: 0}
    for block in install:
        if block.language != "python":
            continue
        target = block.first_line.removeprefix("# ")
        if target in {"settings.py", "urls.py"}:
            with (root / "host" / target).open("a") as file:
                file.write("\n" + block.text)
            appended[target] += 1
        else:
            # The last step's snippet, run by test_the_installation_ends_with_a_status_answer.
            assert block.first_line == SHELL_SNIPPET, f"{block.where}: what is this block for?"
            appended[SHELL_SNIPPET] += 1
    assert appended == {"settings.py": 4, "urls.py": 2, SHELL_SNIPPET: 1}

    ran = []
    for block in install:
        if block.language != "console" or "curl" in block.text:
            continue  # the last step's curl block needs the server: see the test below
        for command, shown in console_commands(block):
            if command.startswith("pip install"):
                continue  # the test run's environment has the package and its extras
            output = manage(root, env, command)
            for line in shown:
                assert line in output, f"{command}: {line!r} not in\n{output}"
            ran.append(command)
    assert ran == ["python manage.py migrate", "python manage.py check"]

    platform = blocks("platform.md")
    snippets = [b for b in platform if b.first_line.startswith("# platform:")]
    assert len(snippets) == 2
    for snippet in snippets:
        run(sys.executable, "manage.py", "shell", cwd=root, env=env, stdin=snippet.text)

    tokens = {}
    for block in platform:
        if block.language != "console":
            continue
        for command, _ in console_commands(block):
            if "drf_create_token" not in command:
                continue
            assignment = ASSIGNMENT.match(command)
            if assignment:  # NAME=$(...): the line as documented, then what it set
                key = shell(root, env, f'{command}\nprintf %s "${assignment[1]}"')
                [user] = re.findall(r"drf_create_token (\S+)", command)
            else:
                output = manage(root, env, command)
                created = re.search(r"Generated token (\w+) for user (\S+)", output)
                assert created, output
                key, user = created[1], created[2]
            assert re.fullmatch(r"[0-9a-f]{40}", key), f"{command} gave {key!r}"
            tokens[user] = key
    assert set(tokens) == {"alice", "kernel-host"}
    for user in ["bob", "carol"]:  # the documented users without a documented token line
        output = manage(root, env, f"python manage.py drf_create_token {user}")
        tokens[user] = output.split()[2]

    port = free_port()
    log_path = root / "runserver.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                get(base_url + "/api/kernel/status")
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        yield Host(root, env, base_url, tokens)
    finally:
        server.terminate()
        server.wait(timeout=30)


def status(host: Host, user: str | None, session_id: str = "s_abc") -> tuple[int, Any]:
    token = None if user is None else host.tokens[user]
    code, headers, body = get(
        host.base_url + "/api/kernel/status", token, **{"Marimo-Session-Id": session_id}
    )
    assert headers["Content-Type"] == "application/json"
    return code, json.loads(body)


def test_the_documented_users_get_200_401_403_and_404(host: Host) -> None:
    # Registered, no kernel reported yet: stopped.
    nothing_yet = {"state": "stopped", "last_activity": None}
    assert status(host, "alice") == (200, nothing_yet)
    assert status(host, "bob") == (200, nothing_yet)
    assert status(host, "carol") == (403, {"detail": "Edit access to this session is required."})
    assert status(host, "kernel-host") == (404, {"detail": "Session not found."})
    assert status(host, "alice", "no-such-session") == (404, {"detail": "Session not found."})

    code, headers, body = get(
        host.base_url + "/api/kernel/status", **{"Marimo-Session-Id": "s_abc"}
    )
    assert (code, headers["WWW-Authenticate"]) == (401, "Token")
    assert json.loads(body) == {"detail": "Authentication credentials were not provided."}


@pytest.mark.skipif(shutil.which("curl") is None, reason="the documented example uses curl")
def test_the_installation_ends_with_a_status_answer(host: Host) -> None:
    install = blocks("installation.md")
    [snippet] = [b for b in install if b.first_line == SHELL_SNIPPET]
    run(sys.executable, "manage.py", "shell", cwd=host.root, env=host.env, stdin=snippet.text)
    [check] = [b for b in install if b.language == "console" and "curl" in b.text]
    commands = console_commands(check)
    assert commands[-1][0].startswith("curl "), commands
    script = "\n".join(command for command, _ in commands)
    output = shell(host.root, host.env, script, host.base_url)
    # The bytes the server sends, as shown under the curl line.
    assert output == "\n".join(commands[-1][1])
    assert json.loads(output) == {"state": "stopped", "last_activity": None}


@pytest.mark.skipif(shutil.which("curl") is None, reason="the documented example uses curl")
def test_the_documented_event_batch_applies(host: Host) -> None:
    platform = blocks("platform.md")
    [example] = [b for b in platform if b.language == "bash" and "/api/kernel/events" in b.text]
    answer = platform[platform.index(example) + 1]
    assert answer.language == "json"
    # In the shell where the service account's token line ran, as the page says.
    script = token_line("platform.md", "kernel-host") + "\n" + example.text
    output = shell(host.root, host.env, script, host.base_url)
    assert json.loads(output) == json.loads(answer.text)
    code, body = status(host, "alice")
    assert (code, body["state"]) == (200, "running")


def test_the_documented_schema_and_api_docs_are_served(host: Host) -> None:
    code, _, body = get(host.base_url + "/api/schema/", Accept="application/json")
    assert code == 200
    assert "/api/kernel/status" in json.loads(body)["paths"]
    code, _, body = get(host.base_url + "/api/docs/")
    assert code == 200
    assert b"swagger-ui" in body
    # The offline assets come from the sidecar, through the host's static files.
    asset = re.search(rb'src="([^"]*swagger-ui-bundle\.js)"', body)
    assert asset, body[:2000]
    assert get(host.base_url + asset[1].decode())[0] == 200
