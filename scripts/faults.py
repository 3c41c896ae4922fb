"""Fault injection: what the recommended deployment answers when its PostgreSQL misbehaves.

It creates a PostgreSQL instance of its own (``initdb`` into a temporary directory, on a free
port; as the ``postgres`` OS user when run as root, since initdb refuses root), migrates it,
seeds a session and a reporter's token, and serves the example project's production settings
(``scripts/faults_settings.py``) with gunicorn gthread workers, and uvicorn for a blocking
read. Then the scenarios:

- ``freeze``: every process of the instance stopped (``SIGSTOP``: the postmaster and its
  backends). 20 reads (the status and the listing) and 10 POSTs at once, and a blocking read
  under uvicorn: each must be a 503 JSON with ``Retry-After`` within the bound
  (``KERNEL_STATUS_QUERY_DEADLINE``, or the connect timeout if longer, plus 1 s); after
  ``SIGCONT`` the server must answer 200 again.
- ``restart``: ``pg_ctl restart -m fast`` while readers and writers run: every answer a 200,
  or a 503 with ``Retry-After``, none slower than a second, and 200s again afterwards.
- ``rate-limits``: two gunicorns of two workers each counting in one Redis (a db and a key
  prefix of the suite's own), 8 concurrent clients sending each limit three times its rate:
  each limit lets its rate through, within 5%.
- ``refuse``: the instance stopped: 503 with ``Retry-After`` within the connect timeout.

It prints each scenario's figures (answers by status, the slowest, the bound) and exits 1
if any claim fails. ``--short`` (what ``make test`` runs) uses a 1 s statement timeout and
smaller counts; the default uses the production default of 5 s.

    python scripts/faults.py [--short] [--only freeze,restart] [--redis-url redis://...]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # project.deploy and scripts.slow_clients, when run as a file
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SESSION_ID = "faults-1"
STATUS = "/api/kernel/status"
LISTING = "/api/kernel/sessions"
EVENTS = "/api/kernel/events"
BUSY_DETAIL = "The database is busy; retry shortly."


@dataclass
class Answer:
    status: int  # 0: no HTTP answer at all (connection refused, reset, timed out)
    headers: dict[str, str]
    body: bytes
    seconds: float
    what: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Result:
    name: str
    figures: dict[str, object] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, claim: str) -> None:
        if not ok:
            self.failures.append(claim)


@dataclass(frozen=True)
class Config:
    short: bool
    statement_timeout_ms: int
    connect_timeout: int
    deadline: float
    cooldown: float | None
    redis_url: str
    workers: int
    threads: int

    @property
    def bound(self) -> float:
        """What docs/deployment.md promises: the deadline (or the connect timeout, if
        longer) plus a second."""
        deadline = self.deadline or self.statement_timeout_ms / 1000
        return max(deadline, self.connect_timeout) + 1.0


# --- HTTP --------------------------------------------------------------------------------------


def request(
    base_url: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
    timeout: float = 60,
    what: str = "",
) -> Answer:
    host, port = base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        content = response.read()
        return Answer(
            response.status,
            dict(response.getheaders()),
            content,
            time.monotonic() - started,
            what,
        )
    except OSError as error:
        return Answer(0, {}, repr(error).encode(), time.monotonic() - started, what)
    finally:
        conn.close()


class Client:
    """Requests as the seeded reporter, through what a TLS proxy would add."""

    def __init__(self, token: str) -> None:
        self.headers = {
            "Authorization": f"Token {token}",
            "Marimo-Session-Id": SESSION_ID,
            "X-Forwarded-Proto": "https",
            "Content-Type": "application/json",
        }

    def status(self, base_url: str, **extra: str) -> Answer:
        return request(base_url, "GET", STATUS, self.headers | extra, what="status")

    def listing(self, base_url: str) -> Answer:
        return request(base_url, "GET", LISTING, self.headers, what="listing")

    def post(self, base_url: str) -> Answer:
        body = {"events": [{"op": "kernel-heartbeat", "data": {"timestamp": time.time()}}]}
        return request(
            base_url, "POST", EVENTS, self.headers, json.dumps(body).encode(), what="post"
        )


def is_busy(answer: Answer) -> bool:
    """A 503 JSON saying the database is busy, with Retry-After."""
    body = answer.json()
    return (
        answer.status == 503
        and answer.headers.get("Retry-After", "").isdigit()
        and isinstance(body, dict)
        and body.get("detail") == BUSY_DETAIL
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# --- The PostgreSQL instance -------------------------------------------------------------------


class Instance:
    """A PostgreSQL instance of the suite's own, in a temporary directory."""

    def __init__(self, root: Path, pg_bin: Path) -> None:
        self.pg_bin = pg_bin
        self.datadir = root / "data"
        self.log = root / "postgresql.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(root, "postgres")
        self._run(str(pg_bin / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres")
        self.start()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/kernel_status"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run(
            [*prefix, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def _ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.pg_bin / "pg_ctl"),
            *("-D", str(self.datadir), "-l", str(self.log), "-o", options, "-w", "-t", "60"),
            *args,
        )

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def pids(self) -> list[int]:
        """The postmaster and every process it forked (backends, checkpointer, ...)."""
        postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
        return [postmaster, *children]

    def signal_all(self, signum: int) -> int:
        pids = self.pids()
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)
        return len(pids)

    def create_database(self) -> None:
        self._run(
            str(self.pg_bin / "psql"),
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q"),
            *("-c", "CREATE DATABASE kernel_status"),
        )

    def destroy(self) -> None:
        try:
            self.signal_all(signal.SIGCONT)
            self._ctl("stop", "-m", "immediate")
        except (OSError, subprocess.CalledProcessError):
            pass


