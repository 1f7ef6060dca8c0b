"""The service-level worker: sweeps for breaches whose deadline passed (one instance at a time,
under a named lease renewed while the sweep runs, then held by the instance that swept until its
next sweep is due, so a dead one's turn passes to another then), and settles a subject's open
breaches as soon as an event says it changed.

Every instance hears every event, so each settles; clearing is a conditional update, so a
breach clears once. The sweep clears whatever settling missed (an instance that died between
an event and its settle)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain.events import EventType, PublishedEvent
from domain.events.catalogue import order_of
from domain.leases import LEASE_SECONDS, NamedLease
from domain.sla import commands as sla
from domain.sla.rules import SUBJECT_TYPES
from integrations.background import WakeableLoop
from integrations.heartbeat import Heartbeat

log = logging.getLogger(__name__)

LEASE = "sla"
OWN_EVENTS = frozenset({EventType.SLA_BREACH_OPENED.value, EventType.SLA_BREACH_CLEARED.value})
# s from an event to the round that settles it and what followed it: a deadline is minutes or
# hours, so a second is soon enough, and at one change every 200 ms a round per event (a
# statement and a loop round each) was a tenth of the server's CPU per change
SETTLE_AFTER = 1.0
# A sweep that finds nothing to do, with no event heard meanwhile, is followed by the next at the
# next deadline (``sla.next_deadline``), or at the latest this many sweep intervals later.
QUIET_INTERVALS = 10
MIN_QUIET_PAUSE = timedelta(seconds=1)  # a deadline a moment away does not make the sweep spin


def wall_clock() -> datetime:
    return datetime.now(UTC)


class SlaWorker(WakeableLoop):
    name = "sla worker"

    def __init__(
        self,
        *,
        sweep_interval: float,
        clock: Callable[[], datetime] = wall_clock,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        """``sweep_interval`` seconds between sweeps (0: this instance never sweeps); between
        them the worker sleeps until an event wakes it (``on_event``).

        Quiet: a sweep that opens and clears nothing, with no event heard while it ran, reads
        when the next deadline falls (``sla.next_deadline``), and the sweep after it comes
        then, or ``QUIET_INTERVALS`` intervals later, whichever is first; the next event brings
        the next sweep back to an interval after the last. Nothing that is watched changes
        without an event, so an idle instance sweeps every few minutes instead of twice a
        minute, and no breach opens later than it would have."""
        super().__init__(sweep_interval=sweep_interval or 3600)
        self.sweep_interval = sweep_interval
        self.clock = clock
        self.holder = f"sla-{uuid.uuid4().hex[:12]}"
        self._lease = NamedLease(LEASE, self.holder)
        self._heartbeat = Heartbeat(self._lease, seconds=lease_seconds)
        self._changed: set[tuple[str, int]] = set()
        self._orders: set[int] = set()
        self._next_sweep: datetime | None = None
        self._swept_at: datetime | None = None
        self._heard = 0  # events heard (not the worker's own)
        self._quiet = False  # the next sweep waits for the next deadline
        self._woken: asyncio.TimerHandle | None = None  # a round due SETTLE_AFTER an event
        self._settling = False

    def on_event(self, event: PublishedEvent | None) -> None:
        """The hub's listener: a change to something a rule watches settles it, and a change
        about an order settles everything about that order (a retried withdraw records the new
        withdrawal's event; the failed one's breach ends with it)."""
        if event is not None and event.type in OWN_EVENTS:
            return
        self._heard += 1
        if self._quiet and self._swept_at is not None:
            # the next sweep comes an interval after the last again
            self._quiet = False
            self._next_sweep = self._swept_at + timedelta(seconds=self.sweep_interval)
            self.wake()
        if event is None:
            return
        order_id = order_of(event)
        if order_id is not None:
            self._orders.add(order_id)
        if event.subject_type in SUBJECT_TYPES:
            self._changed.add((event.subject_type, int(event.subject_id)))
        if (order_id is not None or event.subject_type in SUBJECT_TYPES) and self._woken is None:
            # what else comes meanwhile is settled in the same round: under thousands of
            # events a second a round per burst was a tenth of the server's CPU
            self._woken = asyncio.get_running_loop().call_later(SETTLE_AFTER, self._settle)

    def _settle(self) -> None:
        self._woken = None
        self.wake()

    async def stop(self) -> None:
        """Sweep no more; give the sweep's turn back so another instance's comes at once."""
        await super().stop()
        await self._heartbeat.close()

    @property
    def settled(self) -> bool:
        """Every event heard so far is settled: no round is due for one, and none runs."""
        return self._woken is None and not (self._changed or self._orders or self._settling)

    @property
    def next_sweep(self) -> datetime | None:
        """When this instance sweeps next (None: at its next round)."""
        return self._next_sweep

    def interval(self) -> float:
        if self._next_sweep is None or not self.sweep_interval:
            return super().interval()
        return max((self._next_sweep - self.clock()).total_seconds(), 0.0)

    async def round(self) -> None:
        now = self.clock()
        changed, self._changed = self._changed, set()
        orders, self._orders = self._orders, set()
        if changed or orders:
            self._settling = True
            try:
                await sla.settle_many(subjects=changed, order_ids=orders, now=now)
            finally:
                self._settling = False
        if self.sweep_interval and (self._next_sweep is None or now >= self._next_sweep):
            await self._sweep(now)

    async def _sweep(self, now: datetime) -> None:
        every = timedelta(seconds=self.sweep_interval)
        heard = self._heard
        self._swept_at, self._next_sweep, self._quiet = now, now + every, False
        if not await self._lease.take_until(
            now + timedelta(seconds=self._heartbeat.seconds), now=now
        ):
            return
        async with self._heartbeat.holding():
            opened, cleared = await sla.sweep(now=now)
        # this instance's turn until its next sweep; if it dies, another's sweep after that
        await self._lease.take_until(now + every, now=now)
        if opened or cleared:
            log.info("sla sweep: %d opened, %d cleared", len(opened), len(cleared))
            return
        if self._heard != heard:
            return  # a change came while it swept: the next sweep an interval later
        deadline = await sla.next_deadline(now=now)
        if self._heard != heard:
            return
        later = now + every * QUIET_INTERVALS
        if deadline is not None:
            later = min(later, max(deadline, now + MIN_QUIET_PAUSE))
        self._next_sweep, self._quiet = later, True
