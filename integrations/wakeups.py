"""What wakes the background loops, in one place.

A background loop (``integrations.background.WakeableLoop``) sleeps until it is woken, until the
work it knows of falls due, or until its safety sweep; it never polls. It subscribes here to the
kinds of work it does (``WorkKind``), and is woken:

- in this process, once a transaction that gave it work commits: the commit-listener topics of
  ``domain.db`` (``COMMIT_TOPICS``), and ``wake`` called by whoever wrote the work outside a
  transaction topic (the store webhook receiver wakes the inbox worker itself);
- on PostgreSQL, by work another process wrote: migration 0015's statement-level triggers
  ``pg_notify('supplygraph_work', kind)`` after writes to the work tables, and
  ``PostgresWakeups`` LISTENs on that channel on one connection of its own.

A served instance's sessions do not notify (``served_config`` marks them, the triggers skip
them): its commits wake its own loops in process, and a NOTIFY in every transaction would
serialise the commits of the whole cluster (see the migration). So work one instance writes is
done by that instance; another takes it up in its sweep, or when a lease of a dead instance runs
out. Everything else that writes (a CLI command, a loader, a benchmark, an operator making a
task due again) wakes every instance.

If the LISTEN connection drops, it is opened again with a doubling delay, and once it is back
every loop is woken for one round (a sweep): notifications sent meanwhile were lost.

On PostgreSQL this is also every loop's safety sweep: every ``check_interval`` seconds one
statement on the LISTEN connection (``domain.persistence.work_waiting``) says which kinds of work
have rows waiting, and only their loops are woken. An idle instance so runs one statement per
sweep instead of a round and a look at what falls due in each loop (a few ORM queries each:
most of an idle instance's CPU), and the loops' own sweeps only back this one up
(``LOOP_SWEEP_BACKUP``). The statement is also the connection's health check: a connection
that dies without a word (a host gone, a cable cut) is noticed by it. SQLite serves one process:
commits there wake in process only, and each loop sweeps for itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

import asyncpg
from tortoise.backends.base.config_generator import expand_db_url

from domain.db import add_commit_listener, remove_commit_listener
from domain.distribution.tasks import TASKS_TOPIC
from domain.orders.tracking import TRACKING_TOPIC
from domain.persistence.work_waiting import waiting_sql
from domain.work_due import WorkKind as WorkKind  # the kinds, named where loops subscribe

log = logging.getLogger(__name__)

WORK_CHANNEL = "supplygraph_work"
# what a served instance's sessions set at connection start, so that the triggers skip them
LOCAL_WAKES = {"supplygraph.wakes": "local"}
EVENTS_TOPIC = "events"  # domain.db's default topic: a transaction recorded an event
CONNECT_TIMEOUT = 10.0
CHECK_TIMEOUT = 10.0
# On PostgreSQL the loops' own safety sweeps come this many sweep intervals apart: the wake-ups'
# sweep (one statement for every loop) comes every interval.
LOOP_SWEEP_BACKUP = 10


COMMIT_TOPICS = {
    EVENTS_TOPIC: WorkKind.OUTBOX,
    TASKS_TOPIC: WorkKind.WAREHOUSE_TASK,
    TRACKING_TOPIC: WorkKind.TRACKING,
}

Wake = Callable[[], None]


def served_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (``domain.db.tortoise_config``) with every PostgreSQL connection marked as a
    served instance's (``LOCAL_WAKES``), for the app's own connections only: other processes
    (the CLI, tests, benchmarks) must notify."""
    for connection in config["connections"].values():
        if isinstance(connection, dict) and "credentials" in connection:
            credentials = connection["credentials"]
            credentials["server_settings"] = {
                **(credentials.get("server_settings") or {}),
                **LOCAL_WAKES,
            }
    return config


class Wakeups:
    """Wakes the subscribers of a kind of work; in process only (SQLite)."""

    def __init__(self) -> None:
        self._subscribers: dict[WorkKind, list[Wake]] = defaultdict(list)
        self._hooks: list[tuple[str, Wake]] = []

    def subscribe(self, kind: WorkKind, wake: Wake) -> None:
        self._subscribers[kind].append(wake)

    def wake(self, kind: str) -> None:
        """Wake the subscribers of ``kind``; every subscriber for a kind this version does not
        know (a newer migration's), so nothing waits for the sweep."""
        try:
            woken = self._subscribers.get(WorkKind(kind), [])
        except ValueError:
            self.wake_all()
            return
        for wake in woken:
            wake()

    def loop_sweep(self, sweep_interval: float) -> float:
        """How far apart a subscribed loop's own safety sweeps come: every ``sweep_interval``,
        as nothing here sweeps for it."""
        return sweep_interval

    def wake_all(self) -> None:
        for subscribers in self._subscribers.values():
            for wake in subscribers:
                wake()

    async def announce(self, kind: WorkKind) -> None:
        """Tell the other processes that work of ``kind`` is free to take now (this one gave
        its leases back as it stops); nothing to tell in one process."""

    async def start(self) -> None:
        for topic, kind in COMMIT_TOPICS.items():
            hook = partial(self.wake, kind)
            add_commit_listener(hook, topic=topic)
            self._hooks.append((topic, hook))

    async def stop(self) -> None:
        for topic, hook in self._hooks:
            remove_commit_listener(hook, topic=topic)
        self._hooks = []


