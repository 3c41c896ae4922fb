"""Blocking reads at scale: N waiters on one uvicorn process, woken by writes.

Starts one uvicorn server (benchmarks.watch_settings) on SQLite or PostgreSQL, seeded with S
sessions of one idle cell, and holds N ``Prefer: wait`` reads (60 s, or ``--wait``) from a
light asyncio client (waiter i watches session i mod S). Once all are held it measures the
server's idle RSS per waiter, its idle CPU and (PostgreSQL) the database connections; then a
writer in this process switches a cell of R sessions per second between running and idle
(``apply_events``) for T seconds, and each wake-up's latency is the waiter's 200 receipt
minus that commit.

    python benchmarks/watch.py --database postgresql --waiters 10000 --wait 600
    python benchmarks/watch.py --database sqlite --waiters 1000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import (  # noqa: E402
    PYTHON,
    _drop_postgres,
    _recreate_postgres,
    free_port,
    http_get,
    started,
    wait_until,
)

SETTINGS = "benchmarks.watch_settings"
CONNECT_AT_ONCE = 200  # below net.core.somaxconn, so no SYN is dropped while connecting


@dataclass
class Figures:
    database: str
    waiters: int
    sessions: int
    rate: float
    seconds: float
    wait: int = 60  # each held read's Prefer: wait
    wakes: int = 0
    missed: int = 0  # commits whose waiters saw no 200 before the end
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    rss_per_waiter_kb: float = 0.0
    idle_cpu_percent: float = 0.0
    threads: dict[str, int] = field(default_factory=dict)  # the server's, before and held
    connections: dict[str, int | None] = field(default_factory=dict)
    requests_per_second: float = 0.0
    polling_requests_per_second: float = 0.0
    setup_seconds: float = 0.0


# --- the server process, seen from /proc -------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pid: int, seconds: float) -> float:
    start, began = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - start) / (time.monotonic() - began)


def settle(pid: int, timeout: float) -> None:
    """Until the server is idle (under 2 % of a core over 1 s) and its RSS stops growing."""
    deadline = time.monotonic() + timeout
    last = rss_kb(pid)
    while time.monotonic() < deadline:
        busy = cpu_percent(pid, 1.0)
        now = rss_kb(pid)
        if busy < 2.0 and now - last < 256:
            return
        last = now
    raise RuntimeError("the server did not settle")


# --- the client ----------------------------------------------------------------------------


class Waiter:
    def __init__(self, index: int, session_id: str, token: str) -> None:
        self.index = index
        self.head = (
            f"GET /api/kernel/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {token}\r\nMarimo-Session-Id: {session_id}\r\n"
        )
        self.received: list[float] = []  # monotonic times of 200s to a wait
        self.held = False


class Client:
    def __init__(self, port: int, wait: int) -> None:
        self.port = port
        self.wait = wait
        self.requests = 0
        self.held = 0
        self.errors: list[str] = []

    async def run(self, waiter: Waiter, gate: asyncio.Semaphore) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=65536)
            # A tag that matches nothing: answered 200 at once, through the reader pool. A plain
            # GET runs in a thread (and connection) of its own per concurrent request.
            first_get = f'{waiter.head}If-None-Match: "none"\r\nPrefer: wait={self.wait}\r\n\r\n'
            status, headers, body = await self.exchange(reader, writer, first_get)
        if status != 200:
            self.errors.append(f"first GET: {status} {body[:200]!r}")
            return
        etag = headers["etag"]
        first = True
        while True:
            request = f"{waiter.head}If-None-Match: {etag}\r\nPrefer: wait={self.wait}\r\n\r\n"
            if first:
                # Held once the request is sent; the server's side is checked by settle().
                exchange = asyncio.ensure_future(self.exchange(reader, writer, request))
                await asyncio.sleep(0)
                self.held += 1
                first = False
                status, headers, _ = await exchange
            else:
                status, headers, _ = await self.exchange(reader, writer, request)
            if status == 200:
                waiter.received.append(time.monotonic())
                etag = headers["etag"]
            elif status != 304:
                self.errors.append(f"wait: {status}")
                return

    async def exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: str
    ) -> tuple[int, dict[str, str], bytes]:
        writer.write(request.encode())
        self.requests += 1
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body


# --- Django, in this process: seeding and the writer -------------------------------------------


def setup_django(url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_DEBUG"] = "0"
    import django

    django.setup()


def seed(sessions: int) -> str:
    from django.core.management import call_command

    from benchmarks.seed import seed_watched

    call_command("migrate", verbosity=0, interactive=False)
    return seed_watched(sessions)


class Writer(threading.Thread):
    """Switches cell c0 of one session after another between running and idle."""

    def __init__(self, sessions: int, rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.sessions, self.rate, self.seconds = sessions, rate, seconds
        self.commits: list[tuple[int, float, float]] = []  # (session, before, committed)
        self.backend_pid: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connection
        from django.utils import timezone

        from benchmarks.seed import watch_session_id
        from kernel_status.events import CellNotification
        from kernel_status.mirror import apply_events

        try:
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    self.backend_pid = int(cursor.fetchone()[0])
            count = int(self.rate * self.seconds)
            start = time.monotonic()
            for n in range(count):
                time.sleep(max(0.0, start + n / self.rate - time.monotonic()))
                index = n % self.sessions
                status = "running" if (n // self.sessions) % 2 == 0 else "idle"
                event = CellNotification(cell_id="c0", timestamp=timezone.now(), status=status)
                before = time.monotonic()
                apply_events(watch_session_id(index), [event])
                self.commits.append((index, before, time.monotonic()))
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            connection.close()


def server_connections(url: str, exclude: set[int]) -> int:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND NOT (pid = ANY(%s))",
            [name, list(exclude)],
        ).fetchone()
    return int(row[0]) if row else 0


# --- the run -------------------------------------------------------------------------------


def latencies(
    waiters: list[Waiter], sessions: int, commits: list[tuple[int, float, float]]
) -> tuple[list[float], int]:
    """Per commit and waiter of its session: the first 200 after the commit began."""
    by_session: dict[int, list[Waiter]] = {}
    for waiter in waiters:
        by_session.setdefault(waiter.index % sessions, []).append(waiter)
    found, missed = [], 0
    for session, before, committed in commits:
        for waiter in by_session.get(session, []):
            after = [t for t in waiter.received if t >= before]
            if after:
                found.append(max(0.0, after[0] - committed) * 1000)
            else:
                missed += 1
    return found, missed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/kernel_status"),
        help="the run creates and drops the database <name>_watch on this server",
    )
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=0, help="default: one per waiter")
    parser.add_argument("--rate", type=float, default=20.0, help="changes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--wait", type=int, default=60, help="each read's Prefer: wait (the server allows 600)"
    )
    parser.add_argument("--json", type=Path, help="append the figures to this JSON list")
    args = parser.parse_args()
    sessions = args.sessions or args.waiters

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.waiters + 1000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        sys.exit(f"{args.waiters} waiters need {wanted} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))

    workdir = Path(tempfile.mkdtemp(prefix="kernel-status-watch-"))
    if args.database == "postgresql":
        parts = urlsplit(args.postgres_url)
        url = urlunsplit(parts._replace(path="/" + parts.path.lstrip("/") + "_watch"))
        _recreate_postgres(url)
    else:
        url = f"sqlite:///{workdir / 'watch.sqlite3'}"
    figures = Figures(args.database, args.waiters, sessions, args.rate, args.seconds, args.wait)
    try:
        setup_django(url)
        token = seed(sessions)
        run(args, url, token, figures, workdir)
    finally:
        if args.database == "postgresql":
            from django.db import connections

            connections.close_all()
            _drop_postgres(url)
    report(figures)
    if args.json:
        previous = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps([*previous, asdict(figures)], indent=2) + "\n")


def run(args: argparse.Namespace, url: str, token: str, figures: Figures, workdir: Path) -> None:
    from benchmarks.seed import watch_session_id

    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DATABASE_URL": url,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    command = [PYTHON, "-m", "uvicorn", "--no-access-log", "--log-level", "warning",
               "--host", "127.0.0.1", "--port", str(port), "--backlog", "16384",
               "--timeout-keep-alive", "120", "project.asgi:application"]  # fmt: skip
    log = workdir / "uvicorn.log"
    pg = args.database == "postgresql"
    with started(command, env, log) as server:
        auth = {"Authorization": f"Token {token}", "Marimo-Session-Id": watch_session_id(0)}
        base = f"http://127.0.0.1:{port}/api/kernel/status"
        wait_until(lambda: http_get(base, auth)[0] == 200, "uvicorn", server, log)
        settle(server.pid, 30)
        rss_before = rss_kb(server.pid)
        figures.threads["before"] = threads(server.pid)
        figures.connections["before"] = server_connections(url, set()) if pg else None
        waiters = [
            Waiter(i, watch_session_id(i % figures.sessions), token) for i in range(args.waiters)
        ]
        asyncio.run(drive(args, url, port, server.pid, waiters, figures, rss_before, pg))
        if "error" in log.read_text(errors="replace").lower():
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)


async def drive(
    args: argparse.Namespace,
    url: str,
    port: int,
    pid: int,
    waiters: list[Waiter],
    figures: Figures,
    rss_before: int,
    pg: bool,
) -> None:
    loop = asyncio.get_running_loop()
    client = Client(port, figures.wait)
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    began = time.monotonic()
    tasks = [asyncio.ensure_future(client.run(w, gate)) for w in waiters]
    while client.held < len(waiters):
        if client.errors:
            raise RuntimeError(f"client errors: {client.errors[:5]}")
        if all(t.done() for t in tasks):
            break
        await asyncio.sleep(0.2)
    await loop.run_in_executor(None, settle, pid, 120)
    # The client's own collections would show as the server's latency: its waiters are
    # long-lived, so they are left out of them from here on.
    gc.collect()
    gc.freeze()
    figures.setup_seconds = time.monotonic() - began
    figures.rss_per_waiter_kb = (rss_kb(pid) - rss_before) / len(waiters)
    figures.threads["held"] = threads(pid)
    figures.idle_cpu_percent = await loop.run_in_executor(None, cpu_percent, pid, 3.0)
    figures.connections["held"] = (
        await loop.run_in_executor(None, server_connections, url, set()) if pg else None
    )
    writer = Writer(figures.sessions, args.rate, args.seconds)
    requests_before = client.requests
    writing_began = time.monotonic()
    writer.start()
    most = 0
    while writer.is_alive():
        await asyncio.sleep(0.5)
        if pg and writer.backend_pid is not None:
            exclude = {writer.backend_pid}
            most = max(most, await loop.run_in_executor(None, server_connections, url, exclude))
    await asyncio.sleep(1.0)  # the last commits' wake-ups
    elapsed = time.monotonic() - writing_began
    if writer.error is not None:
        raise writer.error
    figures.connections["writing"] = most if pg else None
    figures.requests_per_second = (client.requests - requests_before) / elapsed
    figures.polling_requests_per_second = float(len(waiters))
    if client.errors:
        raise RuntimeError(f"client errors: {client.errors[:5]}")
    found, missed = latencies(waiters, figures.sessions, writer.commits)
    figures.wakes, figures.missed = len(found), missed
    figures.p50_ms = statistics.median(found) if found else 0.0
    figures.p99_ms = percentile(found, 0.99)
    figures.max_ms = max(found, default=0.0)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*tasks, return_exceptions=True)


def report(figures: Figures) -> None:
    c = figures.connections
    conns = "n/a" if c.get("before") is None else f"{c['before']} / {c['held']} / {c['writing']}"
    ratio = figures.requests_per_second / figures.polling_requests_per_second
    print(
        f"watch {figures.database}: {figures.waiters:,} waiters, {figures.sessions:,} sessions, "
        f"{figures.rate:g} changes/s for {figures.seconds:g} s, wait={figures.wait} "
        f"(setup {figures.setup_seconds:.0f} s)\n"
        f"  wake latency p50 {figures.p50_ms:.1f} ms, p99 {figures.p99_ms:.1f} ms, "
        f"max {figures.max_ms:.1f} ms ({figures.wakes} wake-ups, {figures.missed} missed)\n"
        f"  RSS per waiter {figures.rss_per_waiter_kb:.1f} KB, idle CPU "
        f"{figures.idle_cpu_percent:.1f} % of a core\n"
        f"  server threads (before / held): {figures.threads['before']} / "
        f"{figures.threads['held']}\n"
        f"  DB connections (before / held / writing): {conns}\n"
        f"  requests/s {figures.requests_per_second:,.1f} vs "
        f"{figures.polling_requests_per_second:,.0f} with 1 s polling: {ratio:.4f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
