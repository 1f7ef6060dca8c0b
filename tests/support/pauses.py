"""Pauses of this (the test) process: garbage collections and event-loop stalls, timestamped.

A latency measured by a client in the test process includes the process's own pauses; when a
delivery is late, ``Pauses.during`` says whether this process was paused meanwhile, so a
failure tells a slow server from a stalled client.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pause:
    kind: str  # "gc-2" (a collection of that generation) or "loop" (the event loop stalled)
    start: float  # wall clock, seconds
    seconds: float


@dataclass
class Pauses:
    """Records collections longer than ``gc_min`` and event-loop stalls longer than
    ``loop_min`` seconds while running (``async with Pauses() as pauses``)."""

    gc_min: float = 0.05
    loop_min: float = 0.1
    tick: float = 0.01
    seen: list[Pause] = field(default_factory=list)
    _gc_started: float | None = None
    _ticker: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            took = time.perf_counter() - self._gc_started
            self._gc_started = None
            if took >= self.gc_min:
                self.seen.append(Pause(f"gc-{info['generation']}", time.time() - took, took))

    async def _watch_loop(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.tick)
            late = time.perf_counter() - before - self.tick
            if late >= self.loop_min:
                self.seen.append(Pause("loop", time.time() - late, late))

    async def __aenter__(self) -> Pauses:
        gc.callbacks.append(self._on_gc)
        self._ticker = asyncio.create_task(self._watch_loop())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._on_gc)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    def during(self, start: float, end: float) -> list[Pause]:
        """The pauses that overlap the wall-clock interval [start, end]."""
        return [p for p in self.seen if p.start < end and p.start + p.seconds > start]

    def describe(self, start: float, end: float) -> str:
        found = self.during(start, end)
        if not found:
            return "the test process was not paused meanwhile"
        return "the test process was paused meanwhile: " + ", ".join(
            f"{p.kind} {p.seconds * 1000:.0f} ms" for p in found
        )


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep what is alive now out of the garbage collector's full collections for a while.

    Late in the suite the test process holds millions of objects left by earlier tests (their
    apps, schemas and clients); a full collection of them takes over a second, and a client in
    this process stamps its frames that much late. A test that bounds latencies freezes that
    heap first, so its bound measures the servers, not the suite's garbage; what it allocates
    itself is still collected.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