class PostgresWakeups(Wakeups):
    """In process, and from every other process through LISTEN on ``WORK_CHANNEL``."""

    def __init__(
        self,
        database_url: str,
        *,
        check_interval: float,
        tracking_attempts: int,
        min_delay: float = 0.5,
        max_delay: float = 30.0,
    ) -> None:
        """``check_interval``: seconds between sweeps; ``tracking_attempts``: the tracking
        pushes an order may get (``TRACKING_MAX_ATTEMPTS``), for the sweep's statement."""
        super().__init__()
        credentials = expand_db_url(database_url)["credentials"]
        self._connect_args = {
            key: credentials[key]
            for key in ("host", "port", "user", "password", "database", "ssl")
            if credentials.get(key) is not None
        }
        self._check_interval = check_interval
        self._tracking_attempts = tracking_attempts
        self._waiting_sql = waiting_sql()
        self.sweeps = 0  # sweeps run (each one statement)
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()
        self.reconnects = 0  # LISTEN connections opened again after one was lost

    def loop_sweep(self, sweep_interval: float) -> float:
        """This sweeps for every loop: a loop's own sweep only backs it up."""
        return sweep_interval * LOOP_SWEEP_BACKUP

    @property
    def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection while it is open."""
        connection = self._connection
        if connection is None or connection.is_closed():
            return None
        return int(connection.get_server_pid())

    async def start(self) -> None:
        """Listen before the loops' first rounds, so nothing written after them is missed; if
        the database does not answer now, go on (the loops sweep) and keep trying."""
        await super().start()
        self._tried = asyncio.Event()
        self._task = asyncio.create_task(self._supervise(), name="work-wakeups")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT + 1):
                await self._tried.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

    async def _supervise(self) -> None:
        delay = self._min_delay
        missed = False  # notifications may have been sent while nobody listened
        while True:
            try:
                connection = await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning(
                    "work wake-ups: LISTEN %s failed (%s); trying again in %.1f s",
                    WORK_CHANNEL,
                    error,
                    delay,
                )
                self._tried.set()
                missed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay)
                continue
            self._tried.set()
            if missed:
                self.reconnects += 1
                log.info("work wake-ups: listening on %s again; sweeping", WORK_CHANNEL)
                self.wake_all()
            delay, missed = self._min_delay, True
            try:
                await self._watch(connection)
            finally:
                self._connection = None
                with contextlib.suppress(Exception):  # asyncpg aborts it if closing fails
                    await connection.close(timeout=2)
            log.warning("work wake-ups: the LISTEN connection was lost; reconnecting")

    async def _listen(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            **self._connect_args,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": "supplygraph wake-ups"},
        )
        try:
            await connection.add_listener(WORK_CHANNEL, self._notified)
        except BaseException:
            connection.terminate()
            raise
        self._connection = connection
        return connection

    async def announce(self, kind: WorkKind) -> None:
        """One NOTIFY on a connection of its own (the LISTEN connection runs the sweep, and
        this instance's sessions do not notify); a failure is logged: the others' sweeps or
        the leases' ends find the work all the same."""
        try:
            connection = await asyncpg.connect(**self._connect_args, timeout=CONNECT_TIMEOUT)
            try:
                await connection.execute(
                    "SELECT pg_notify($1, $2)", WORK_CHANNEL, kind.value, timeout=CHECK_TIMEOUT
                )
            finally:
                await connection.close(timeout=2)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
            log.warning("work wake-ups: announcing free %s work failed (%s)", kind.value, error)

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self.wake(payload)

    async def _watch(self, connection: asyncpg.Connection) -> None:
        """Sweep every ``check_interval``; return once ``connection`` is lost, or no longer
        answers."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        while not connection.is_closed():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_interval):
                    await lost.wait()
            if lost.is_set() or connection.is_closed():
                return
            try:
                await self._sweep(connection)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
                log.warning("work wake-ups: the LISTEN connection does not answer (%s)", error)
                return

    async def _sweep(self, connection: asyncpg.Connection) -> None:
        """Wake the loops of the kinds of work that have rows waiting."""
        row = await connection.fetchrow(
            self._waiting_sql, self._tracking_attempts, timeout=CHECK_TIMEOUT
        )
        self.sweeps += 1
        for kind, waiting in (row or {}).items():
            if waiting:
                self.wake(kind)


def wakeups_for(database_url: str, *, check_interval: float, tracking_attempts: int) -> Wakeups:
    """PostgreSQL: in process and from other processes, and every loop's sweep; SQLite: in
    process."""
    if database_url.startswith("postgres"):
        return PostgresWakeups(
            database_url, check_interval=check_interval, tracking_attempts=tracking_attempts
        )
    return Wakeups()
