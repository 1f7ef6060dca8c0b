"""Moves committed events from the outbox to the broadcast channel.

Woken after every commit of this process that recorded an event, on PostgreSQL by events other
processes record (``integrations.wakeups``), every ``retry_interval`` while the broadcast backend
is down, and otherwise only by its safety sweep (``poll_interval``). Every instance runs one;
they agree on numbering through ``domain.outbox.assign_sequence``, and, when they share the
broadcast channel (Redis; ``exclusive``), one at a time publishes:
a round is held under a named lease (``domain.leases``, renewed while it runs), kept while rounds
follow one another and given back when it goes idle. On PostgreSQL taking the lease and claiming
the first batch are one statement, and so are giving it back and looking for what waits
(``domain.events.outbox.take_round_and_claim``, ``give_round_back_and_look``): three round
trips a burst with marking what went out, where there were five. After giving it back the
holder looks once more for events waiting: an instance whose round was refused meanwhile
committed them before, so they are found then (served instances do not wake one another). A
round refused while the holder is dead is tried again when its lease runs out (a holder killed
inside the statement that takes it never committed it: the other's take goes through once the
dead session ends). Were an event published twice all the
same (a holder that hung past its lease), receivers drop any ``seq`` they have already seen.
An in-memory broadcast reaches its own process only: each such publisher publishes everything.
With tracing on, each round that hands events over is an ``outbox publish`` span linked to the
requests that recorded them (``integrations.bus.tracing``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from domain import tracing
from domain.events import PublishedEvent, outbox
from domain.leases import NamedLease
from integrations.background import WakeableLoop
from integrations.bus.broadcast import SafeBroadcast
from integrations.bus.channel import EVENTS_CHANNEL, encode_batch
from integrations.bus.tracing import publishing
from integrations.heartbeat import Heartbeat

log = logging.getLogger(__name__)

ROUND = "outbox publisher"  # the named lease of a publishing round
# Live delivery waits on the round: an instance that dies holding it holds up every instance's
# events until its lease runs out, so the lease is short (renewed every third of it while a
# round runs, at most once per half lease between rounds that follow one another).
ROUND_LEASE_SECONDS = 2.0


class OutboxPublisher(WakeableLoop):
    """``deliver_locally`` (the hub's ``offer``) gets every numbered event before it is
    broadcast, so this process's subscribers are served even while Redis is down."""

    def __init__(
        self,
        broadcast: SafeBroadcast,
        *,
        poll_interval: float,
        retry_interval: float,
        deliver_locally: Callable[[list[PublishedEvent]], Awaitable[None]] | None = None,
        channel: str = EVENTS_CHANNEL,
        lease_seconds: float = ROUND_LEASE_SECONDS,
        exclusive: bool = True,
    ):
        """``poll_interval``: the safety sweep, seconds between rounds that nothing woke."""
        self._broadcast = broadcast
        self._channel = channel
        super().__init__(sweep_interval=poll_interval)
        self._deliver_locally = deliver_locally
        self._retry_interval = retry_interval
        self.backend_down_since: float | None = None
        self.published = 0
        self.holder = f"outbox-{uuid.uuid4().hex[:12]}"
        self._exclusive = exclusive  # the channel is shared: one instance at a time publishes
        self._lease = NamedLease(ROUND, self.holder)
        self.heartbeat = Heartbeat(self._lease, seconds=lease_seconds)
        self._held_elsewhere: datetime | None = None  # until when another instance holds it

    name = "outbox publisher"

    def interval(self) -> float:
        return self._retry_interval if self.backend_down_since else super().interval()

    async def stop(self) -> None:
        await super().stop()
        try:  # publish what the last requests committed, if the backend lets us
            await asyncio.wait_for(self.flush(), timeout=2)
        except Exception:
            log.warning("outbox not fully flushed at shutdown; it is published on next start")
        await self.heartbeat.close()

    @property
    def refused_until(self) -> datetime | None:
        """Until when another instance holds the round this one's last round was refused
        (None: the last round was not refused)."""
        return self._held_elsewhere

    async def next_due(self) -> datetime | None:
        """A round refused because another instance held it: when that one's lease runs out."""
        return self._held_elsewhere

    async def round(self) -> None:
        await self.flush()

    async def flush(self) -> int:
        """Number what is committed and publish what is unpublished, if no other instance is
        publishing (see the module's docstring). Returns events published.

        A backend failure stops this round: what went out is marked, the rest stays in the
        outbox for the next round (``retry_interval`` later).
        """
        if self._exclusive:
            sent = await self._publish_exclusively()
        else:
            sent, _ = await self._publish_waiting()
        self.published += sent
        return sent

    async def _publish_exclusively(self) -> int:
        """Publish under the round's lease (see the module's docstring): taking it and
        claiming the first batch, then giving it back and looking for what waits, are one
        statement each on PostgreSQL."""
        sent = 0
        while True:
            first, held_until = await outbox.take_round_and_claim(
                self._lease, seconds=self.heartbeat.seconds
            )
            if first is None:
                self._held_elsewhere = held_until
                if held_until is None:
                    continue  # given back meanwhile: take it now
                break
            self._held_elsewhere = None
            async with self.heartbeat.holding():
                published, complete = await self._publish_waiting(first)
            sent += published
            if self._wake.is_set() and not self._stopping:
                break  # the next round comes at once: it keeps the lease
            waiting = await outbox.give_round_back_and_look(self._lease)
            if not complete or not waiting:
                break  # (the backend failed: the next round comes ``retry_interval`` later)
        return sent

    async def _publish_waiting(self, first: list[PublishedEvent] | None = None) -> tuple[int, bool]:
        """Publish what waits, batch by batch (``first`` claimed already): how many, and
        whether the backend took all."""
        sent = 0
        events = first if first is not None else await outbox.claim_unpublished()
        while events:
            if tracing.ENABLED:
                with publishing(events, channel=self._channel) as span:
                    done = await self._hand_over(events)
                    span.set_attribute("supplygraph.events.published", len(done))
            else:
                done = await self._hand_over(events)
            sent += len(done)
            if len(done) < len(events):
                return sent, False
            if len(events) < outbox.BATCH:
                break  # nothing more was numbered or waiting
            events = await outbox.claim_unpublished()
        return sent, True

    async def _hand_over(self, events: list[PublishedEvent]) -> list[int]:
        """Deliver ``events`` locally, publish them and mark what went out; the seqs that did."""
        if self._deliver_locally is not None:
            await self._deliver_locally(events)
        done = await self._publish(events)
        await outbox.mark_published(done)
        return done

    async def _publish(self, events: list[PublishedEvent]) -> list[int]:
        """Publish in order, as one message (``channel.encode_batch``: a message per event
        made the round wait for Redis once per event, and at 2,000 events/s the publisher fell
        behind); the seqs that went out: all, or none if the backend failed."""
        try:
            await self._broadcast.publish(self._channel, encode_batch(events))
        except Exception as exc:
            if self.backend_down_since is None:
                self.backend_down_since = time.monotonic()
                log.warning("broadcast backend unavailable, events wait in the outbox: %s", exc)
            return []
        done = [event.seq for event in events]
        if self.backend_down_since is not None:
            log.info("broadcast backend is back; publishing the outbox")
            self.backend_down_since = None
        return done
