"""Leases on background work: who does a piece of work, until when.

Every kind of background work is held by one instance at a time under a short lease that the
holder renews while the work runs (``integrations.heartbeat``) and gives back when it is done or
stops; a lease an instance left behind (it died, or hangs) runs out ``LEASE_SECONDS`` after its
last renewal at the latest, and another instance takes the work over then. Two shapes:

- ``RowLeases``: work rows (warehouse tasks, the store webhook inbox, tracking pushes), each
  taken by a conditional UPDATE that only matches while its lease is free
  (``lease_free``); a holder's leases on one table are renewed, or given back, together in one
  statement, by their owner's name.
- ``NamedLease``: a round of work that has no row of its own (the outbox publisher's round,
  warehouse reconciliation, the SLA sweep), one row of ``sweep_lease`` by name.

A holder that finds its lease taken over (it hung past the lease) does not apply an outcome
twice: every outcome is a compare-and-set on the holder's name or on the subject's status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.models import Model

from domain.db import transaction
from domain.persistence import named_leases
from domain.sla.models import SweepLease

# How long a lease lasts without a renewal: how long a dead or hung instance's work waits before
# another takes it over. Renewed every third of it while the work runs.
LEASE_SECONDS = 10.0
GIVEN_BACK = datetime(1970, 1, 1, tzinfo=UTC)  # a named lease's ``until`` once given back


def lease_free(now: datetime, *, field: str = "lease_until") -> Q:
    """Rows nobody holds: never leased, or whose lease (``field``) ran out before ``now``."""
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now})


class Lease(Protocol):
    """What ``integrations.heartbeat.Heartbeat`` renews and gives back."""

    name: str

    async def renew(self, until: datetime) -> int:
        """Extend what is held to ``until``; how many leases were extended."""
        ...

    async def release(self) -> int:
        """Give back what is held, free at once; how many leases were given back."""
        ...


@dataclass(frozen=True)
class RowLeases:
    """The leases ``owner`` holds on rows of ``model``: rows whose ``owner_field`` names it and
    that match ``held`` (still in work: a finished row has its owner cleared anyway)."""

    name: str
    model: type[Model]
    owner: str
    owner_field: str = "lease_owner"
    until_field: str = "lease_until"
    held: dict[str, Any] = field(default_factory=dict)

    def _mine(self) -> Any:
        return self.model.filter(**{self.owner_field: self.owner}, **self.held)

    async def renew(self, until: datetime) -> int:
        return int(await self._mine().update(**{self.until_field: until}))

    async def release(self) -> int:
        return int(await self._mine().update(**{self.owner_field: None, self.until_field: None}))


@dataclass
class NamedLease:
    """A round of work named ``name``, held by ``holder`` while ``until`` has not passed."""

    name: str
    holder: str
    until: datetime | None = None  # the end of this holder's lease as it last wrote it

    async def take(self, *, seconds: float = LEASE_SECONDS) -> bool:
        """Hold the round for ``seconds`` if nobody else does (or renew it); whether it is
        held. Skips the statement while this holder's lease has more than half to run."""
        now = datetime.now(UTC)
        if self.keeps(seconds, now=now):
            return True
        return await self.take_until(now + timedelta(seconds=seconds), now=now)

    def keeps(self, seconds: float, *, now: datetime) -> bool:
        """Whether this holder's lease, as it last wrote it, has more than half of ``seconds``
        to run at ``now`` (taking it again for ``seconds`` needs no statement then)."""
        return self.until is not None and self.until - now > timedelta(seconds=seconds / 2)

    async def take_until(self, until: datetime, *, now: datetime | None = None) -> bool:
        """Hold the round until ``until`` if nobody else holds it at ``now``."""
        now = now or datetime.now(UTC)
        taken = await named_leases.take(name=self.name, holder=self.holder, until=until, now=now)
        if not taken:
            try:
                async with transaction():
                    await SweepLease.create(name=self.name, holder=self.holder, until=until)
            except IntegrityError:  # another holder's row (or one made meanwhile)
                self.until = None
                return False
        self.until = until
        return True

    async def held_until(self) -> datetime | None:
        """When the current holder's lease runs out (None: nobody holds it)."""
        row = await SweepLease.get_or_none(name=self.name)
        if row is None or row.until < datetime.now(UTC):
            return None
        return row.until

    async def renew(self, until: datetime) -> int:
        renewed = await named_leases.renew(name=self.name, holder=self.holder, until=until)
        self.until = until if renewed else None
        return renewed

    async def release(self) -> int:
        self.until = None
        return await named_leases.renew(name=self.name, holder=self.holder, until=GIVEN_BACK)
