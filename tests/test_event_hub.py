"""The event hub hands a stream only the events its filter reads: a subscription whose filter
matches rarely is not woken for every event of its organisation, and one on a token still
learns of that token's revocation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import pytest

from domain.events import EventType, PublishedEvent
from integrations.bus.hub import EventHub, SubscriptionEnded

if TYPE_CHECKING:
    from integrations.bus.broadcast import SafeBroadcast

ORG = 7


def event(seq: int, kind: EventType, subject_id: str = "1") -> PublishedEvent:
    return PublishedEvent(
        seq=seq,
        type=kind.value,
        subject_type="Thing",
        subject_id=subject_id,
        payload={},
        audience=frozenset({ORG}),
        actor_user_id=None,
        created_at=datetime.now(UTC),
    )


def hub() -> EventHub:
    # never started: events are offered directly, in seq order, so nothing reads the outbox
    return EventHub(cast("SafeBroadcast", None), resync_interval=60)


async def test_a_filtered_stream_is_handed_only_the_types_it_reads() -> None:
    events_hub = hub()
    stream = events_hub.stream(organisation_id=ORG, types=[EventType.ORDER_STATUS_CHANGED.value])
    first = asyncio.create_task(anext(stream))
    await asyncio.sleep(0)  # registered, waiting
    await events_hub.offer(
        [event(1, EventType.ORGANISATION_UPDATED), event(2, EventType.ORDER_STATUS_CHANGED)]
    )
    assert (await first).seq == 2
    # the stream is held at its yield: what is handed to it waits in its queue
    await events_hub.offer(
        [
            event(3, EventType.WAREHOUSE_PUSH_CHANGED),
            event(4, EventType.API_TOKEN_REVOKED),
            event(5, EventType.ORDER_STATUS_CHANGED),
        ]
    )
    assert events_hub.queued == 1
    assert (await anext(stream)).seq == 5
    await stream.aclose()
    assert events_hub.subscriber_count == 0


async def test_an_unfiltered_stream_is_handed_everything() -> None:
    events_hub = hub()
    stream = events_hub.stream(organisation_id=ORG)
    first = asyncio.create_task(anext(stream))
    await asyncio.sleep(0)
    await events_hub.offer([event(1, EventType.ORGANISATION_UPDATED)])
    assert (await first).seq == 1
    await events_hub.offer(
        [event(2, EventType.WAREHOUSE_PUSH_CHANGED), event(3, EventType.ORDER_STATUS_CHANGED)]
    )
    assert events_hub.queued == 2
    assert [(await anext(stream)).seq for _ in range(2)] == [2, 3]
    await stream.aclose()


async def test_a_filtered_stream_on_a_token_still_ends_when_the_token_is_revoked() -> None:
    events_hub = hub()
    stream = events_hub.stream(
        organisation_id=ORG, token_id=42, types=[EventType.ORDER_STATUS_CHANGED.value]
    )
    first = asyncio.create_task(anext(stream))
    await asyncio.sleep(0)
    other_token = event(1, EventType.API_TOKEN_REVOKED, subject_id="41")  # handed, skipped
    await events_hub.offer([other_token, event(2, EventType.ORDER_STATUS_CHANGED)])
    assert (await first).seq == 2
    await events_hub.offer([event(3, EventType.API_TOKEN_REVOKED, subject_id="42")])
    with pytest.raises(SubscriptionEnded):
        await anext(stream)
