"""The outbox: events commit with their change, numbering follows commit order."""

from __future__ import annotations

import asyncio

import pytest

from domain.db import transaction
from domain.events import NewEvent, outbox, record_event
from domain.events.catalogue import OrganisationUpdated
from domain.events.models import Event
from tests.conftest import MakeMember
from tests.support.server import RunningServer


def _probe(subject_type: str, subject_id: str, audience: list[int]) -> NewEvent:
    """An event about a made-up subject (the outbox does not care what it is about)."""
    return NewEvent(
        OrganisationUpdated(name="probe", previous_name="probe"),
        subject_type,
        subject_id,
        tuple(audience),
    )


async def test_a_rolled_back_change_leaves_no_event(
    server: RunningServer, make_member: MakeMember
) -> None:
    member = await make_member()
    before = await Event.filter(subject_id="rollback-probe").count()
    with pytest.raises(RuntimeError):
        async with transaction():
            await record_event(_probe("Organisation", "rollback-probe", [member.organisation_id]))
            raise RuntimeError("the change fails after its event was written")
    assert await Event.filter(subject_id="rollback-probe").count() == before


async def test_sequence_follows_commit_order_not_insert_order(
    server: RunningServer, make_member: MakeMember
) -> None:
    """A transaction that inserted first but commits last gets the later number."""
    member = await make_member()
    await server.app.state.publisher.flush()
    slow_inserted = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> None:
        async with transaction():
            await record_event(_probe("Probe", "slow", [member.organisation_id]))
            slow_inserted.set()
            await release.wait()

    async def fast() -> None:
        await slow_inserted.wait()
        async with transaction():
            await record_event(_probe("Probe", "fast", [member.organisation_id]))

    if server.settings.is_sqlite:
        # SQLite has one writer: the second transaction waits for the first. Numbering is
        # still by commit; check the simple case.
        release.set()
        await slow()
        await fast()
    else:
        slow_task = asyncio.create_task(slow())
        await fast()
        await server.app.state.publisher.flush()
        release.set()
        await slow_task
    await server.app.state.publisher.flush()
    rows = {
        e.subject_id: e
        for e in await Event.filter(subject_type="Probe", subject_id__in=["slow", "fast"])
    }
    assert rows["slow"].seq is not None and rows["fast"].seq is not None
    if not server.settings.is_sqlite:
        assert rows["slow"].id < rows["fast"].id  # inserted first...
        assert rows["slow"].seq > rows["fast"].seq  # ...numbered after, because it committed after


async def test_numbering_is_gap_free_under_concurrency(
    server: RunningServer, make_member: MakeMember
) -> None:
    member = await make_member()

    async def write(i: int) -> None:
        async with transaction():
            await record_event(_probe("Burst", str(i), [member.organisation_id]))

    await asyncio.gather(
        *(write(i) for i in range(50)), *(outbox.assign_sequence() for _ in range(10))
    )
    await server.app.state.publisher.flush()
    seqs = sorted(await Event.filter(seq__isnull=False).values_list("seq", flat=True))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert await Event.filter(seq__isnull=True).count() == 0
    assert await Event.filter(published_at__isnull=True).count() == 0


async def test_claims_number_in_one_sequence_with_assignments(
    server: RunningServer, make_member: MakeMember
) -> None:
    """The publisher's claim (one statement on PostgreSQL) and ``assign_sequence`` share one
    lock and one numbering: concurrent with writes and with each other they leave no gap and
    no duplicate, and a claim returns each event with its audience, oldest first."""
    member = await make_member()
    other = await make_member()
    await server.app.state.publisher.flush()

    async def write(i: int) -> None:
        async with transaction():
            await record_event(
                _probe("Claim", str(i), [member.organisation_id, other.organisation_id])
            )

    results = await asyncio.gather(
        *(write(i) for i in range(40)),
        *(outbox.claim_unpublished() for _ in range(5)),
        *(outbox.assign_sequence() for _ in range(5)),
    )
    claims = [r for r in results if isinstance(r, list)]
    claims.append(await outbox.claim_unpublished())
    for claim in claims:  # each oldest first (claims overlap: nothing is marked published yet)
        seqs = [e.seq for e in claim]
        assert seqs == sorted(set(seqs))
    ours = {e.subject_id: e for claim in claims for e in claim if e.subject_type == "Claim"}
    # the server's own publisher, woken by the commits, may have published some meanwhile
    theirs = await Event.filter(subject_type="Claim", published_at__isnull=False).values_list(
        "subject_id", flat=True
    )
    assert set(ours) | set(theirs) == {str(i) for i in range(40)}
    assert ours
    assert all(e.audience == {member.organisation_id, other.organisation_id} for e in ours.values())
    probe = {"name": "probe", "previousName": "probe"}
    assert all(e.payload == probe and e.created_at.tzinfo is not None for e in ours.values())
    await server.app.state.publisher.flush()
    seqs = sorted(await Event.filter(seq__isnull=False).values_list("seq", flat=True))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert await Event.filter(seq__isnull=True).count() == 0
    assert await Event.filter(published_at__isnull=True).count() == 0
