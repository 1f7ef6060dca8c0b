"""The outbox's bookkeeping: sequence numbers, publication marks and catch-up reads.

Rows are inserted by ``domain.events.record_event`` with ``seq`` NULL. ``assign_sequence``
numbers the committed ones in one statement under a lock (an advisory lock on PostgreSQL;
SQLite has one writer), so ``seq`` follows commit order and never leaves a hole that a later
commit could fill. The publisher numbers and reads what it publishes in one round,
``claim_unpublished`` (on PostgreSQL the stored function of migration ``0010_outbox_claim``,
which holds the same numbering statement under the same lock: change them together).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise import connections

from domain.db import transaction
from domain.events import PublishedEvent
from domain.models.events import Event, EventAudience

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


def _dialect() -> str:
    return connections.get("default").capabilities.dialect


async def assign_sequence(limit: int = BATCH) -> int:
    """Give the next ``seq`` numbers to committed, unnumbered events. Returns how many."""
    async with transaction():
        conn = connections.get("default")
        if _dialect() == "postgres":
            await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [_SEQUENCE_LOCK])
        count, _ = await conn.execute_query(_ASSIGN_SQL.format(limit=int(limit)))
    return int(count or 0)


async def assign_all() -> None:
    """Number every event committed so far (in batches of ``BATCH``)."""
    numbered = BATCH
    while numbered >= BATCH:  # a full batch: more may be waiting
        numbered = await assign_sequence()


async def _with_audience(rows: Sequence[Event]) -> list[PublishedEvent]:
    audience: dict[int, set[int]] = {row.id: set() for row in rows}
    if rows:
        pairs = await EventAudience.filter(event_id__in=list(audience)).values_list(
            "event_id", "organisation_id"
        )
        for event_id, org_id in pairs:
            audience[event_id].add(org_id)
    return [_published(row, audience[row.id]) for row in rows]


def _published(row: Event, audience: Iterable[int]) -> PublishedEvent:
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
    return await _with_audience(rows)


async def claim_unpublished(limit: int = BATCH) -> list[PublishedEvent]:
    """The publisher's round: number up to ``limit`` committed events, then return up to
    ``limit`` numbered events not yet published, oldest first.

    On PostgreSQL one statement, ``outbox_claim`` (migration ``0010_outbox_claim``: the same
    numbering under the same lock as ``assign_sequence``, and the read of ``unpublished``);
    elsewhere the two steps."""
    if _dialect() != "postgres":
        await assign_sequence(limit)
        return await unpublished(limit)
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


async def mark_published(seqs: Iterable[int]) -> None:
    seqs = list(seqs)
    if not seqs:
        return
    if _dialect() == "postgres":  # once per publisher round: written out, not built each time
        await connections.get("default").execute_query(
            "UPDATE event SET published_at = $1 WHERE seq = ANY($2::bigint[])",
            [datetime.now(UTC), seqs],
        )
    else:
        await Event.filter(seq__in=seqs).update(published_at=datetime.now(UTC))


async def events_after(after_seq: int, *, limit: int = BATCH) -> list[PublishedEvent]:
    """Every numbered event after ``after_seq``, for any organisation (the hub's catch-up)."""
    rows = await Event.filter(seq__gt=after_seq).order_by("seq").limit(limit)
    return await _with_audience(rows)


async def events_for_organisation(
    organisation_id: int,
    *,
    after_seq: int,
    types: Sequence[str] | None = None,
    limit: int = BATCH,
    read_own_writes: bool = False,
) -> list[PublishedEvent]:
    """Numbered events visible to one organisation after ``after_seq`` (a subscriber's replay).

    ``read_own_writes``: first number this organisation's committed events the publisher has
    not reached yet, so a client that just made a change finds its event in the history.
    """
    if (
        read_own_writes
        and await Event.filter(audience__organisation_id=organisation_id, seq__isnull=True).exists()
    ):
        await assign_all()
    query = Event.filter(audience__organisation_id=organisation_id, seq__gt=after_seq)
    if types:
        query = query.filter(type__in=list(types))
    rows = await query.order_by("seq").limit(limit)
    return [_published(row, (organisation_id,)) for row in rows]


async def last_seq() -> int:
    row: Any = await Event.filter(seq__isnull=False).order_by("-seq").first().values("seq")
    return int(row["seq"]) if row else 0
