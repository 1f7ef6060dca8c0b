"""Events on the stream (subscriptions) and in the history (queries)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from domain.events import PublishedEvent
from domain.events.catalogue import public_payload
from domain.events.models import Event as EventModel
from domain.persistence.outbox import published
from schema.event_ids import event_gid
from schema.global_ids import gid, payload_for_clients
from schema.types.enums import EventType
from schema.types.node import Node
from schema.types.pagination import PageInfo


@strawberry.type(description="Something that happened, visible to the caller's organisation.")
class Event(Node):
    type: EventType
    subject_type: str = strawberry.field(description="The kind of object it is about.")
    subject_id: strawberry.ID
    payload: JSON
    actor_user_id: strawberry.ID | None
    occurred_at: datetime

    @classmethod
    def from_model(cls, e: EventModel, organisation_id: int) -> Event:
        """A stored event (published: it has its ``seq``), as ``organisation_id`` sees it."""
        return cls.from_published(published(e, ()), organisation_id)

    @classmethod
    def from_published(cls, e: PublishedEvent, organisation_id: int) -> Event:
        """``e`` as ``organisation_id`` sees it: its id is that organisation's
        (``schema.event_ids``)."""
        return cls(
            id=event_gid(e.seq, organisation_id),
            type=EventType(e.type),
            subject_type=e.subject_type,
            subject_id=gid(e.subject_type, e.subject_id),
            payload=payload_for_clients(public_payload(e)),
            actor_user_id=gid("User", e.actor_user_id) if e.actor_user_id else None,
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
