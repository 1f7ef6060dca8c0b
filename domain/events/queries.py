"""Reading events: the numbered events one organisation sees, for the ``events`` history query
and a subscriber's replay."""

from __future__ import annotations

from collections.abc import Sequence

from domain.events import PublishedEvent
from domain.events.models import Event
from domain.events.outbox import assign_all
from domain.persistence.outbox import BATCH, published


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
