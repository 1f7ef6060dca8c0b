"""The event stream (subscription) and event history (query) of the caller's organisation."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry import Info

from domain import outbox
from integrations.bus.hub import SubscriptionEnded
from resolvers.errors import PublicError, bad_input
from resolvers.permissions import IsAuthenticated, viewer_of
from schema.types.enums import EventType
from schema.types.events import Event, EventConnection, EventEdge
from schema.types.pagination import PageInfo

MAX_PAGE = 200


def _cursor(raw: str | None, *, name: str) -> int:
    """Event ids double as cursors: a non-negative integer."""
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise bad_input(f"`{name}` must be an event id.")
    return value


@strawberry.type
class EventQueries:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Events of the caller's organisation, oldest first, after the cursor.",
    )
    async def events(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        types: list[EventType] | None = None,
    ) -> EventConnection:
        if not 0 < first <= MAX_PAGE:
            raise bad_input(f"`first` must be between 1 and {MAX_PAGE}.")
        viewer = viewer_of(info)
        rows = await outbox.events_for_organisation(
            viewer.organisation_id,
            after_seq=_cursor(after, name="after"),
            types=[t.value for t in types] if types else None,
            limit=first + 1,
        )
        page = rows[:first]
        edges = [EventEdge(cursor=str(e.seq), node=Event.from_published(e)) for e in page]
        return EventConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
        )


@strawberry.type
class EventSubscriptions:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description=(
            "Live events of the caller's organisation. With `afterEventId`, first every event "
            "after it (what a reconnecting client missed), then live ones: no gap, no duplicate."
        ),
    )
    async def events(
        self,
        info: Info,
        types: list[EventType] | None = None,
        after_event_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[Event, None]:
        viewer = viewer_of(info)
        after = _cursor(after_event_id, name="afterEventId") if after_event_id else None
        stream = info.context.hub.stream(
            organisation_id=viewer.organisation_id,
            token_id=viewer.token_id,
            after_seq=after,
            types=[t.value for t in types] if types else None,
        )
        try:
            async for event in stream:
                yield Event.from_published(event)
        except SubscriptionEnded as ended:
            raise PublicError(str(ended), code="UNAUTHENTICATED") from ended
