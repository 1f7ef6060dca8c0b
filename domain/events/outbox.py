"""The outbox's own bookkeeping: numbering and publishing, the hub's catch-up, the last number
(what one organisation sees: ``domain.events.queries``).

Events are written by ``domain.events.record_event`` with ``seq`` NULL; the publisher numbers
and publishes them through ``domain.persistence.outbox`` (numbering in commit order under a
lock, so ``seq`` never leaves a hole a later commit could fill).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.events import PublishedEvent
from domain.events.models import Event
from domain.leases import GIVEN_BACK, NamedLease
from domain.persistence.outbox import BATCH as BATCH
from domain.persistence.outbox import any_after as any_after
from domain.persistence.outbox import anything_unpublished as anything_unpublished
from domain.persistence.outbox import assign_sequence as assign_sequence
from domain.persistence.outbox import claim_unpublished as claim_unpublished
from domain.persistence.outbox import mark_published as mark_published
from domain.persistence.outbox import release_and_look, take_and_claim, with_audience
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


async def last_seq() -> int:
    row: Any = await Event.filter(seq__isnull=False).order_by("-seq").first().values("seq")
    return int(row["seq"]) if row else 0


async def take_round_and_claim(
    lease: NamedLease, *, seconds: float, limit: int = BATCH
) -> tuple[list[PublishedEvent] | None, datetime | None]:
    """The publishing round's ``lease`` taken for ``seconds`` (as ``NamedLease.take``: no
    statement for it while this holder's lease has more than half to run) and the first batch
    claimed: one statement on PostgreSQL. Returns (the events, None) when the round is this
    holder's; (None, until when another holds it) when not, with None there when the other
    gave it back meanwhile (take it again)."""
    now = datetime.now(UTC)
    if lease.keeps(seconds, now=now):
        return await claim_unpublished(limit), None
    until = now + timedelta(seconds=seconds)
    claim = await take_and_claim(
        name=lease.name, holder=lease.holder, until=until, now=now, limit=limit
    )
    if claim.missing:  # the lease's first use: made through the lease
        if await lease.take_until(until, now=now):
            return await claim_unpublished(limit), None
        return None, await lease.held_until()
    if not claim.taken:
        lease.until = None
        held = claim.held_until
        return None, held if held is not None and held >= now else None
    lease.until = until
    return claim.events, None


async def give_round_back_and_look(lease: NamedLease) -> bool:
    """The round's ``lease`` given back, and whether an event waits to be numbered or
    published (``anything_unpublished``): one statement on PostgreSQL."""
    lease.until = None
    return await release_and_look(name=lease.name, holder=lease.holder, given_back=GIVEN_BACK)
