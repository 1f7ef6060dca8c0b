"""Background loops of the process: woken after a commit that gave them work, and every
``poll_interval`` seconds anyway (for work left by other instances, retries that fell due, or a
wake-up that was missed). A round that fails is logged and the loop goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


class WakeableLoop(ABC):
    name = "background loop"

    def __init__(self, *, poll_interval: float) -> None:
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def interval(self) -> float:
        """Seconds to wait for a wake-up before the next round anyway."""
        return self._poll_interval

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            # On Python 3.11 ``wait_for`` drops a cancellation that arrives as its inner wait
            # completes (a wake-up at the same moment): the flag ends the loop all the same.
            self._stopping = True
            self._wake.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval())
            if self._stopping:
                return
            self._wake.clear()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: round failed", self.name)

    @abstractmethod
    async def round(self) -> None:
        """Do the work that is due."""
