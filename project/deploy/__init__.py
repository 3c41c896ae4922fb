"""The recommended deployment's nginx configuration (``nginx.conf`` here), rendered.

:func:`render_site` fills the placeholders of the file that docs/deployment.md shows;
:func:`render_standalone` wraps it in a whole nginx configuration that runs in the
foreground from a scratch directory, as the tests, the benchmark and scripts/slow_clients.py
start it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SITE = Path(__file__).with_name("nginx.conf")

# The main context for a foreground nginx owned by its caller. The access log records which
# upstream answered (the tests check the routing with it); production logs as it likes.
STANDALONE = """\
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format ks_upstream '$request_method $uri $status $upstream_addr';
    access_log {workdir}/access.log ks_upstream;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
{site}
}}
"""


def render_site(listen: str, wsgi: str, asgi: str) -> str:
    """``nginx.conf`` with its placeholders filled: nginx listens on ``listen``, plain reads
    and writes go to ``wsgi`` (host:port of gunicorn), waits and streams to ``asgi``."""
    text = SITE.read_text()
    for placeholder, value in (("@LISTEN@", listen), ("@WSGI@", wsgi), ("@ASGI@", asgi)):
        if placeholder not in text:
            raise ValueError(f"{SITE} has no {placeholder}")
        text = text.replace(placeholder, value)
    return text


def render_standalone(
    workdir: Path, listen: str, wsgi: str, asgi: str, *, forwarded_proto: str | None = None
) -> str:
    """A whole nginx configuration around :func:`render_site`, its files in ``workdir``.
    ``forwarded_proto="https"`` stands nginx in for a proxy that ended TLS (plain HTTP here)."""
    text = render_site(listen, wsgi, asgi)
    if forwarded_proto is not None:
        text = text.replace("X-Forwarded-Proto $scheme", f"X-Forwarded-Proto {forwarded_proto}")
    site = "\n".join("    " + line if line else line for line in text.splitlines())
    return STANDALONE.format(workdir=workdir, site=site)


def nginx_binary() -> str | None:
    """nginx from PATH or Debian's /usr/sbin, or None when it is not installed."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@contextmanager
def nginx_running(
    workdir: Path, port: int, wsgi: str, asgi: str, *, forwarded_proto: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run nginx in the foreground on 127.0.0.1:``port`` in front of ``wsgi`` and ``asgi``
    until the block ends; the caller waits for it to listen."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "nginx.conf"
    config.write_text(
        render_standalone(workdir, f"127.0.0.1:{port}", wsgi, asgi, forwarded_proto=forwarded_proto)
    )
    subprocess.run([binary, "-t", "-q", "-c", str(config), "-p", str(workdir)], check=True)
    process = subprocess.Popen([binary, "-c", str(config), "-p", str(workdir)])
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