# --- The servers -------------------------------------------------------------------------------


def server_env(config: Config, database_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "KERNEL_STATUS_"))},
        "DJANGO_SETTINGS_MODULE": "scripts.faults_settings",
        "DJANGO_SECRET_KEY": "faults-" + os.urandom(32).hex(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_CACHE_KEY_PREFIX": prefix,
        "DATABASE_URL": database_url,
        "DATABASE_STATEMENT_TIMEOUT": str(config.statement_timeout_ms),
        "DATABASE_CONNECT_TIMEOUT": str(config.connect_timeout),
        "KERNEL_STATUS_QUERY_DEADLINE": str(config.deadline),
        "REDIS_URL": config.redis_url,
        **({} if config.cooldown is None else {"KS_FAULTS_COOLDOWN": str(config.cooldown)}),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


@contextmanager
def serve(command: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: process.poll() is not None or accepts(port), 60, f"{command[2]} to listen")
        if process.poll() is not None:
            raise RuntimeError(f"{command[2]} exited with {process.returncode}; see {log}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def gunicorn(config: Config, env: dict[str, str], log: Path, workers: int | None = None) -> Any:
    """The recommended WSGI server (docs/performance.md): gthread workers."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "gunicorn", "project.wsgi:application"),
        *("--worker-class", "gthread", "--threads", str(config.threads)),
        *("--workers", str(workers or config.workers), "--bind", f"127.0.0.1:{port}"),
    ]
    return serve(command, port, env, log)


def uvicorn(env: dict[str, str], log: Path) -> Any:
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "project.asgi:application"),
        *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--no-access-log"),
    ]
    return serve(command, port, env, log)


SEED = f"""
import json, django
django.setup()
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
from kernel_status import mirror
user = User.objects.create_user("faults")
user.user_permissions.add(Permission.objects.get(codename="report_kernel_events"))
user.user_permissions.add(Permission.objects.get(codename="view_all_sessions"))
mirror.register_session({SESSION_ID!r}, owner=user, notebook="faults.py")
print(json.dumps({{"token": Token.objects.create(user=user).key}}))
"""


def manage(env: dict[str, str], *args: str) -> str:
    run = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{run.stdout}\n{run.stderr}")
    return run.stdout


# --- The scenarios -----------------------------------------------------------------------------


@dataclass
class Context:
    config: Config
    instance: Instance
    client: Client
    wsgi: str  # the gunicorn under test
    asgi: str  # uvicorn, for the blocking read
    env: dict[str, str]
    logs: Path


def latency_figures(result: Result, answers: list[Answer]) -> None:
    result.figures["answers"] = dict(sorted(Counter(a.status for a in answers).items()))
    result.figures["slowest_s"] = round(max((a.seconds for a in answers), default=0.0), 3)
    kinds = sorted({a.what for a in answers})
    result.figures["slowest_by_request_s"] = {
        kind: round(max(a.seconds for a in answers if a.what == kind), 3) for kind in kinds
    }


def until_healthy(ctx: Context, timeout: float = 30) -> float:
    """Seconds until the status read answers 200 again."""
    started = time.monotonic()
    wait_for(lambda: ctx.client.status(ctx.wsgi).status == 200, timeout, "a 200 again")
    return round(time.monotonic() - started, 3)


def wait(ctx: Context) -> Answer:
    """A blocking read under uvicorn (its reads run on the reader threads)."""
    answer = ctx.client.status(ctx.asgi, **{"If-None-Match": '"x"', "Prefer": "wait=30"})
    answer.what = "wait"
    return answer


def freeze(ctx: Context) -> Result:
    result = Result("freeze")
    bound = ctx.config.bound
    # Every thread of every worker with a connection first (the freeze's worst case: each
    # one blocks on an open connection, where only the deadline helps).
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda _: ctx.client.status(ctx.wsgi), range(64)))
    stopped = ctx.instance.signal_all(signal.SIGSTOP)
    try:
        calls: list[Callable[[], Answer]] = [
            *(
                (lambda: ctx.client.status(ctx.wsgi))
                if n % 2 == 0
                else (lambda: ctx.client.listing(ctx.wsgi))
                for n in range(20)
            ),
            *((lambda: ctx.client.post(ctx.wsgi)) for _ in range(10)),
            lambda: wait(ctx),
        ]
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            answers = list(pool.map(lambda call: call(), calls))
        # Still frozen: the next read is shed at once (the breaker), no thread waits.
        later = ctx.client.status(ctx.wsgi)
    finally:
        ctx.instance.signal_all(signal.SIGCONT)
    latency_figures(result, answers)
    by_kind = Counter(a.what for a in answers)
    result.figures |= {
        "processes_stopped": stopped,
        "requests": dict(by_kind),
        "bound_s": bound,
        "next_read_while_frozen_s": round(later.seconds, 3),
        "healthy_after_sigcont_s": until_healthy(ctx),
    }
    for answer in answers:
        result.check(is_busy(answer), f"{answer.what}: 503 with Retry-After, got {answer.status}")
        result.check(answer.seconds <= bound, f"{answer.what}: {answer.seconds:.2f} s > {bound} s")
    result.check(is_busy(later), f"a read while frozen: 503, got {later.status}")
    return result


def restart(ctx: Context) -> Result:
    result = Result("restart")
    answers: list[Answer] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(kind: int) -> None:
        while not stop.is_set():
            answer = ctx.client.post(ctx.wsgi) if kind % 3 == 2 else ctx.client.status(ctx.wsgi)
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    started = time.monotonic()
    ctx.instance.restart()
    restart_s = time.monotonic() - started
    time.sleep(3.0 if ctx.config.short else 5.0)  # and the load runs on after it
    stop.set()
    for thread in threads:
        thread.join()
    latency_figures(result, answers)
    result.figures["restart_s"] = round(restart_s, 3)
    result.figures["healthy_after_s"] = until_healthy(ctx)
    bad = [a for a in answers if a.status != 200 and not is_busy(a)]
    slow = [a for a in answers if a.seconds > 1.0]
    result.check(not bad, f"only 200 or 503 with Retry-After: {Counter(a.status for a in bad)}")
    result.check(not slow, f"{len(slow)} requests slower than 1 s")
    result.check(any(a.status == 503 for a in answers), "the restart was seen (a 503)")
    tail = answers[-6:]
    result.check(all(a.status == 200 for a in tail), "200s again after the restart")
    return result


def refuse(ctx: Context) -> Result:
    result = Result("refuse")
    ctx.instance.stop()
    calls: list[Callable[[], Answer]] = [
        *((lambda: ctx.client.status(ctx.wsgi)) for _ in range(10)),
        *((lambda: ctx.client.listing(ctx.wsgi)) for _ in range(5)),
        *((lambda: ctx.client.post(ctx.wsgi)) for _ in range(5)),
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda call: call(), calls))
    bound = float(ctx.config.connect_timeout)
    latency_figures(result, answers)
    result.figures["bound_s"] = bound
    for answer in answers:
        result.check(is_busy(answer), f"{answer.what}: 503 with Retry-After, got {answer.status}")
        result.check(answer.seconds <= bound, f"{answer.what}: {answer.seconds:.2f} s > {bound} s")
    ctx.instance.start()
    result.figures["healthy_after_start_s"] = until_healthy(ctx)
    return result


def rate_limits(ctx: Context) -> Result:
    """Each limit at ``limit``/h, sent three times over from 8 threads to 2 gunicorns of 2
    workers each, counting in one Redis (every limit on at once: each counts only its own
    endpoint's requests, and failed authentications only 401s)."""
    result = Result("rate-limits")
    limit = 20 if ctx.config.short else 60

    def guess(url: str) -> Answer:
        token = os.urandom(20).hex()
        return request(url, "GET", STATUS, ctx.client.headers | {"Authorization": f"Token {token}"})

    scopes: list[tuple[str, Callable[[str], Answer], int]] = [
        ("status", ctx.client.status, 200),
        ("events", ctx.client.post, 200),
        ("sessions", ctx.client.listing, 200),
        ("failed_auth", guess, 401),  # last: the guesses do not block the good token
    ]
    rates = {f"kernel_status.{scope}": f"{limit}/h" for scope, _, _ in scopes}
    prefix = f"ks-faults-{os.getpid()}-rates-{os.urandom(3).hex()}"
    env = server_env(
        ctx.config, ctx.instance.url, prefix, KS_FAULTS_THROTTLE_RATES=json.dumps(rates)
    )
    with ExitStack() as stack:
        servers = [
            stack.enter_context(gunicorn(ctx.config, env, ctx.logs / f"rates-{n}.log", 2))
            for n in range(2)
        ]
        for scope, send, passing in scopes:
            with ThreadPoolExecutor(max_workers=8) as pool:
                urls = [servers[n % 2] for n in range(3 * limit)]
                answers = list(pool.map(send, urls))
            passed = Counter(a.status for a in answers)[passing]
            throttled = [a for a in answers if a.status == 429]
            result.figures[scope] = f"{passed} of {limit} passed, {len(throttled)} got 429"
            result.check(
                abs(passed - limit) <= 0.05 * limit,
                f"{scope}: {passed} passed, limit {limit} ±5%",
            )
            result.check(
                all(a.headers.get("Retry-After", "").isdigit() for a in throttled),
                f"{scope}: every 429 has Retry-After",
            )
            others = {a.status for a in answers} - {passing, 429}
            result.check(not others, f"{scope}: unexpected answers {sorted(others)}")
    return result


def slow_clients(ctx: Context) -> Result:
    """The recommended deployment's front: nginx before gunicorn and uvicorn, with 100
    slow-body and 100 idle connections held while the status is read (docs/deployment.md)."""
    from project.deploy import nginx_running
    from scripts.slow_clients import run_slow_clients

    port = free_port()
    wsgi, asgi = (url.removeprefix("http://") for url in (ctx.wsgi, ctx.asgi))
    # nginx stands in for the TLS proxy that the production settings expect.
    with nginx_running(ctx.logs / "nginx", port, wsgi, asgi, forwarded_proto="https"):
        wait_for(lambda: accepts(port), 30, "nginx to listen")
        figures = run_slow_clients(
            f"http://127.0.0.1:{port}",
            token=ctx.client.headers["Authorization"].removeprefix("Token "),
            session_id=SESSION_ID,
            reads=10 if ctx.config.short else 20,
        )
    result = from_figures("slow-clients", figures)
    result.check(figures["failed"] == 0, f"{figures['failed']:.0f} status reads failed")
    result.check(figures["p50_ms"] <= 100, f"status reads took {figures['p50_ms']} ms (p50)")
    return result


# The scenarios in the order they run. A scenario takes the context and returns its Result;
# `refuse` stops the instance: keep it last.
SCENARIOS: list[tuple[str, Callable[[Context], Result]]] = [
    ("freeze", freeze),
    ("restart", restart),
    ("rate-limits", rate_limits),
    ("slow-clients", slow_clients),
    ("refuse", refuse),
]


def from_figures(name: str, figures: dict[str, float]) -> Result:
    """A scenario that only measures (its own function checks its claims and raises)."""
    return Result(name, dict(figures))


# --- The run -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the short version (make test)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios: " + ", ".join(n for n, _ in SCENARIOS),
    )
    parser.add_argument("--pg-bin", type=Path, default=PG_BIN, help="initdb, pg_ctl and psql")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("KS_FAULTS_REDIS_URL", "redis://127.0.0.1:6379/13"),
        help="the Redis db of the rate-limit scenario (keys under a prefix of each run's own)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="KERNEL_STATUS_QUERY_DEADLINE (0: off, to measure without it); default: the "
        "statement timeout plus 0.5 s",
    )
    parser.add_argument(
        "--cooldown",
        type=float,
        default=None,
        help="KERNEL_STATUS_DATABASE_COOLDOWN (0: no breaker, to measure without it)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    statement_timeout_ms = 1000 if args.short else 5000
    config = Config(
        short=args.short,
        statement_timeout_ms=statement_timeout_ms,
        connect_timeout=2 if args.short else 5,  # libpq's smallest; the production default
        # As project/settings.py derives it.
        deadline=statement_timeout_ms / 1000 + 0.5 if args.deadline is None else args.deadline,
        cooldown=args.cooldown,
        redis_url=args.redis_url,
        workers=2,
        threads=4,
    )
    chosen = [name for name in args.only.split(",") if name] or [n for n, _ in SCENARIOS]
    unknown = set(chosen) - {n for n, _ in SCENARIOS}
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="ks-faults-"))
    instance: Instance | None = None
    results: list[Result] = []
    try:
        instance = Instance(root, args.pg_bin)
        instance.create_database()
        prefix = f"ks-faults-{os.getpid()}-{os.urandom(3).hex()}"
        env = server_env(config, instance.url, prefix)
        manage(env, "manage.py", "migrate", "--noinput")
        token = json.loads(manage(env, "-c", SEED).strip().splitlines()[-1])["token"]
        print(
            f"PostgreSQL {instance.port}, statement timeout {statement_timeout_ms} ms, "
            f"connect timeout {config.connect_timeout} s, deadline {config.deadline} s, "
            f"gunicorn gthread {config.workers} workers x {config.threads} threads"
        )
        with (
            gunicorn(config, env, root / "gunicorn.log") as wsgi,
            uvicorn(env, root / "uvicorn.log") as asgi,
        ):
            ctx = Context(config, instance, Client(token), wsgi, asgi, env, root)
            assert ctx.client.status(wsgi).status == 200, "the server does not answer 200"
            for name, scenario in SCENARIOS:
                if name not in chosen:
                    continue
                started = time.monotonic()
                try:
                    result = scenario(ctx)
                except Exception as error:  # a scenario that could not run fails, with why
                    result = Result(name, failures=[f"did not run to the end: {error!r}"])
                result.figures["took_s"] = round(time.monotonic() - started, 1)
                results.append(result)
                report(result)
    finally:
        if instance is not None:
            instance.destroy()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    failed = [r.name for r in results if r.failures]
    print(
        f"faults: {len(results) - len(failed)} of {len(results)} scenarios held"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed or len(results) < len(chosen) else 0


def report(result: Result) -> None:
    verdict = "FAILED" if result.failures else "held"
    print(f"{result.name}: {verdict}")
    for key, value in result.figures.items():
        print(f"  {key}: {value}")
    for failure in dict.fromkeys(result.failures):
        print(f"  FAILED: {failure}")


if __name__ == "__main__":
    sys.exit(main())
