"""Support for fault-injection tests: the deadline a warehouse task must end within, a
warehouse simulator whose answers can be held back after it has acted, a private Redis that
can be killed, a private PostgreSQL cluster, the app as a real ``python main.py serve``
process, and event subscribers that resume from their last event id when their socket breaks.

Nothing here touches the shared PostgreSQL (5432) or Redis (6379): private servers listen on
free ports and keep their files in temporary directories removed on cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integrations.warehouses.protocol import API_PREFIX
from integrations.warehouses.simulator import create_warehouse_simulator
from integrations.warehouses.worker import WorkerSettings
from schema.global_ids import gid
from tests.support.distribution import WAREHOUSE_KEY, WarehouseSim
from tests.support.events import seq_of
from tests.support.graphql_client import EVENTS_SUBSCRIPTION, GraphQLHttp, GraphQLWebSocket
from tests.support.redis_server import RedisServer
from tests.support.server import IDLE_SAFE, free_port, serve

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED_POSTGRES_PORT = 5432

# --- the time a warehouse task may take ---------------------------------------------------------


def task_deadline(worker: WorkerSettings, *, slack: float) -> float:
    """Seconds within which a push or withdraw must end, from the moment it was queued.

    Each of the ``task_attempts`` runs waits at most ``poll_interval`` to be picked up (the
    commit wakes the worker at once; a retry is found by polling), then makes ``retries + 1``
    calls of at most ``timeout`` each with ``backoff * 2**i`` between them, plus up to
    ``backoff`` of jitter. Between runs the task waits ``retry_delay * 2**(n - 1)``. ``slack``
    covers the database work and scheduling.
    """
    calls = (worker.retries + 1) * worker.timeout
    backoffs = sum(worker.backoff * (2**i + 1) for i in range(worker.retries))
    waits = sum(worker.retry_delay * 2 ** (n - 1) for n in range(1, worker.task_attempts))
    return worker.task_attempts * (worker.poll_interval + calls + backoffs) + waits + slack


# --- a warehouse that acts, then keeps its answer back -----------------------------------------


class HeldAnswers:
    """ASGI wrapper of the warehouse simulator: while armed, every API request (``/v1/...``)
    is handled (the warehouse acts and records it), but the answer is held back until
    ``release()``; the caller sees a request in flight whose effect has already happened."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.armed = False
        self.held = 0
        self._released = asyncio.Event()

    def arm(self) -> None:
        self.armed = True
        self._released = asyncio.Event()

    def release(self) -> None:
        """Stop holding: answers held so far are sent (to whoever is still listening)."""
        self.armed = False
        self._released.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.armed or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)

        await self.app(scope, receive, keep)
        self.held += 1
        released = self._released
        await released.wait()
        for message in answer:
            await send(message)


@dataclass
class HeldWarehouse:
    sim: WarehouseSim
    hold: HeldAnswers


async def held_warehouse_simulator() -> AsyncIterator[HeldWarehouse]:
    """The warehouse simulator over real HTTP, wrapped in ``HeldAnswers`` (disarmed)."""
    app = create_warehouse_simulator(api_key=WAREHOUSE_KEY, callback_secret="not-yet-issued")
    hold = HeldAnswers(app)
    try:
        async with serve(hold) as url, httpx.AsyncClient(base_url=url, limits=IDLE_SAFE) as control:
            yield HeldWarehouse(WarehouseSim(url=url, control=control), hold)
    finally:
        hold.release()


# --- a private Redis that can be killed ----------------------------------------------------------


class KillableRedis(RedisServer):
    """A private ``redis-server`` that can also die abruptly (SIGKILL), as on a crash."""

    def kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        self._process = None


# --- a private PostgreSQL cluster ----------------------------------------------------------------


