"""Events on the stream (subscriptions) and in the history (queries)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from domain.events import PublishedEvent
from schema.types.enums import EventType
from schema.types.pagination import PageInfo


@strawberry.type(description="Something that happened, visible to the caller's organisation.")
class Event:
    id: strawberry.ID = strawberry.field(
        description="Increases with every event; resume a subscription with `afterEventId`."
    )
    type: EventType
    subject_type: str = strawberry.field(description="The kind of object it is about.")
    subject_id: strawberry.ID
    payload: JSON
    actor_user_id: strawberry.ID | None
    occurred_at: datetime

    @classmethod
    def from_published(cls, e: PublishedEvent) -> Event:
        return cls(
            id=strawberry.ID(str(e.seq)),
            type=EventType(e.type),
            subject_type=e.subject_type,
            subject_id=strawberry.ID(e.subject_id),
            payload=e.payload,
            actor_user_id=strawberry.ID(str(e.actor_user_id)) if e.actor_user_id else None,
            occurred_at=e.created_at,
        )


@strawberry.type
class EventEdge:
    cursor: str
    node: Event


@strawberry.type(description="A page of events, oldest first, with a keyset cursor.")
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo
