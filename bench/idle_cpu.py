"""Idle CPU: what the served instance spends on a CPU while nobody uses it (issue 20).

The run's served instance (``ctx.app_server()``: ``python main.py serve`` as ``make run``
starts it) first gets a little traffic, so that everything that starts with use has started:
orders pages, and store webhooks, which wake the store inbox, the outbox publisher and the event
hub. Then the traffic stops, and once the inbox has taken every webhook in and the outbox is
published (``/metrics``) the server's CPU time (every thread of its process tree,
``bench.common.cpu_ns``) is read over an idle window of ``WINDOW`` seconds (``--quick``:
``QUICK_WINDOW``). Value: ms of CPU per second of wall time; target at most ``TARGET`` (before
issue 20 about 4.7: every background loop looked for work every second or two, and uvicorn's
main loop woke ten times a second). Beside it, how often a thread of the server was put on a
CPU per second (``/proc/<pid>/task/<tid>/schedstat``, third field).

Idle means no work, not only no traffic: a window in which the instance recorded an event (read
from the database by this process, which costs the server nothing) did work, and does not
count. So the window opens ``SETTLE`` seconds after the last event and starts again if one
comes: by then the instance has settled (its SLA worker has swept once more, found nothing,
and sleeps until the next deadline or ten intervals), and ``idle_cpu.settling`` is what it
spent settling. The window spans the safety sweep interval (``WORK_SWEEP_SECONDS``, 30 s; twice
that in a full run), so the wake-ups' sweep (one statement for every background loop on
PostgreSQL) counts at the rate an idle instance runs it. ``idle_cpu.events`` counts the events
the instance recorded while the bench waited for its window (0: nothing was due), and
``idle_cpu.rounds.<loop>`` the rounds each background loop ran from just before the wait to
just after the window (``/metrics``). (The seeded orders are shipped within the SLA's deadline,
``bench/seed.py``, so no breach backlog keeps the instance busy.)

Beside it, the floor of this machine in the same window: ``idle_cpu.floor``, the CPU time of a
process that does nothing but wake its event loop (uvloop) once a second, as the instance's
main loop does for uvicorn's tick, run on the server's core (``FLOOR``). Virtual machines can
charge a sleeping process for time it did not use: on one (2026-12-07) such a process was
charged 1.2-4 ms/s, and a plain ``time.sleep(10)`` 14 ms, where on the machine of the day
before a wake-up of an idle loop cost about 0.13 ms (``compat/uvicorn.py``).
``idle_cpu.above_floor`` is the instance's figure less the floor's.

What still wakes an idle instance: uvicorn's tick once a second (``compat/uvicorn.py``), the
event hub's safety check (``EVENT_RESYNC_INTERVAL``, one written-out statement), Redis' PING
every 15 s, the wake-ups' sweep (``WORK_SWEEP_SECONDS``), warehouse reconciliation every
minute, and the SLA sweep at the next deadline or every ten ``SLA_SWEEP_INTERVAL`` (not inside
a 30 s window: about 0.1 ms/s over time, a sweep and the read of the next deadline costing
some 30 ms of CPU on the bench's database).

    .venv/bin/python bench/runner.py --quick --only idle_cpu
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlparse

from bench.common import (
    RawConnection,
    Row,
    cpu_ns,
    make_req,
    measure,
    pinned,
    progress,
    schedstat_sum,
)
from bench.context import METRICS_TOKEN, BenchContext
from bench.database import asyncpg_url, is_postgres
from bench.live_subscribers import process_tree
from bench.orders_page import page_request
from bench.webhook_ingest import StoreOrderWebhooks

NAME = "idle_cpu"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = True
TARGET = 1.0  # ms of CPU per second, idle
WINDOW, QUICK_WINDOW = 60.0, 30.0  # multiples of the sweep interval (WORK_SWEEP_SECONDS, 30 s)
# seconds after the instance's last event before a window opens: the instance settles first
# (its SLA worker sweeps once more, every SLA_SWEEP_INTERVAL = 30 s, finds nothing and sleeps
# until the next deadline); what it spends meanwhile is ``idle_cpu.settling``
SETTLE = 35.0
STEP = 0.5  # seconds between looks at the outbox and the server's CPU
GIVE_UP_AFTER = 300.0  # seconds of waiting for an idle window
TRAFFIC = 1.0  # seconds of each kind of traffic before the idle window
DRAINED_WITHIN = 120.0
# the floor: an event loop woken once a second and nothing else, until stdin closes
FLOOR = """
import asyncio, sys, uvloop
async def main():
    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: closed.done() or closed.set_result(None))
    while not closed.done():
        await asyncio.wait([closed], timeout=1.0)