def _postgres_bin_dir() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        found = Path(os.path.realpath(on_path)).parent
        if (found / "initdb").exists():
            return found

    def version(path: str) -> list[int]:
        return [int(part) if part.isdigit() else -1 for part in Path(path).parent.name.split(".")]

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    for candidate in reversed(candidates):
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _run_as() -> tuple[list[str], str | None] | str:
    """The command prefix that runs PostgreSQL as a non-root user (and that user), or why
    that is impossible here."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    if runuser is None:
        return "running as root and `runuser` is not available to drop privileges"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "running as root and there is no `postgres` user to run PostgreSQL as"
    return [runuser, "-u", "postgres", "--"], "postgres"


def postgres_cluster_unavailable() -> str | None:
    """Why a private PostgreSQL cluster cannot be started here (None if it can)."""
    if _postgres_bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    run_as = _run_as()
    return run_as if isinstance(run_as, str) else None


class PostgresCluster:
    """A throw-away PostgreSQL cluster on a free port, in a temporary directory, run as a
    non-root user; ``stop()`` and ``start()`` restart it on the same port."""

    def __init__(self) -> None:
        bin_dir = _postgres_bin_dir()
        run_as = _run_as()
        if bin_dir is None or isinstance(run_as, str):
            raise RuntimeError(postgres_cluster_unavailable())
        self._bin = bin_dir
        self._prefix, user = run_as
        self.port = free_port()
        while self.port == SHARED_POSTGRES_PORT:
            self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="test-pg-"))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.dir.chmod(0o700)
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.running = False
        self.frozen: list[int] = []

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self._prefix, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{self.log_tail()}"
            )

    def init(self) -> None:
        self._run(
            str(self._bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
            " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def _processes(self) -> list[int]:
        """The postmaster of this cluster and its children."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(Path(stat).parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """Stop every process of the cluster (SIGSTOP): connections stay open, nothing answers,
        as with a hung server or a network partition."""
        self.frozen = self._processes()
        for pid in reversed(self.frozen):
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = []

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.thaw()
        if self.running:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the app as a real process ------------------------------------------------------------------


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """``python main.py ARGS`` with ``env`` on top of this process's; its stdout."""
    result = subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class AppProcess:
    """``python main.py serve`` as a child process on a fixed port, logging to a file.

    ``env`` is laid over this process's environment; ``PORT``/``HOST`` are set here, and
    ``REDIS_URL`` is empty (in-memory broadcast) unless ``env`` gives one.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "REDIS_URL": "",
            "LOG_FORMAT": "text",
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def spawn(self) -> None:
        """Start the process (without waiting for it to be ready)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "main.py", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def start(self, timeout: float = 60) -> None:
        """Start and wait until ``/readyz`` answers 200."""
        began = time.monotonic()
        self.spawn()
        assert self.process is not None
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        self.started_in = time.monotonic() - began
                        return
                if self.process.poll() is not None or time.monotonic() - began > timeout:
                    self.kill()
                    raise RuntimeError(f"the app did not start:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases and in-flight calls are abandoned."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 20) -> None:
        if not self.alive:
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return _tail(self.log_path, chars)


# --- subscribers that resume --------------------------------------------------------------------


class ResumingSubscriber:
    """An ``events`` subscription that, when its socket breaks, reconnects (to ``url``, which
    may have changed meanwhile) with ``afterEventId`` = the last event id it received."""

    def __init__(self, name: str, token: str, url: str, *, after: str = gid("Event", 0)) -> None:
        self.name = name
        self.token = token
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each event's arrival
        self.resumed_after: list[str] = []
        self.reconnects = 0
        self._after = after
        self._ws: GraphQLWebSocket | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._progress = asyncio.Event()
        self.failure: BaseException | None = None

    @property
    def last_id(self) -> str:
        return self.events[-1]["id"] if self.events else self._after

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._run(), name=f"subscriber-{self.name}")

    async def _connect(self) -> None:
        ws = await GraphQLWebSocket.connect(self.url, token=self.token)
        try:
            await ws.acknowledged()
            await ws.subscribe(EVENTS_SUBSCRIPTION, {"after": self.last_id})
        except BaseException:
            await ws.close()
            raise
        self._ws = ws

    async def _run(self) -> None:
        try:
            await self._receive_and_resume()
        except BaseException as error:  # kept for ``received`` to raise: never lost silently
            self.failure = error
            self._progress.set()
            raise

    async def _receive_and_resume(self) -> None:
        while not self._closing:
            assert self._ws is not None
            try:
                while True:
                    event = (await self._ws.next_data(timeout=3600))["events"]
                    self.events.append(event)
                    self.arrivals.append(time.monotonic())
                    self._progress.set()
            except websockets.ConnectionClosed:
                pass
            if self._closing:
                return
            while not self._closing:  # the socket broke: resume where we were
                try:
                    self.resumed_after.append(self.last_id)
                    await self._connect()
                    self.reconnects += 1
                    break
                except (OSError, websockets.WebSocketException, TimeoutError):
                    self.resumed_after.pop()
                    await asyncio.sleep(0.2)

    def break_socket(self) -> None:
        """Cut the connection without a closing handshake, as a network failure would."""
        if self._ws is not None:
            self._ws.ws.transport.abort()

    def arrived(self, event_id: str) -> float | None:
        """When the event ``event_id`` (or the first later one) arrived, if it has."""
        for event, at in zip(self.events, self.arrivals, strict=True):
            if seq_of(event["id"]) >= seq_of(event_id):
                return at
        return None

    async def received(self, last_id: str, timeout: float) -> None:
        """Wait until the event ``last_id`` (or a later one) has been received."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.events or seq_of(self.events[-1]["id"]) < seq_of(last_id):
            if self.failure is not None:
                raise AssertionError(f"{self.name} stopped: {self.failure!r}") from self.failure
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: last event {self.last_id}, not {last_id}")
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 0.5))

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def event_history(
    client: GraphQLHttp, token: str, after: str | None = None
) -> list[dict[str, Any]]:
    """Every event of the caller's organisation after ``after``, through the ``events`` query
    (the ground truth a subscriber must match)."""
    query = """query($after: String) { events(first: 200, after: $after) {
      edges { node { id type subjectType subjectId payload } } pageInfo { hasNextPage endCursor } } }"""
    events: list[dict[str, Any]] = []
    cursor = after
    while True:
        page = (await client.data(query, {"after": cursor}, token=token))["events"]
        events.extend(edge["node"] for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return events
        cursor = page["pageInfo"]["endCursor"]
