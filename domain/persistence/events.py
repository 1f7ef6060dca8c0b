"""Writing an event and its audience: one statement on PostgreSQL (``recording_sql``, which
other statements embed to record an event with the change that causes it), two elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from compat import tortoise as orm
from domain.events.models import Event, EventAudience
from domain.persistence.dialects import DialectSwitch
from domain.tracing import TRACE_KEY


class Recordable(Protocol):
    """An event to write (``domain.events.NewEvent``; named here, so that the statements do not
    import the module that calls them)."""

    @property
    def type(self) -> StrEnum: ...
    @property
    def subject_type(self) -> str: ...
    @property
    def subject_id(self) -> int | str: ...
    @property
    def audience(self) -> tuple[int, ...]: ...
    @property
    def actor_user_id(self) -> int | None: ...
    @property
    def payload(self) -> Any: ...
    @property
    def trace(self) -> str | None: ...


def stored_payload(event: Recordable) -> dict[str, Any]:
    """The payload as stored: the catalogue's JSON, and the trace that recorded the event under
    ``domain.tracing.TRACE_KEY`` when it carries one (only while tracing is on)."""
    payload: dict[str, Any] = event.payload.to_payload()
    if event.trace is not None:
        payload[TRACE_KEY] = event.trace
    return payload


def recording_sql(first: int, *, only_if: str | None = None) -> str:
    """PostgreSQL: the common table expressions that insert one event and its audience, with
    the parameters ``$first`` … ``$first + 6`` of ``event_parameters``. ``only_if`` names an
    earlier expression of the statement: the event is inserted once per row it returns, so a
    change that did not happen records nothing."""
    p = [f"${i}" for i in range(first, first + 7)]
    source = f" FROM {only_if}" if only_if else ""
    return f"""recorded AS (
    INSERT INTO "{orm.table(Event)}" (type, subject_type, subject_id, payload, actor_user_id,
                                      created_at)
    SELECT {p[0]}::text, {p[1]}::text, {p[2]}::text, {p[3]}::jsonb, {p[4]}::integer,
           {p[5]}::timestamptz{source}
    RETURNING id
), recorded_audience AS (
    INSERT INTO "{orm.table(EventAudience)}" (event_id, organisation_id)
    SELECT recorded.id, organisation FROM recorded, unnest({p[6]}::integer[]) AS organisation
)"""


def audience_of(event: Recordable) -> list[int]:
    orgs = sorted(set(event.audience))
    if not orgs:
        raise ValueError("an event needs at least one organisation in its audience")
    return orgs


def event_parameters(event: Recordable) -> list[Any]:
    """The parameters of ``recording_sql``, in order."""
    return [
        event.type.value,
        event.subject_type,
        str(event.subject_id),
        orm.to_db(Event, "payload", stored_payload(event)),
        event.actor_user_id,
        datetime.now(UTC),
        audience_of(event),
    ]


def recording_many_sql(first: int, *, only_if: str, first_events: str | None = None) -> str:
    """PostgreSQL: the common table expressions that insert any number of events and their
    audiences, with the seven array parameters ``$first`` … ``$first + 6`` of
    ``many_event_parameters``; nothing is inserted unless the earlier expression ``only_if``
    returns a row. The ids are drawn first, so that each audience row names its event.

    ``first_events`` names an earlier expression of events the statement builds itself, written
    before the parameters' ones in the order of its ``n``: columns ``n``, ``type``,
    ``subject_type``, ``subject_id``, ``payload`` (jsonb), ``actor_user_id`` and
    ``organisation`` (its one organisation of the audience)."""
    p = [f"${i}" for i in range(first, first + 7)]
    table = orm.table(Event)
    given = f"""SELECT 1 AS part, e.n, e.type, e.subject_type, e.subject_id,
           e.payload::jsonb AS payload, e.actor_user_id, NULL::integer AS organisation
    FROM unnest({p[0]}::text[], {p[1]}::text[], {p[2]}::text[], {p[3]}::text[],
                {p[4]}::integer[]) WITH ORDINALITY AS e(type, subject_type, subject_id, payload,
                                                       actor_user_id, n)"""
    built = (
        f"""SELECT 0 AS part, n, type, subject_type, subject_id, payload, actor_user_id,
           organisation
    FROM {first_events}
    UNION ALL
    """
        if first_events
        else ""
    )
    return f"""drawn AS (
    SELECT nextval(pg_get_serial_sequence('"{table}"', 'id')) AS id, e.*
    FROM ({built}{given}
          ORDER BY part, n) AS e
    WHERE EXISTS (SELECT 1 FROM {only_if})
), {writing_drawn_sql(p[5], p[6])}"""


def writing_drawn_sql(positions: str, organisations: str) -> str:
    """PostgreSQL: the expressions that insert the events of an earlier expression ``drawn``
    (columns ``id``, ``part``, ``n``, ``type``, ``subject_type``, ``subject_id``, ``payload``
    as jsonb, ``actor_user_id``, ``organisation``) and their audiences: a built event's
    (``part`` 0) is its ``organisation``; a given event's (``part`` 1) are the
    ``organisations`` paired with its ``n`` in ``positions`` (two integer-array parameters)."""
    return f"""recorded AS (
    INSERT INTO "{orm.table(Event)}" (id, type, subject_type, subject_id, payload, actor_user_id,
                           created_at)
    SELECT id, type, subject_type, subject_id, payload, actor_user_id, now()
    FROM drawn
), recorded_audience AS (
    INSERT INTO "{orm.table(EventAudience)}" (event_id, organisation_id)
    SELECT drawn.id, a.organisation
    FROM drawn JOIN unnest({positions}::integer[], {organisations}::integer[])
         AS a(n, organisation) ON drawn.part = 1 AND drawn.n = a.n
    UNION ALL
    SELECT id, organisation FROM drawn WHERE part = 0
)"""


def many_event_parameters(events: Sequence[Recordable]) -> list[Any]:
    """The parameters of ``recording_many_sql``, in order: a column each, and the audiences as
    (event's position from 1, organisation) pairs."""
    positions: list[int] = []
    organisations: list[int] = []
    for n, event in enumerate(events, 1):
        for organisation in audience_of(event):
            positions.append(n)
            organisations.append(organisation)
    return [
        [event.type.value for event in events],
        [event.subject_type for event in events],
        [str(event.subject_id) for event in events],
        [orm.to_db(Event, "payload", stored_payload(event)) for event in events],
        [event.actor_user_id for event in events],
        positions,
        organisations,
    ]


insert_event: DialectSwitch[None] = DialectSwitch("events.insert")
_RECORD_SQL: str | None = None


@insert_event.postgres
async def _insert_postgres(event: Recordable) -> None:
    global _RECORD_SQL
    if _RECORD_SQL is None:
        _RECORD_SQL = f"WITH {recording_sql(1)}\nSELECT 1"
    await orm.connection_of(Event).execute_query(_RECORD_SQL, event_parameters(event))


@insert_event.other
async def _insert_other(event: Recordable) -> None:
    audience = audience_of(event)
    row = await Event.create(
        type=event.type.value,
        subject_type=event.subject_type,
        subject_id=str(event.subject_id),
        payload=stored_payload(event),
        actor_user_id=event.actor_user_id,
    )
    await EventAudience.bulk_create(
        [EventAudience(event_id=row.id, organisation_id=org) for org in audience]
    )
