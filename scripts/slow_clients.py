"""Slow clients: status read latency while 100 slow-body and 100 idle connections are held.

A slow-body connection sends the headers of a ``POST /api/kernel/events`` with a large
``Content-Length``, then a few bytes a second; an idle connection opens and sends nothing.
While they are held, a client reads the status, one request at a time, and the figures are
printed: p50 and max latency, and how many reads failed or timed out. Compare gunicorn
directly with nginx in front of it (docs/deployment.md, "Slow clients"):

    python scripts/slow_clients.py --token KEY --session-id ID \
        http://127.0.0.1:8001 http://127.0.0.1:8080

:func:`run_slow_clients` is the scenario, importable by other scripts and by the tests.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

STATUS_PATH = "/api/kernel/status"
EVENTS_PATH = "/api/kernel/events"


def _connect(host: str, port: int) -> socket.socket | None:
    try:
        return socket.create_connection((host, port), timeout=5)
    except OSError:
        return None  # refused or full: the server's backlog is part of what is measured


@contextmanager
def held_connections(
    base_url: str, slow: int, idle: int, bytes_per_second: float = 2.0
) -> Iterator[dict[str, int]]:
    """Hold ``slow`` slow-body and ``idle`` idle connections to ``base_url`` for the block;
    yields counts of those that connected (updated as they drop)."""
    parsed = urllib.parse.urlsplit(base_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    counts = {"slow": 0, "idle": 0}
    slow_sockets: list[socket.socket] = []
    idle_sockets: list[socket.socket] = []
    head = (
        f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    for _ in range(slow):
        sock = _connect(host, port)
        if sock is not None:
            try:
                sock.sendall(head)
                slow_sockets.append(sock)
            except OSError:
                sock.close()
    for _ in range(idle):
        sock = _connect(host, port)
        if sock is not None:
            idle_sockets.append(sock)
    counts["slow"], counts["idle"] = len(slow_sockets), len(idle_sockets)
    stop = threading.Event()

    def trickle() -> None:
        # One byte per socket per tick: the bodies never finish within the scenario.
        while not stop.wait(1 / bytes_per_second):
            for sock in list(slow_sockets):
                try:
                    sock.send(b" ")
                except OSError:
                    slow_sockets.remove(sock)
                    counts["slow"] -= 1

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(5)
        for sock in slow_sockets + idle_sockets:
            sock.close()


def run_slow_clients(
    base_url: str,
    *,
    token: str,
    session_id: str,
    slow: int = 100,
    idle: int = 100,
    reads: int = 20,
    read_timeout: float = 5.0,
    settle: float = 1.0,
) -> dict[str, float]:
    """Read the status ``reads`` times at ``base_url`` while the slow and idle connections
    are held. Returns latencies in ms (p50, max, of the reads that answered 200), the counts
    of reads that answered 200 and that failed (another status, an error or a timeout), and
    how many slow and idle connections were still held at the end."""
    headers = {"Authorization": f"Token {token}", "Marimo-Session-Id": session_id}
    latencies: list[float] = []
    failed = 0
    with held_connections(base_url, slow, idle) as counts:
        time.sleep(settle)  # the server has seen every connection, and some body bytes
        with httpx.Client(timeout=read_timeout) as client:
            for _ in range(reads):
                started = time.perf_counter()
                try:
                    response = client.get(base_url + STATUS_PATH, headers=headers)
                except httpx.HTTPError:
                    failed += 1
                    continue
                if response.status_code == 200 and "state" in response.json():
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failed += 1
        held = dict(counts)
    return {
        "ok": float(len(latencies)),
        "failed": float(failed),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "max_ms": max(latencies) if latencies else float("nan"),
        "slow_held": float(held["slow"]),
        "idle_held": float(held["idle"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="+", help="base URLs to measure, one after the other")
    parser.add_argument("--token", required=True, help="an API token that can read the session")
    parser.add_argument("--session-id", required=True)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument("--read-timeout", type=float, default=5.0)
    args = parser.parse_args()
    for url in args.urls:
        figures = run_slow_clients(
            url,
            token=args.token,
            session_id=args.session_id,
            slow=args.slow,
            idle=args.idle,
            reads=args.reads,
            read_timeout=args.read_timeout,
        )
        print(json.dumps({"url": url, **figures}))


if __name__ == "__main__":
    main()
