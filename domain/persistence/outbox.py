"""The outbox's statements: numbering committed events, claiming what to publish, marking it
published, and building published events from rows.

``assign_sequence`` numbers the committed, unnumbered events in one statement under a lock (an
advisory lock on PostgreSQL; SQLite has one writer), so ``seq`` follows commit order and never
leaves a hole that a later commit could fill. On PostgreSQL ``claim_unpublished`` is the stored
function of migration ``0010_outbox_claim``, which holds the same numbering statement under
the same lock and the read of what is unpublished: change them together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from tortoise import connections

from compat import tortoise as orm
from domain.db import transaction
from domain.events import PublishedEvent
from domain.events.models import Event, EventAudience
from domain.persistence.dialects import DialectSwitch
from domain.persistence.sql import placeholder

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


@claim_unpublished.postgres
async def _claim_postgres(limit: int = BATCH) -> list[PublishedEvent]:
    """The publisher's round: number up to ``limit`` committed events, then return up to
    ``limit`` numbered events not yet published, oldest first; one statement
    (``outbox_claim``)."""
    _, rows = await connections.get("default").execute_query(
        "SELECT * FROM outbox_claim($1)", [int(limit)]
    )
    return [
        PublishedEvent(
            seq=row["seq"],
            type=row["type"],
            subject_type=row["subject_type"],
            subject_id=row["subject_id"],
            payload=json.loads(row["payload"]),
            audience=frozenset(row["audience"]),
            actor_user_id=row["actor_user_id"],
            created_at=row["created_at"],
        )
        for row in rows
    ]


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
