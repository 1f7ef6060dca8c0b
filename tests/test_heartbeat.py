"""Heartbeat leases (``domain.leases``, ``integrations.heartbeat``): renewed while their work
runs, running out when it stops being renewed, given back at once on a clean stop, and nothing
renewed while nothing is held. And the outbox publisher's round, held by one instance at a time,
publishing what another instance committed while its own round was refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.distribution.models import TaskKind, TaskState, WarehouseTask
from domain.events import record_event
from domain.events.models import Event
from domain.leases import NamedLease, RowLeases
from integrations.bus.publisher import ROUND, OutboxPublisher
from integrations.heartbeat import Heartbeat, LeaseLapsed
from tests.conftest import MakeMember
from tests.support.distribution import eventually
from tests.support.server import RunningServer
from tests.test_outbox import _probe


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def test_a_held_lease_is_renewed_while_its_work_runs_then_runs_out(
    server: RunningServer,
) -> None:
    name = _name()
    holder, other = NamedLease(name, "holder"), NamedLease(name, "other")
    heartbeat = Heartbeat(holder, seconds=0.3)
    assert await holder.take_until(heartbeat.until())
    async with heartbeat.holding():
        for _ in range(4):  # three leases long: renewed all along
            await asyncio.sleep(0.25)
            assert not await other.take_until(datetime.now(UTC) + timedelta(seconds=1))
    assert heartbeat.renewals >= 2
    # the work ended without giving the lease back (a crash): it runs out within one lease
    await asyncio.sleep(0.35)
    assert await other.take_until(datetime.now(UTC) + timedelta(seconds=1))


async def test_a_closed_heartbeat_gives_the_lease_back_at_once(server: RunningServer) -> None:
    name = _name()
    holder, other = NamedLease(name, "holder"), NamedLease(name, "other")
    heartbeat = Heartbeat(holder, seconds=60)
    assert await holder.take_until(heartbeat.until())
    assert not await other.take_until(datetime.now(UTC) + timedelta(seconds=1))
    assert await heartbeat.close() == 1
    assert await other.take_until(datetime.now(UTC) + timedelta(seconds=1))


async def test_an_idle_heartbeat_renews_nothing(server: RunningServer) -> None:
    heartbeat = Heartbeat(NamedLease(_name(), "holder"), seconds=0.03)
    await asyncio.sleep(0.1)
    assert heartbeat.renewals == 0
    async with heartbeat.holding():
        await asyncio.sleep(0.05)
    renewed = heartbeat.renewals
    assert renewed >= 1
    await asyncio.sleep(0.1)
    assert heartbeat.renewals == renewed  # the work ended: the beat stopped


async def test_row_leases_renew_and_give_back_only_the_owners_rows_in_work(
    server: RunningServer,
) -> None:
    later = datetime.now(UTC) + timedelta(days=1)  # never due: no worker takes them
    lease_end = datetime.now(UTC) + timedelta(seconds=5)

    async def task(owner: str, state: TaskState = TaskState.PENDING) -> WarehouseTask:
        return await WarehouseTask.create(
            kind=TaskKind.PUSH_ORDER,
            third_party_warehouse_id=None,
            due_at=later,
            state=state,
            lease_owner=owner,
            lease_until=lease_end,
        )

    mine, theirs = await task("a"), await task("b")
    finished = await task("a", TaskState.DONE)
    leases = RowLeases("tasks", WarehouseTask, "a", held={"state": TaskState.PENDING})
    until = datetime.now(UTC) + timedelta(seconds=60)
    assert await leases.renew(until) == 1
    rows = {t.id: t for t in await WarehouseTask.filter(id__in=[mine.id, theirs.id, finished.id])}
    assert rows[mine.id].lease_until == until
    assert rows[theirs.id].lease_until == rows[finished.id].lease_until == lease_end
    assert await leases.release() == 1
    await mine.refresh_from_db()
    await theirs.refresh_from_db()
    assert (mine.lease_owner, mine.lease_until) == (None, None)
    assert theirs.lease_owner == "b"
    await WarehouseTask.filter(id__in=[mine.id, theirs.id, finished.id]).delete()


async def test_one_instance_publishes_and_finds_what_a_refused_round_left(
    server: RunningServer, make_member: MakeMember
) -> None:
    member = await make_member()
    await server.app.state.publisher.stop()  # two instances sharing a channel, below
    broadcast = server.app.state.broadcast
    holder = OutboxPublisher(broadcast, poll_interval=3600, retry_interval=1, exclusive=True)
    refused = OutboxPublisher(broadcast, poll_interval=3600, retry_interval=1, exclusive=True)
    assert await eventually(holder._lease.take, lambda taken: taken, timeout=5)
    try:
        probe = _probe("Probe", f"refused-{uuid.uuid4().hex[:6]}", [member.organisation_id])
        await record_event(probe)  # committed by the instance whose round is refused
        assert await refused.flush() == 0
        assert refused.refused_until is not None and refused.refused_until > datetime.now(UTC)
        [event] = await Event.filter(subject_id=probe.subject_id)
        assert event.published_at is None
        # the holder's round publishes it, gives the round back and finds nothing more
        assert await holder.flush() >= 1
        await event.refresh_from_db()
        assert event.published_at is not None
        assert (await NamedLease(ROUND, "probe").held_until()) is None
        assert await refused.flush() == 0  # nothing left, and the round is free again
        assert refused.refused_until is None
    finally:
        await holder.heartbeat.close()
        await refused.heartbeat.close()


async def test_instances_with_a_broadcast_of_their_own_each_publish(
    server: RunningServer, make_member: MakeMember
) -> None:
    """In-memory broadcasts reach their own process only: no round is refused."""
    member = await make_member()
    await server.app.state.publisher.stop()
    broadcast = server.app.state.broadcast
    holder = OutboxPublisher(broadcast, poll_interval=3600, retry_interval=1, exclusive=True)
    alone = OutboxPublisher(broadcast, poll_interval=3600, retry_interval=1, exclusive=False)
    assert await eventually(holder._lease.take, lambda taken: taken, timeout=5)
    try:
        await record_event(_probe("Probe", "alone", [member.organisation_id]))
        assert await alone.flush() >= 1
    finally:
        await holder.heartbeat.close()


async def test_work_claimed_before_a_hang_longer_than_the_lease_is_no_longer_held(
    server: RunningServer,
) -> None:
    heartbeat = Heartbeat(NamedLease(_name(), "holder"), seconds=0.3)
    async with heartbeat.holding():
        claimed = time.monotonic()
        await asyncio.sleep(0.35)  # renewed meanwhile: still held
        assert heartbeat.still_held(claimed)
        time.sleep(0.4)  # noqa: ASYNC251 - the process hangs: nothing runs, nothing renews
        assert not heartbeat.still_held(claimed)
        with pytest.raises(LeaseLapsed):
            heartbeat.check(claimed)
        await asyncio.sleep(0.15)  # the beat runs again, notices the lapse and renews
        assert not heartbeat.still_held(claimed)  # work from before the hang stays lost
        assert heartbeat.still_held(time.monotonic())  # work claimed after it is held
