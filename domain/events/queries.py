"""Reading events: the numbered events one organisation sees, for the ``events`` history query
and a subscriber's replay."""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.expressions import Q

from domain import visibility
from domain.access import Viewer
from domain.events import EventType, PublishedEvent
from domain.events.catalogue import ApiTokenCreated, ApiTokenRevoked, parse
from domain.events.models import Event
from domain.events.outbox import assign_all
from domain.organisations.models import Role
from domain.persistence.outbox import BATCH, published


async def events_for_organisation(
    organisation_id: int,
    *,
    after_seq: int,
    types: Sequence[str] | None = None,
    limit: int = BATCH,
    read_own_writes: bool = False,
    viewer: Viewer | None = None,
) -> list[PublishedEvent]:
    """Numbered events visible to one organisation after ``after_seq`` (a subscriber's replay).

    ``read_own_writes``: first number this organisation's committed events the publisher has
    not reached yet, so a client that just made a change finds its event in the history.
    ``viewer``: only the events that viewer may see within its organisation (``shown_to``).
    """
    if (
        read_own_writes
        and await Event.filter(audience__organisation_id=organisation_id, seq__isnull=True).exists()
    ):
        await assign_all()
    query = Event.filter(audience__organisation_id=organisation_id, seq__gt=after_seq)
    if types:
        query = query.filter(type__in=list(types))
    if viewer is not None and not viewer.has_role(Role.ADMIN):
        own = [str(i) for i in await visibility.api_tokens(viewer).values_list("id", flat=True)]
        query = query.exclude(Q(type__in=TOKEN_EVENTS) & ~Q(subject_id__in=own))
    rows = await query.order_by("seq").limit(limit)
    return [published(row, (organisation_id,)) for row in rows]


TOKEN_EVENTS = (EventType.API_TOKEN_CREATED.value, EventType.API_TOKEN_REVOKED.value)


def shown_to(viewer: Viewer, event: PublishedEvent) -> bool:
    """Within its organisation, an event about an API token is seen by whoever sees the token
    (``visibility.api_tokens``: the admins, and the token's own user), as ``apiTokens`` shows it;
    every other event by the whole organisation (its audience)."""
    if event.type not in TOKEN_EVENTS or viewer.has_role(Role.ADMIN):
        return True
    token = parse(event)
    assert isinstance(token, ApiTokenCreated | ApiTokenRevoked)
    return token.user_id == viewer.user_id