uvloop.run(main())
"""
ROUNDS = rb'^supplygraph_background_rounds_total\{loop="([^"]+)"\} (\S+)$'
WAITING = ("supplygraph_store_inbox_pending", "supplygraph_outbox_unpublished_events")


def run_slices(pids: Sequence[int]) -> int:
    """How many times these processes' threads have been put on a CPU (schedstat's third
    field, summed as ``cpu_ns`` sums the first)."""
    return schedstat_sum(pids, 2)


async def _metrics(host: str, port: int) -> bytes:
    conn = RawConnection(host, port)
    try:
        status, body = await conn.send(
            make_req("GET", "/metrics", {"authorization": f"Bearer {METRICS_TOKEN}"})
        )
    finally:
        await conn.close()
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return body


async def background_rounds(host: str, port: int) -> dict[str, float]:
    """Each background loop's rounds so far (``supplygraph_background_rounds_total``)."""
    body = await _metrics(host, port)
    found = re.findall(ROUNDS, body, re.M)
    return {name.decode(): float(value) for name, value in found}


async def _waiting(host: str, port: int) -> float:
    """Webhooks not taken in plus events not published, from ``/metrics``."""
    body = await _metrics(host, port)
    total = 0.0
    for name in WAITING:
        found = re.search(rb"^" + name.encode() + rb" (\S+)$", body, re.M)
        if found is None:
            raise RuntimeError(f"/metrics has no {name}")
        total += float(found.group(1))
    return total


