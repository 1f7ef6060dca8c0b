"""The outbox's statements: numbering committed events, claiming what to publish, marking it
published, and building published events from rows.

``assign_sequence`` numbers the committed, unnumbered events in one statement under a lock (an
advisory lock on PostgreSQL; SQLite has one writer), so ``seq`` follows commit order and never
leaves a hole that a later commit could fill. On PostgreSQL ``claim_unpublished`` is the stored
function of migration ``0010_outbox_claim``, which holds the same numbering statement under
the same lock and the read of what is unpublished: change them together.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise import connections

from compat import tortoise as orm
from domain.db import transaction
from domain.events import PublishedEvent
from domain.events.models import Event, EventAudience
from domain.persistence import named_leases
from domain.persistence.dialects import DialectSwitch
from domain.persistence.sql import placeholder
from domain.sla.models import SweepLease

_SEQUENCE_LOCK = 0x5EED_0001
BATCH = 500

_ASSIGN_SQL = """
UPDATE event SET seq = numbered.new_seq
FROM (
    SELECT id, ROW_NUMBER() OVER (ORDER BY id)
           + (SELECT COALESCE(MAX(seq), 0) FROM event) AS new_seq
    FROM event WHERE seq IS NULL ORDER BY id LIMIT {limit}
) AS numbered
WHERE event.id = numbered.id
"""


assign_sequence: DialectSwitch[int] = DialectSwitch("outbox.assign_sequence")


@assign_sequence.postgres
async def _assign_postgres(limit: int = BATCH) -> int:
    """Give the next ``seq`` numbers to committed, unnumbered events, under the advisory lock
    that ``outbox_claim`` takes too. Returns how many."""
    async with transaction():
        conn = connections.get("default")
        await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [_SEQUENCE_LOCK])
        count, _ = await conn.execute_query(_ASSIGN_SQL.format(limit=int(limit)))
    return int(count or 0)


@assign_sequence.other
async def _assign_other(limit: int = BATCH) -> int:
    """SQLite has one writer: the statement alone."""
    async with transaction():
        count, _ = await connections.get("default").execute_query(
            _ASSIGN_SQL.format(limit=int(limit))
        )
    return int(count or 0)


async def with_audience(rows: Sequence[Event]) -> list[PublishedEvent]:
    """Published events of ``rows`` with their audiences (one more statement)."""
    audience: dict[int, set[int]] = {row.id: set() for row in rows}
    if rows:
        pairs = await EventAudience.filter(event_id__in=list(audience)).values_list(
            "event_id", "organisation_id"
        )
        for event_id, org_id in pairs:
            audience[event_id].add(org_id)
    return [published(row, audience[row.id]) for row in rows]


def published(row: Event, audience: Iterable[int]) -> PublishedEvent:
    assert row.seq is not None
    return PublishedEvent(
        seq=row.seq,
        type=row.type,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        payload=row.payload,
        audience=frozenset(audience),
        actor_user_id=row.actor_user_id,
        created_at=row.created_at,
    )


async def unpublished(limit: int = BATCH) -> list[PublishedEvent]:
    """Numbered events not yet put on the broadcast channel, oldest first."""
    rows = (
        await Event.filter(published_at__isnull=True, seq__isnull=False)
        .order_by("seq")
        .limit(limit)
    )
    return await with_audience(rows)


async def any_after(after_seq: int) -> bool:
    """Whether an event is numbered after ``after_seq`` (the hub's safety check, every few
    seconds on every instance: written out, no rows built)."""
    db = orm.connection_of(Event)
    mark = placeholder(str(db.capabilities.dialect), 1)
    _, rows = await db.execute_query(
        f'SELECT 1 FROM "{orm.table(Event)}" WHERE seq > {mark} LIMIT 1', [int(after_seq)]
    )
    return bool(rows)


async def anything_unpublished() -> bool:
    """Whether an event waits to be numbered or published (the publisher's look after it gave
    its round back: written out, two index lookups, no rows built)."""
    table = orm.table(Event)
    _, rows = await orm.connection_of(Event).execute_query(
        f'SELECT 1 WHERE EXISTS (SELECT 1 FROM "{table}" WHERE seq IS NULL) '
        f'OR EXISTS (SELECT 1 FROM "{table}" WHERE published_at IS NULL)'
    )
    return bool(rows)


claim_unpublished: DialectSwitch[list[PublishedEvent]] = DialectSwitch("outbox.claim")


def _claimed(row: Any) -> PublishedEvent:
    """An event of ``outbox_claim``'s (or ``outbox_take_and_claim``'s) rows."""
    return PublishedEvent(
        seq=row["seq"],
        type=row["type"],
        subject_type=row["subject_type"],
        subject_id=row["subject_id"],
        payload=json.loads(row["payload"]),
        audience=frozenset(row["audience"]),
        actor_user_id=row["actor_user_id"],
        created_at=row["created_at"],
    )


@claim_unpublished.postgres
async def _claim_postgres(limit: int = BATCH) -> list[PublishedEvent]:
    """The publisher's round: number up to ``limit`` committed events, then return up to
    ``limit`` numbered events not yet published, oldest first; one statement
    (``outbox_claim``)."""
    _, rows = await connections.get("default").execute_query(
        "SELECT * FROM outbox_claim($1)", [int(limit)]
    )
    return [_claimed(row) for row in rows]


@claim_unpublished.other
async def _claim_other(limit: int = BATCH) -> list[PublishedEvent]:
    await assign_sequence(limit)
    return await unpublished(limit)


mark_published: DialectSwitch[None] = DialectSwitch("outbox.mark_published")


@mark_published.postgres
async def _mark_postgres(seqs: Iterable[int]) -> None:
    """Once per publisher round: written out, not built each time."""
    seqs = list(seqs)
    if seqs:
        await orm.connection_of(Event).execute_query(
            f'UPDATE "{orm.table(Event)}" SET published_at = $1 WHERE seq = ANY($2::bigint[])',
            [datetime.now(UTC), seqs],
        )


@mark_published.other
async def _mark_other(seqs: Iterable[int]) -> None:
    seqs = list(seqs)
    if seqs:
        await Event.filter(seq__in=seqs).update(published_at=datetime.now(UTC))


# --------------------------------------------------------------------------- the round's lease


@dataclass(frozen=True)
class RoundClaim:
    """What taking the publishing round's lease and claiming found: the events claimed if it
    was taken; else until when its holder has it (``held_until``), or that its row does not
    exist yet (``missing``: the caller makes it through ``domain.leases.NamedLease``)."""

    taken: bool
    events: list[PublishedEvent]
    held_until: datetime | None = None
    missing: bool = False


take_and_claim: DialectSwitch[RoundClaim] = DialectSwitch("outbox.take_and_claim")


@take_and_claim.postgres
async def _take_and_claim_postgres(
    *, name: str, holder: str, until: datetime, now: datetime, limit: int = BATCH
) -> RoundClaim:
    """The lease's conditional update, then ``outbox_claim`` if it was taken: one statement
    (``outbox_take_and_claim``, migration 0018)."""
    _, rows = await connections.get("default").execute_query(
        "SELECT * FROM outbox_take_and_claim($1, $2, $3, $4, $5)",
        [name, holder, until, now, int(limit)],
    )
    if not rows:
        return RoundClaim(taken=False, events=[], missing=True)
    if not rows[0]["taken"]:
        return RoundClaim(taken=False, events=[], held_until=rows[0]["held_until"])
    return RoundClaim(taken=True, events=[_claimed(row) for row in rows if row["seq"] is not None])


@take_and_claim.other
async def _take_and_claim_other(
    *, name: str, holder: str, until: datetime, now: datetime, limit: int = BATCH
) -> RoundClaim:
    """SQLite: the same statements one by one."""
    if not await named_leases.take(name=name, holder=holder, until=until, now=now):
        row = await SweepLease.get_or_none(name=name)
        if row is None:
            return RoundClaim(taken=False, events=[], missing=True)
        return RoundClaim(taken=False, events=[], held_until=row.until)
    return RoundClaim(taken=True, events=await claim_unpublished(limit))


@functools.cache
def _release_and_look_sql() -> str:
    """Give the lease back (its end set to ``$1``, by name ``$2`` and holder ``$3``) and say
    whether an event waits to be numbered or published (``anything_unpublished``); PostgreSQL,
    built once."""
    lease, event = orm.table(SweepLease), orm.table(Event)
    return (
        f'WITH given_back AS (UPDATE "{lease}" SET "until" = $1 '
        f'WHERE "name" = $2 AND "holder" = $3 RETURNING 1) '
        f'SELECT EXISTS (SELECT 1 FROM "{event}" WHERE seq IS NULL) '
        f'OR EXISTS (SELECT 1 FROM "{event}" WHERE published_at IS NULL) AS waiting'
    )


release_and_look: DialectSwitch[bool] = DialectSwitch("outbox.release_and_look")


@release_and_look.postgres
async def _release_and_look_postgres(*, name: str, holder: str, given_back: datetime) -> bool:
    """The round's lease given back and the look for what waits: one statement."""
    _, rows = await connections.get("default").execute_query(
        _release_and_look_sql(), [given_back, name, holder]
    )
    return bool(rows[0]["waiting"])


@release_and_look.other
async def _release_and_look_other(*, name: str, holder: str, given_back: datetime) -> bool:
    await named_leases.renew(name=name, holder=holder, until=given_back)
    return await anything_unpublished()
