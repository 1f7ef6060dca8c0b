"""The heartbeat of background work: a lease (``domain.leases``) renewed while its work runs.

A worker claims work until ``heartbeat.until()`` and does it inside ``heartbeat.holding()``;
while at least one piece of work is held, the lease is renewed every third of ``seconds`` (one
statement for everything the worker holds), so a slow but alive instance keeps its work and a
dead or hung one loses it ``seconds`` after its last renewal. With nothing held the heartbeat
sleeps: an idle instance renews nothing. ``close()`` stops it and gives back what is still
held, so another instance can take it at once (a clean shutdown), and tells the others so
(``on_released``: the app wires it to ``integrations.wakeups``, since served instances do not
wake one another otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from domain.leases import LEASE_SECONDS, Lease

log = logging.getLogger(__name__)


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

    def until(self) -> datetime:
        """The end of a lease taken or renewed now."""
        return datetime.now(UTC) + timedelta(seconds=self.seconds)

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Renew the lease while the body runs (nested and concurrent uses share one beat)."""
        self._holding += 1
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

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.lease.renew(self.until())
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
            released = await self.lease.release()
            if released and self.on_released is not None:
                await self.on_released()
        except Exception:  # they run out by themselves
            log.warning("giving back the %s lease failed", self.lease.name, exc_info=True)
            return 0
        return released
