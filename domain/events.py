"""Recording events: every state change a service makes is written here, in its transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tortoise import connections

from domain.db import notify_after_commit
from domain.models.events import Event, EventAudience

_PAYLOAD = Event._meta.fields_map["payload"]
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
    CONNECTION_STALE = "CONNECTION_STALE"
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
    PRODUCT_CONNECTION_UPDATED = "PRODUCT_CONNECTION_UPDATED"
    ORDER_UPDATED = "ORDER_UPDATED"
    THIRD_PARTY_WAREHOUSE_UPDATED = "THIRD_PARTY_WAREHOUSE_UPDATED"
    DISTRIBUTION_SETTINGS_UPDATED = "DISTRIBUTION_SETTINGS_UPDATED"
    CLOUD_WAREHOUSE_UPDATED = "CLOUD_WAREHOUSE_UPDATED"
    STOCK_THRESHOLD_CHANGED = "STOCK_THRESHOLD_CHANGED"
    WAREHOUSE_ATTEMPT_RECORDED = "WAREHOUSE_ATTEMPT_RECORDED"


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


def recording_sql(first: int, *, only_if: str | None = None) -> str:
    """PostgreSQL: the common table expressions that insert one event and its audience, with
    the parameters ``$first`` … ``$first + 6`` of ``NewEvent.parameters``. ``only_if`` names
    an earlier expression of the statement: the event is inserted once per row it returns, so a
    change that did not happen records nothing."""
    p = [f"${i}" for i in range(first, first + 7)]
    source = f" FROM {only_if}" if only_if else ""
    return f"""recorded AS (
    INSERT INTO event (type, subject_type, subject_id, payload, actor_user_id, created_at)
    SELECT {p[0]}::text, {p[1]}::text, {p[2]}::text, {p[3]}::jsonb, {p[4]}::integer,
           {p[5]}::timestamptz{source}
    RETURNING id
), recorded_audience AS (
    INSERT INTO event_audience (event_id, organisation_id)
    SELECT recorded.id, organisation FROM recorded, unnest({p[6]}::integer[]) AS organisation
)"""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be written: what ``record_event`` records, and what statements that
    embed ``recording_sql`` take their parameters from."""

    type: EventType
    subject_type: str
    subject_id: int | str
    audience: Iterable[int]
    payload: dict[str, Any] | None = None
    actor_user_id: int | None = None

    def parameters(self) -> list[Any]:
        """The parameters of ``recording_sql``, in order."""
        orgs = sorted(set(self.audience))
        if not orgs:
            raise ValueError("an event needs at least one organisation in its audience")
        return [
            self.type.value,
            self.subject_type,
            str(self.subject_id),
            _PAYLOAD.to_db_value(self.payload or {}, Event),
            self.actor_user_id,
            datetime.now(UTC),
            orgs,
        ]


_RECORD_SQL = f"WITH {recording_sql(1)}\nSELECT 1"


async def record_event(
    *,
    type: EventType,
    subject_type: str,
    subject_id: int | str,
    audience: Iterable[int],
    payload: dict[str, Any] | None = None,
    actor_user_id: int | None = None,
) -> None:
    """Write an event to the outbox, visible to the organisations in ``audience``.

    Call it inside the service's ``transaction()``: the event commits or rolls back with the
    change, and the publisher is woken after commit. On PostgreSQL the event and its audience
    are one statement (``recording_sql``, which other statements embed).
    """
    await record(NewEvent(type, subject_type, subject_id, audience, payload, actor_user_id))


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


def noted(event: NewEvent) -> None:
    """Tell ``collecting`` about an event written: ``record`` does, and so must a statement
    that embeds ``recording_sql``."""
    types = _collected.get()
    if types is not None:
        types.append(event.type)


async def record(event: NewEvent) -> None:
    """``record_event`` for an event already described."""
    params = event.parameters()
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_query(_RECORD_SQL, params)
    else:
        row = await Event.create(
            type=event.type.value,
            subject_type=event.subject_type,
            subject_id=str(event.subject_id),
            payload=event.payload or {},
            actor_user_id=event.actor_user_id,
        )
        await EventAudience.bulk_create(
            [EventAudience(event_id=row.id, organisation_id=org) for org in params[-1]]
        )
    noted(event)
    notify_after_commit()
