"""Token buckets: the interface and the in-process implementation.

A bucket holds up to ``capacity`` points and regains ``rate`` points a second (Shopify calls
it a leaky bucket; what leaks is the cost already spent). ``take`` removes ``cost`` points if
they are there, else removes nothing and tells how long until they will be. A bucket nobody
took from is full, so only buckets short of full are stored: with Redis
(``service/limits/redis_buckets.py``) as keys expiring when full again, so every instance of a
deployment shares them; here in a dictionary bounded by ``MAX_BUCKETS``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

MAX_BUCKETS = 100_000
"""Buckets an instance keeps in memory; past this the least recently used is forgotten (it
starts again full), as is any that has refilled."""


@dataclass(frozen=True, slots=True)
class Take:
    """What became of a take: whether the points were removed, how many are left (or there,
    when refused), and the seconds until the cost asked for is available (0 when taken)."""

    taken: bool
    available: float
    retry_after: float


class Buckets(Protocol):
    async def take(self, key: str, cost: float, *, capacity: float, rate: float) -> Take:
        """Remove ``cost`` points from the bucket ``key`` if it holds them (``cost`` 0 reads
        it)."""
        ...

    async def close(self) -> None: ...


def refill(stored: float, elapsed: float, *, capacity: float, rate: float) -> float:
    return min(capacity, stored + max(0.0, elapsed) * rate)


def decide(available: float, cost: float, rate: float) -> Take:
    """The take of ``cost`` from a bucket holding ``available`` points."""
    if cost <= available:
        return Take(True, available - cost, 0.0)
    return Take(False, available, (cost - available) / rate)


class MemoryBuckets:
    """Buckets of this process: (points, when counted, when full again) by key, least
    recently used first."""

    def __init__(
        self, *, max_buckets: int = MAX_BUCKETS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[str, tuple[float, float, float]] = OrderedDict()
        self._max = max_buckets
        self._clock = clock

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, key: str, cost: float, *, capacity: float, rate: float) -> Take:
        now = self._clock()
        stored = self._buckets.pop(key, None)
        available = capacity
        if stored is not None:
            available = refill(stored[0], now - stored[1], capacity=capacity, rate=rate)
        result = decide(available, cost, rate)
        if result.available < capacity:
            full_at = now + (capacity - result.available) / rate
            self._buckets[key] = (result.available, now, full_at)
        self._forget_idle(now)
        return result

    def _forget_idle(self, now: float) -> None:
        """Drop the least recently used bucket if the dictionary is over its bound, and those
        at its head that have refilled since (a few per take: idle buckets go without a timer)."""
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        for _ in range(2):
            oldest = next(iter(self._buckets.items()), None)
            if oldest is None or oldest[1][2] > now:
                return
            del self._buckets[oldest[0]]

    async def close(self) -> None:
        self._buckets.clear()
