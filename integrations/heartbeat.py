"""The heartbeat of background work: a lease (``domain.leases``) renewed while its work runs.

A worker claims work until ``heartbeat.until()`` and does it inside ``heartbeat.holding()``;
while at least one piece of work is held, the lease is renewed every third of ``seconds`` (one
statement for everything the worker holds), so a slow but alive instance keeps its work and a
dead or hung one loses it ``seconds`` after its last renewal. With nothing held the heartbeat
sleeps: an idle instance renews nothing. ``close()`` stops it and gives back what is still
held, so another instance can take it at once (a clean shutdown), and tells the others so
(``on_released``: the app wires it to ``integrations.wakeups``, since served instances do not
wake one another otherwise).

A holder that stops renewing for a whole lease (the process hung: SIGSTOP, a stalled VM, the
database away) may have lost its work to another instance meanwhile: ``still_held(since)`` says
so for work claimed at ``since``, and the clients ask it before every attempt of a call, so a
woken instance makes no further call for work that is no longer its own (``LeaseLapsed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from domain.leases import LEASE_SECONDS, Lease

log = logging.getLogger(__name__)


RELEASE_TIMEOUT = 5.0  # seconds ``close`` waits to give the leases back (else they run out)


class LeaseLapsed(Exception):
    """A whole lease passed without a renewal since the work was claimed: another instance
    may be doing it now, so this one stops (its outcome would be refused anyway)."""

    transient = False  # never retried (``integrations.http_retry``)


class Heartbeat:
    def __init__(self, lease: Lease, *, seconds: float = LEASE_SECONDS) -> None:
        self.lease = lease
        self.seconds = seconds
        self.interval = seconds / 3
        self.renewals = 0  # statements that renewed (for tests and ``/metrics``)
        # told when ``close`` gave leases back: other instances may take the work now
        self.on_released: Callable[[], Awaitable[object]] | None = None
        self._holding = 0
        self._beating: asyncio.Task[None] | None = None
        self._renewed_at = time.monotonic()  # the last renewal, or the start of holding
        self._lapsed_at: float | None = None  # when a lapse was last noticed

    def until(self) -> datetime:
        """The end of a lease taken or renewed now."""
        return datetime.now(UTC) + timedelta(seconds=self.seconds)

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Renew the lease while the body runs (nested and concurrent uses share one beat)."""
        self._holding += 1
        if self._holding == 1:
            self._renewed_at = time.monotonic()
        if self._beating is None or self._beating.done():
            self._beating = asyncio.create_task(self._beat(), name=f"heartbeat {self.lease.name}")
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._beating is not None:
                beating, self._beating = self._beating, None
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating

    def still_held(self, since: float) -> bool:
        """Whether work claimed at ``since`` (``time.monotonic()``) is surely still held: no
        whole lease has passed without a renewal since then."""
        if time.monotonic() - self._renewed_at > self.seconds:
            return False  # lapsing now (the beat has not run since the process woke)
        return self._lapsed_at is None or self._lapsed_at <= since

    def check(self, since: float) -> None:
        """``LeaseLapsed`` unless work claimed at ``since`` is surely still held."""
        if not self.still_held(since):
            raise LeaseLapsed(f"the {self.lease.name} lease lapsed: another instance may hold it")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            if now - self._renewed_at > self.seconds:
                self._lapsed_at = now
            try:
                await self.lease.renew(self.until())
                self._renewed_at = now
                self.renewals += 1
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: the next beat tries again
                log.warning("renewing the %s lease failed", self.lease.name, exc_info=True)

    async def close(self) -> int:
        """Stop renewing and give back what is held; how many leases were given back."""
        beating, self._beating = self._beating, None
        if beating is not None:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):  # a stop is never held up for long
                released = await self.lease.release()
            if released and self.on_released is not None:
                await self.on_released()
        except (Exception, TimeoutError):  # they run out by themselves
            log.warning("giving back the %s lease failed", self.lease.name, exc_info=True)
            return 0
        return released
