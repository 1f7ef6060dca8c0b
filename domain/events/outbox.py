"""The outbox's reads: what a hub catches up on, what a subscriber replays, the last number.

Events are written by ``domain.events.record_event`` with ``seq`` NULL; the publisher numbers
and publishes them through ``domain.persistence.outbox`` (numbering in commit order under a
lock, so ``seq`` never leaves a hole a later commit could fill).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.events import PublishedEvent
from domain.events.models import Event
from domain.persistence.outbox import BATCH as BATCH
from domain.persistence.outbox import assign_sequence as assign_sequence
from domain.persistence.outbox import claim_unpublished as claim_unpublished
from domain.persistence.outbox import mark_published as mark_published
from domain.persistence.outbox import published, with_audience
from domain.persistence.outbox import unpublished as unpublished


async def assign_all() -> None:
    """Number every event committed so far (in batches of ``BATCH``)."""
    numbered = BATCH
    while numbered >= BATCH:  # a full batch: more may be waiting
        numbered = await assign_sequence()


async def events_after(after_seq: int, *, limit: int = BATCH) -> list[PublishedEvent]:
    """Every numbered event after ``after_seq``, for any organisation (the hub's catch-up)."""
    rows = await Event.filter(seq__gt=after_seq).order_by("seq").limit(limit)
    return await with_audience(rows)


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
    return [published(row, (organisation_id,)) for row in rows]


async def last_seq() -> int:
    row: Any = await Event.filter(seq__isnull=False).order_by("-seq").first().values("seq")
    return int(row["seq"]) if row else 0
