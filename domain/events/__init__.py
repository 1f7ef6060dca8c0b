"""Recording events: every state change a service makes is written here, in its transaction.

- this module: recording (``EventType``, ``PublishedEvent``, ``NewEvent``, ``record_event``,
  ``collecting``, ``recorded``);
- ``catalogue``: what each event carries and who sees it (a typed payload class per type);
- ``models``: the outbox table and each event's audience;
- ``outbox``: the outbox's bookkeeping: numbering, publishing, the hub's catch-up, the last number;
- ``queries``: reads: the events one organisation sees (the ``events`` query, a replay).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from domain import tracing
from domain.db import notify_after_commit
from domain.persistence.events import insert_event

_collected: ContextVar[list[EventType] | None] = ContextVar("collected_events", default=None)


class EventType(StrEnum):
    """Kinds of events. Part of the public API: subscribers filter on them."""

    ORGANISATION_UPDATED = "ORGANISATION_UPDATED"
    USER_CREATED = "USER_CREATED"
    API_TOKEN_CREATED = "API_TOKEN_CREATED"
    API_TOKEN_REVOKED = "API_TOKEN_REVOKED"
    ORDER_CREATED = "ORDER_CREATED"
    ORDER_STATUS_CHANGED = "ORDER_STATUS_CHANGED"
    ORDER_TRACKING_SYNC = "ORDER_TRACKING_SYNC"
    QUOTE_UPDATED = "QUOTE_UPDATED"
    PRODUCT_LINK_STALE = "PRODUCT_LINK_STALE"
    WALLET_CHANGED = "WALLET_CHANGED"
    DEPUTE_UPDATED = "DEPUTE_UPDATED"
    PARTNERSHIP_UPDATED = "PARTNERSHIP_UPDATED"
    WAREHOUSE_PUSH_CHANGED = "WAREHOUSE_PUSH_CHANGED"
    WITHDRAWAL_STATUS_CHANGED = "WITHDRAWAL_STATUS_CHANGED"
    RETURN_STATUS_CHANGED = "RETURN_STATUS_CHANGED"
    INVENTORY_CHANGED = "INVENTORY_CHANGED"
    STOCK_LOW = "STOCK_LOW"
    PRODUCT_UPDATED = "PRODUCT_UPDATED"
    LOGISTICS_METHOD_UPDATED = "LOGISTICS_METHOD_UPDATED"
    STORE_UPDATED = "STORE_UPDATED"
    PRODUCT_LINK_UPDATED = "PRODUCT_LINK_UPDATED"
    ORDER_UPDATED = "ORDER_UPDATED"
    THIRD_PARTY_WAREHOUSE_UPDATED = "THIRD_PARTY_WAREHOUSE_UPDATED"
    DISTRIBUTION_SETTINGS_UPDATED = "DISTRIBUTION_SETTINGS_UPDATED"
    CLOUD_WAREHOUSE_UPDATED = "CLOUD_WAREHOUSE_UPDATED"
    STOCK_THRESHOLD_CHANGED = "STOCK_THRESHOLD_CHANGED"
    WAREHOUSE_ATTEMPT_RECORDED = "WAREHOUSE_ATTEMPT_RECORDED"
    SLA_BREACH_OPENED = "SLA_BREACH_OPENED"
    SLA_BREACH_CLEARED = "SLA_BREACH_CLEARED"
    SLA_RULE_UPDATED = "SLA_RULE_UPDATED"


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """An event as it travels on the broadcast channel and reaches subscribers."""

    seq: int
    type: str
    subject_type: str
    subject_id: str
    payload: dict[str, Any]
    audience: frozenset[int]
    actor_user_id: int | None
    created_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "payload": self.payload,
            "audience": sorted(self.audience),
            "actor_user_id": self.actor_user_id,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PublishedEvent:
        return cls(
            seq=int(data["seq"]),
            type=data["type"],
            subject_type=data["subject_type"],
            subject_id=data["subject_id"],
            payload=data["payload"],
            audience=frozenset(int(o) for o in data["audience"]),
            actor_user_id=data["actor_user_id"],
            created_at=datetime.fromisoformat(data["created_at"]),
        )

    # The trace it carries in its payload while tracing is on (``domain.tracing``): how it
    # travelled, not what it says, so read here rather than through the catalogue.

    @property
    def recorded_in(self) -> object:
        """The ``traceparent`` of the span that recorded it (None if it carries none)."""
        return self.payload.get(tracing.TRACE_KEY)

    @property
    def published_in(self) -> object:
        """The ``traceparent`` of the ``outbox publish`` span that handed it over."""
        return self.payload.get(tracing.PUBLISH_KEY)

    def mark_published_in(self, traceparent: str) -> None:
        """Carry the publishing span along (to local subscribers, and over the channel)."""
        self.payload[tracing.PUBLISH_KEY] = traceparent


class Payload(Protocol):
    """What a payload of ``domain.events.catalogue`` is to the recording (named here, so that
    this module does not import the catalogue that imports it)."""

    TYPE: ClassVar[EventType]

    def to_payload(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be written: what ``record_event`` records, and what statements that
    embed ``domain.persistence.events.recording_sql`` take their parameters from. Built by the
    constructors of ``domain.events.catalogue``, which decide its subject and audience."""

    payload: Payload
    subject_type: str
    subject_id: int | str
    audience: tuple[int, ...]
    actor_user_id: int | None = None
    # the span that built it, as a W3C traceparent: set only while tracing is on, and stored
    # in the payload (``domain.tracing``); taken here, in the request, because a write may be
    # grouped with other requests' writes and run in another task
    trace: str | None = None

    @property
    def type(self) -> EventType:
        return self.payload.TYPE


@contextmanager
def collecting() -> Iterator[list[EventType]]:
    """The types of the events recorded in this context while the block runs (those of tasks it
    starts too), in order, whether or not their transaction then commits: what a command
    recorded. Background work running in other tasks is not included."""
    types: list[EventType] = []
    token = _collected.set(types)
    try:
        yield types
    finally:
        _collected.reset(token)


async def record_event(event: NewEvent) -> None:
    """Write ``event`` to the outbox, visible to the organisations of its audience.

    Call it inside the service's ``transaction()``: the event commits or rolls back with the
    change, and the publisher is woken after commit. How it is written:
    ``domain.persistence.events`` (on PostgreSQL one statement, which other statements embed).
    """
    await insert_event(event)
    recorded(event)


def recorded(event: NewEvent) -> None:
    """What follows every event written, by ``record_event`` or by a statement that embeds
    ``recording_sql``: ``collecting`` hears of it, and the publisher is woken after commit."""
    recorded_type(event.type)


def recorded_type(event_type: EventType) -> None:
    """``recorded`` for an event a statement built itself, known only by its type."""
    types = _collected.get()
    if types is not None:
        types.append(event_type)
    notify_after_commit()