class Outbox:
    """The newest event id, read from the run's database by this process."""

    SQL = "SELECT COALESCE(MAX(id), 0) FROM event"

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self._pg: Any = None

    async def __aenter__(self) -> Outbox:
        if is_postgres(self.url):
            import asyncpg

            self._pg = await asyncpg.connect(asyncpg_url(self.url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pg is not None:
            await self._pg.close()

    async def last(self) -> int:
        if self._pg is not None:
            return int(await self._pg.fetchval(self.SQL))
        return await asyncio.to_thread(self._sqlite_last)

    def _sqlite_last(self) -> int:
        with contextlib.closing(sqlite3.connect(urlparse(self.url).path)) as db:
            return int(db.execute(self.SQL).fetchone()[0])


@dataclass(frozen=True)
class Sample:
    at: float
    cpu: int
    slices: int
    event: int
    floor: int  # the floor process's CPU


async def _sample(pids: Sequence[int], outbox: Outbox, floor: int) -> Sample:
    event = await outbox.last()
    return Sample(time.perf_counter(), cpu_ns(pids), run_slices(pids), event, cpu_ns([floor]))


@contextlib.asynccontextmanager
async def floor_process() -> AsyncIterator[int]:
    """The floor (``FLOOR``) running on the server's core, for as long as the block; its pid."""
    process = await asyncio.create_subprocess_exec(
        *pinned([sys.executable, "-c", FLOOR]), stdin=asyncio.subprocess.PIPE
    )
    try:
        yield process.pid
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=5)
        except TimeoutError:
            process.kill()
            await process.wait()


async def idle_window(
    pids: Sequence[int], outbox: Outbox, window: float, floor: int
) -> tuple[Sample, Sample, Sample, int]:
    """The first span of ``window`` seconds without an event, opened ``SETTLE`` seconds after
    the last one (or the longest such span before ``GIVE_UP_AFTER``); the sample at the last
    event before it (where settling began); and the events recorded while waiting for it."""
    first = await _sample(pids, outbox, floor)
    opened: Sample | None = None  # the work just done settles for SETTLE seconds first
    longest: tuple[Sample, Sample, Sample] | None = None
    quiet_from = first
    last = first
    while last.at - first.at < GIVE_UP_AFTER:
        await asyncio.sleep(STEP)
        now = await _sample(pids, outbox, floor)
        if now.event != last.event:  # the instance did work: no window spans it
            if opened is not None and (longest is None or last.at - opened.at > _span(longest)):
                longest = (opened, last, quiet_from)
            opened, quiet_from = None, now
        elif opened is None and now.at - quiet_from.at >= SETTLE:
            opened = now
        last = now
        if opened is not None and last.at - opened.at >= window:
            return opened, last, quiet_from, last.event - first.event
    if opened is not None and (longest is None or last.at - opened.at > _span(longest)):
        longest = (opened, last, quiet_from)
    if longest is None or _span(longest) <= 0:
        raise RuntimeError(f"{NAME}: the instance never stopped recording events")
    return longest[0], longest[1], longest[2], last.event - first.event


def _span(span: tuple[Sample, Sample, Sample]) -> float:
    return span[1].at - span[0].at


async def run(ctx: BenchContext) -> list[Row]:
    server = await ctx.app_server()
    assert server.process is not None
    traffic = replace(ctx.load, duration=TRAFFIC, repetitions=1, warmup=0.0)
    pages = page_request(ctx.data.orders_token)
    await measure(f"{NAME} traffic: orders page", server.host, server.port, pages, traffic)
    webhooks = StoreOrderWebhooks(
        f"/webhooks/stores/{ctx.data.webhook_store_id}/orders", ctx.data.webhook_secret
    )
    await measure(f"{NAME} traffic: webhooks", server.host, server.port, webhooks, traffic)
    deadline = time.monotonic() + DRAINED_WITHIN
    while (left := await _waiting(server.host, server.port)) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{NAME}: {left:g} webhooks and events still waiting")
        await asyncio.sleep(0.2)

    window = QUICK_WINDOW if ctx.quick else WINDOW
    pids = process_tree(server.process.pid)
    before = await background_rounds(server.host, server.port)
    async with Outbox(ctx.database_url) as outbox, floor_process() as floor:
        opened, closed, settling_from, events = await idle_window(pids, outbox, window, floor)
    after = await background_rounds(server.host, server.port)
    rounds = {loop: after[loop] - before.get(loop, 0.0) for loop in after}
    elapsed = closed.at - opened.at
    ms_per_s = (closed.cpu - opened.cpu) / 1e6 / elapsed
    wakeups = (closed.slices - opened.slices) / elapsed
    floor_ms = (closed.floor - opened.floor) / 1e6 / elapsed
    settled = opened.at - settling_from.at
    settling = (opened.cpu - settling_from.cpu) / 1e6 / settled
    progress(
        f"  {NAME}: {ms_per_s:.3f} ms of CPU per second over {elapsed:.1f} s idle "
        f"({wakeups:.1f} times on a CPU per second, {len(pids)} process(es)), after "
        f"{settled:.1f} s of settling at {settling:.3f} ms/s; the floor (a loop woken once a "
        f"second) {floor_ms:.3f} ms/s; "
        f"{events} events recorded by the instance while waiting for the window; rounds of "
        f"the background loops meanwhile: "
        + ", ".join(f"{loop} {n:g}" for loop, n in rounds.items())
    )
    return [
        Row(NAME, ms_per_s, "ms/s", target=f"<= {TARGET:g} ms/s", met=ms_per_s <= TARGET),
        Row(f"{NAME}.floor", floor_ms, "ms/s"),
        Row(f"{NAME}.above_floor", ms_per_s - floor_ms, "ms/s"),
        Row(f"{NAME}.wakeups", wakeups, "/s"),
        Row(f"{NAME}.settling", settling, "ms/s"),
        Row(f"{NAME}.events", float(events), "events"),
        *(
            Row(f"{NAME}.rounds.{loop.replace(' ', '_')}", n, "rounds")
            for loop, n in rounds.items()
        ),
    ]
