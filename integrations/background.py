"""Background loops of the process. A loop sleeps until something wakes it
(``integrations.wakeups``: a commit of this process that gave it work, a NOTIFY from another
process on PostgreSQL), until the work it knows of falls due (``next_due``: a retry put off, a
lease of another instance that runs out), or until its safety sweep (``interval``), whichever
comes first; then it runs a round. It never polls: an idle instance spends its CPU on nothing.

A round runs at start (work left from before), then as above. A round that fails is logged and
the next one comes after a doubling pause (at most the sweep interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from abc import ABC, abstractmethod
from datetime import UTC, datetime

log = logging.getLogger(__name__)

# After a round, work due already (written meanwhile, or taken by nobody) is looked at again
# after this pause, doubled each time it happens again in a row: a row that stays due without
# being taken cannot make the loop spin.
MIN_PAUSE = 0.05
# Past a due time, the pause until the round that takes the work: the clock of ``due_at`` and
# the claim's ``now`` are this process's, so a little is enough.
DUE_SLACK = 0.01
FAILED_PAUSE = 0.5  # after a failed round; doubles with each failure in a row
MAX_DOUBLINGS = 16  # (the sweep interval bounds every pause long before)


_running: weakref.WeakSet[WakeableLoop] = weakref.WeakSet()


def running_loops() -> list[WakeableLoop]:
    """The loops this process runs (for ``/metrics``: the rounds of each)."""
    return sorted(_running, key=lambda loop: loop.name)


class WakeableLoop(ABC):
    name = "background loop"

    def __init__(self, *, sweep_interval: float) -> None:
        """``sweep_interval``: the longest the loop sleeps with nothing waking it."""
        self._sweep_interval = sweep_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._due: datetime | None = None
        self._late = 0  # rounds in a row after which work was due already
        self._failures = 0  # failed rounds in a row
        self.rounds = 0

    def wake(self) -> None:
        self._wake.set()

    def interval(self) -> float:
        """Seconds to sleep before a round anyway (the safety sweep)."""
        return self._sweep_interval

    async def next_due(self) -> datetime | None:
        """When the first work this loop would take next falls due, read after a round (None:
        none is known; the loop sleeps until woken or its sweep)."""
        return None

    async def start(self) -> None:
        self._stopping = False
        self._wake.set()  # a first round at once
        self._task = asyncio.create_task(self._run(), name=self.name)
        _running.add(self)

    async def stop(self) -> None:
        _running.discard(self)
        if self._task is not None:
            # The flag ends the loop even if the cancellation is lost in a wait that completes
            # at the same moment (a wake-up arriving as it is cancelled).
            self._stopping = True
            self._wake.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def pause(self) -> float:
        """Seconds to wait for a wake-up before the next round."""
        pause = self.interval()
        if self._failures:
            pause = min(pause, FAILED_PAUSE * 2 ** min(self._failures - 1, MAX_DOUBLINGS))
        if self._due is not None:
            until = (self._due - datetime.now(UTC)).total_seconds() + DUE_SLACK
            pause = min(pause, max(until, MIN_PAUSE * 2 ** min(self._late, MAX_DOUBLINGS)))
        return max(pause, 0.0)

    async def _run(self) -> None:
        while not self._stopping:
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.pause()):
                        await self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            try:
                await self.round()
                # woken meanwhile: the next round comes at once and reads what is due after it
                self._due = None if self._wake.is_set() else await self.next_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._failures += 1
                self._due = None
                log.exception("%s: round failed", self.name)
                continue
            finally:
                self.rounds += 1
            self._failures = 0
            late = self._due is not None and self._due <= datetime.now(UTC)
            self._late = self._late + 1 if late else 0

    @abstractmethod
    async def round(self) -> None:
        """Do the work that is due."""
