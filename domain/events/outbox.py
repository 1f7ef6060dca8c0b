"""The outbox's own bookkeeping: numbering and publishing, the hub's catch-up, the last number
(what one organisation sees: ``domain.events.queries``).

Events are written by ``domain.events.record_event`` with ``seq`` NULL; the publisher numbers
and publishes them through ``domain.persistence.outbox`` (numbering in commit order under a
lock, so ``seq`` never leaves a hole a later commit could fill).
"""

from __future__ import annotations

from typing import Any

from domain.events import PublishedEvent
from domain.events.models import Event
from domain.persistence.outbox import BATCH as BATCH
from domain.persistence.outbox import any_after as any_after
from domain.persistence.outbox import anything_unpublished as anything_unpublished
from domain.persistence.outbox import assign_sequence as assign_sequence
from domain.persistence.outbox import claim_unpublished as claim_unpublished
from domain.persistence.outbox import mark_published as mark_published
from domain.persistence.outbox import unpublished as unpublished
from domain.persistence.outbox import with_audience


async def assign_all() -> None:
    """Number every event committed so far (in batches of ``BATCH``)."""
    numbered = BATCH
    while numbered >= BATCH:  # a full batch: more may be waiting
        numbered = await assign_sequence()


async def events_after(after_seq: int, *, limit: int = BATCH) -> list[PublishedEvent]:
    """Every numbered event after ``after_seq``, for any organisation (the hub's catch-up)."""
    rows = await Event.filter(seq__gt=after_seq).order_by("seq").limit(limit)
    return await with_audience(rows)


async def last_seq() -> int:
    row: Any = await Event.filter(seq__isnull=False).order_by("-seq").first().values("seq")
    return int(row["seq"]) if row else 0
