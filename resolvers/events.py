"""The event stream (subscription) and event history (query) of the caller's organisation."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry import Info

from domain.errors import DomainError, SubscriptionEnded
from domain.events import EventType as DomainEventType
from domain.events import PublishedEvent
from domain.events import queries as event_queries
from domain.events.catalogue import OrderStatusChanged, QuoteUpdated, payload_of
from domain.orders import queries as order_queries
from resolvers.errors import PublicError, bad_input
from resolvers.ids import parse_ids
from resolvers.permissions import EITHER, requires, viewer_of
from schema.event_ids import event_gid, event_key, parse_event_gid, seq_of_key
from schema.global_ids import gid
from schema.types.enums import EventType, current
from schema.types.events import Event, EventConnection, EventEdge
from schema.types.orders import OrderStatus, OrderStatusChange, Quote, QuoteUpdate
from schema.types.pagination import PageInfo

MAX_PAGE = 200


def _cursor(raw: str | None, organisation_id: int) -> int:
    """An ``events`` cursor: the key of an event id (``Event.id`` after ``…/Event/``), as the
    caller's organisation sees it; empty: from the start."""
    if not raw:
        return 0
    seq = seq_of_key(raw, organisation_id)
    if seq is None:
        raise bad_input("`after` must be a cursor this organisation was given.")
    return seq


def _event_id(raw: str, organisation_id: int) -> int:
    """``afterEventId``: the id of an event, as the caller's organisation was shown it;
    ``…/Event/0`` replays from the first event."""
    try:
        seq = parse_event_gid(raw, organisation_id, field="afterEventId")
    except DomainError as error:
        raise bad_input(f"`afterEventId` must be an event id: {error.message}") from None
    if seq is None:
        raise bad_input("`afterEventId` must be the id of an event this organisation was shown.")
    return seq


def event_id_for(info: Info, event: PublishedEvent) -> strawberry.ID:
    """The id of ``event`` as the caller's organisation sees it (``schema.event_ids``)."""
    return event_gid(event.seq, viewer_of(info).organisation_id)


@strawberry.type
class EventQueries:
    @strawberry.field(
        extensions=[requires(EITHER)],
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
        rows = await event_queries.events_for_organisation(
            viewer.organisation_id,
            after_seq=_cursor(after, viewer.organisation_id),
            types=[current(t) for t in types] if types else None,
            limit=first + 1,
            read_own_writes=True,
            viewer=viewer,
        )
        page = rows[:first]
        org = viewer.organisation_id
        edges = [
            EventEdge(cursor=event_key(e.seq, org), node=Event.from_published(e, org)) for e in page
        ]
        return EventConnection(
            edges=edges,
            page_info=PageInfo.of(edges, has_next_page=len(rows) > first, after=after),
        )


@strawberry.type
class EventSubscriptions:
    @strawberry.subscription(
        extensions=[requires(EITHER)],
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
        async for event in event_stream(
            info, [current(t) for t in types] if types else None, after_event_id
        ):
            yield Event.from_published(event, viewer_of(info).organisation_id)


@strawberry.type
class OrderSubscriptions:
    @strawberry.subscription(
        extensions=[requires(EITHER)],
        description="Status changes of the caller's orders (optionally only these orders or "
        "target statuses), in order. Resume with `afterEventId` like `events`.",
    )
    async def order_status_changed(
        self,
        info: Info,
        order_ids: list[strawberry.ID] | None = None,
        statuses: list[OrderStatus] | None = None,
        after_event_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[OrderStatusChange, None]:
        wanted_orders = set(parse_ids(order_ids, "Order", field="orderIds")) if order_ids else None
        wanted_statuses = set(statuses) if statuses else None
        organisation_id = viewer_of(info).organisation_id
        async for event in event_stream(
            info, [DomainEventType.ORDER_STATUS_CHANGED.value], after_event_id
        ):
            change = payload_of(event, OrderStatusChanged)
            if wanted_orders is not None and change.order_id not in wanted_orders:
                continue
            if wanted_statuses is not None and change.to_status not in wanted_statuses:
                continue
            info.context.fresh_loaders()
            yield OrderStatusChange(
                event_id=event_gid(event.seq, organisation_id),
                order_id=gid("Order", change.order_id),
                from_status=change.from_status,
                to_status=change.to_status,
                reason=change.reason,
                at=event.created_at,
            )

    @strawberry.subscription(
        extensions=[requires(EITHER)], description="Quotes of the caller changing status."
    )
    async def quote_updated(
        self, info: Info, after_event_id: strawberry.ID | None = None
    ) -> AsyncGenerator[QuoteUpdate, None]:
        async for event in event_stream(
            info, [DomainEventType.QUOTE_UPDATED.value], after_event_id
        ):
            update = payload_of(event, QuoteUpdated)
            quote = await order_queries.get_quote(viewer=viewer_of(info), quote_id=update.quote_id)
            if quote is not None:
                yield QuoteUpdate(
                    event_id=event_id_for(info, event),
                    quote_id=gid("Quote", quote.id),
                    status=update.status,
                    at=event.created_at,
                    quote=Quote.from_model(quote),
                )


async def event_stream(
    info: Info, types: list[str] | None, after_event_id: str | None
) -> AsyncGenerator[PublishedEvent, None]:
    """The caller's events of ``types`` (replay after ``afterEventId``, then live): what every
    typed subscription filters and maps."""
    viewer = viewer_of(info)
    after = _event_id(after_event_id, viewer.organisation_id) if after_event_id else None
    stream = info.context.hub.stream(
        organisation_id=viewer.organisation_id,
        token_id=viewer.token_id,
        after_seq=after,
        types=types,
    )
    try:
        async for event in stream:
            if event_queries.shown_to(viewer, event):
                yield event
    except SubscriptionEnded as ended:
        raise PublicError(str(ended), code="UNAUTHENTICATED") from ended
