"""One process-wide listener on the broadcast channel, fanning events out to local subscribers.

The database is the source of truth and the broadcast only a fast path: the hub tracks the
last ``seq`` it dispatched, and when a message skips ahead, the backend reconnects (RESYNC), or
the safety timer fires, it reads what it missed from the outbox. Subscribers therefore see
every event of their organisation exactly once, in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field

from domain.errors import SubscriptionEnded  # raised here; tests and older code import it here
from domain.events import EventType, PublishedEvent, outbox
from domain.events import queries as event_queries
from integrations.bus.broadcast import RESYNC, SafeBroadcast
from integrations.bus.channel import EVENTS_CHANNEL, decode_batch
from integrations.bus.tracing import delivering

log = logging.getLogger(__name__)

_CLOSED = object()
_CATCH_UP = object()

DispatchListener = Callable[[PublishedEvent | None], None]


@dataclass(eq=False)
class _Local:
    organisation_id: int
    # The event types the stream reads (None: all). Others are not queued, so a stream whose
    # filter matches rarely is not woken for every event of its organisation.
    types: frozenset[str] | None = None
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)


class EventHub:
    def __init__(
        self,
        broadcast: SafeBroadcast,
        *,
        resync_interval: float,
        max_queue: int = 10_000,
        channel: str = EVENTS_CHANNEL,
    ) -> None:
        self._broadcast = broadcast
        self._channel = channel
        self._resync_interval = resync_interval
        self._max_queue = max_queue
        self._locals: dict[int, set[_Local]] = defaultdict(set)
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._listeners: list[DispatchListener] = []
        self.last_seq = 0
        self.closed = False

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._locals.values())

    @property
    def queued(self) -> int:
        """Events handed to local streams and not yet taken by them."""
        return sum(sub.queue.qsize() for subs in self._locals.values() for sub in subs)

    def on_dispatch(self, listener: DispatchListener) -> None:
        """Call ``listener(event)`` for every event dispatched, in ``seq`` order, and
        ``listener(None)`` when the broadcast may have dropped some (a RESYNC from its backend,
        a restart of the hub's listener); what was missed follows from the outbox. A gap in
        ``seq`` is not signalled: the missed events are dispatched from the outbox first.
        Called synchronously: a listener must not block."""
        self._listeners.append(listener)

    def _notify(self, event: PublishedEvent | None) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event hub dispatch listener failed")

    async def start(self) -> None:
        self.last_seq = await outbox.last_seq()
        self._tasks = [
            asyncio.create_task(self._listen(), name="event-hub-listener"),
            asyncio.create_task(self._safety_resync(), name="event-hub-resync"),
        ]
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        """End every local subscription cleanly, then stop listening."""
        self.closed = True
        for subs in self._locals.values():
            for sub in subs:
                sub.queue.put_nowait(_CLOSED)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _listen(self) -> None:
        while True:
            try:
                async with self._broadcast.subscribe(self._channel) as subscriber:
                    self._ready.set()
                    self._notify(None)
                    await self.catch_up()
                    async for message in subscriber:
                        if message is None:
                            break
                        if message.message == RESYNC:
                            self._notify(None)
                            await self.catch_up()
                        else:
                            for event in decode_batch(message.message, after_seq=self.last_seq):
                                await self._accept(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event hub listener failed; restarting")
                await asyncio.sleep(0.5)

    async def _safety_resync(self) -> None:
        while True:
            await asyncio.sleep(self._resync_interval)
            try:
                if await outbox.any_after(self.last_seq):
                    await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event hub resync failed")

    async def offer(self, events: list[PublishedEvent]) -> None:
        """Events numbered by this process's publisher, before they are broadcast."""
        for event in events:
            await self._accept(event)

    async def _accept(self, event: PublishedEvent) -> None:
        if event.seq <= self.last_seq:
            return  # already dispatched (duplicate publication or caught up from the outbox)
        if event.seq == self.last_seq + 1 and not self._lock.locked():
            self._dispatch(event)  # the next one, no catch-up running: nothing to wait for
            return
        if event.seq > self.last_seq + 1:
            await self.catch_up()  # a gap: the outbox has what the channel skipped
            if event.seq <= self.last_seq:
                return
        async with self._lock:
            if event.seq > self.last_seq:
                self._dispatch(event)

    async def catch_up(self) -> None:
        """Dispatch every numbered event after ``last_seq`` from the outbox."""
        async with self._lock:
            while True:
                events = await outbox.events_after(self.last_seq)
                for event in events:
                    self._dispatch(event)
                if len(events) < outbox.BATCH:
                    return

    def _dispatch(self, event: PublishedEvent) -> None:
        self.last_seq = event.seq
        for organisation_id in event.audience:
            for sub in self._locals.get(organisation_id, ()):
                if sub.types is not None and event.type not in sub.types:
                    continue
                if sub.queue.qsize() >= self._max_queue:
                    # A consumer too slow to keep up: drop its backlog, it re-reads the outbox.
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    sub.queue.put_nowait(_CATCH_UP)
                else:
                    sub.queue.put_nowait(event)
        self._notify(event)

    async def stream(
        self,
        *,
        organisation_id: int,
        token_id: int | None = None,
        after_seq: int | None = None,
        types: Collection[str] | None = None,
        field_name: str | None = None,
    ) -> AsyncIterator[PublishedEvent]:
        """Events visible to ``organisation_id``: first those after ``after_seq`` from the
        outbox, then live ones, with no gap and no duplicate. Ends if ``token_id`` is revoked.

        With tracing on, each event handed over is a ``subscription deliver <field_name>``
        span until the next is asked for (``integrations.bus.tracing.Delivery``).
        """
        if self.closed:
            return
        wanted = set(types) if types else None
        queued = wanted
        if wanted is not None and token_id is not None:
            queued = {*wanted, EventType.API_TOKEN_REVOKED.value}
        local = _Local(organisation_id, None if queued is None else frozenset(queued))
        self._locals[organisation_id].add(local)
        last = self.last_seq if after_seq is None else after_seq
        replay = after_seq is not None
        try:
            while True:
                if replay:
                    batch = await event_queries.events_for_organisation(
                        organisation_id, after_seq=last, types=wanted and sorted(wanted)
                    )
                    for event in batch:
                        last = event.seq
                        with delivering(event, field_name):
                            yield event
                    replay = len(batch) >= outbox.BATCH
                    if replay:
                        continue
                item = await local.queue.get()
                if item is _CLOSED:
                    return
                if item is _CATCH_UP:
                    replay = True
                    continue
                assert isinstance(item, PublishedEvent)
                if item.seq <= last:
                    continue
                if (
                    token_id is not None
                    and item.type == EventType.API_TOKEN_REVOKED
                    and item.subject_id == str(token_id)
                ):
                    raise SubscriptionEnded("The token of this connection was revoked.")
                last = item.seq
                if wanted is None or item.type in wanted:
                    with delivering(item, field_name):
                        yield item
        finally:
            subs = self._locals.get(organisation_id)
            if subs is not None:
                subs.discard(local)
                if not subs:
                    del self._locals[organisation_id]
