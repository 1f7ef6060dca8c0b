"""Clean shutdown: what the app does the moment its process is asked to stop (issue 22).

An orchestrator stops an instance with SIGTERM (Ctrl-C sends SIGINT). uvicorn alone would stop
accepting, close each live socket with 1012 and no reason, wait for requests in flight, and
run the lifespan's shutdown only then, the background loops taking new work until that very
end. The lifespan registers a ``Drain`` with ``compat.uvicorn.on_exit`` instead: it starts as
the signal arrives, and uvicorn's shutdown waits for it. In order, it

1. marks the app draining: ``/readyz`` answers 503, so a load balancer sends it no more
   traffic (``/healthz`` still answers 200: the process is alive, only leaving);
2. stops the loops that take work (store inbox, warehouse tasks, tracking pushes, SLA sweeps),
   each ``stop()`` handing back the leases it holds so that another instance takes the work
   at once. The outbox publisher runs on until the lifespan ends: requests still in flight
   commit events that must be published;
3. closes every live socket with 1012 (Service Restart) and a reason saying to reconnect and
   resume with ``afterEventId``; a socket that opens after that is closed the same way.

uvicorn then finishes the HTTP requests in flight, as before, and the lifespan's shutdown stops
everything (calling each loop's ``stop()`` again, which does nothing the second time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from service.live.sockets import LiveSockets

log = logging.getLogger(__name__)


class Stoppable(Protocol):
    async def stop(self) -> None:
        """Take no more work and hand back what is held; safe to call twice."""


class Drain:
    """One app's drain; ``draining`` once it has begun. Runs once, however often called."""

    def __init__(self, *, loops: Sequence[Stoppable], sockets: LiveSockets) -> None:
        self.loops = loops
        self.sockets = sockets
        self.draining = False
        self.took: float | None = None  # seconds the drain took, once it has

    async def __call__(self) -> None:
        if self.draining:
            return
        self.draining = True
        began = time.monotonic()
        log.info(
            "shutdown asked: draining (readyz 503, %d background loops to stop, "
            "%d live sockets to close)",
            len(self.loops),
            len(self.sockets),
        )
        results = await asyncio.gather(
            *(loop.stop() for loop in self.loops), return_exceptions=True
        )
        stopped: list[str] = []
        for loop, result in zip(self.loops, results, strict=True):
            if isinstance(result, BaseException):
                log.error("draining: %s did not stop", type(loop).__name__, exc_info=result)
            else:
                stopped.append(type(loop).__name__)
        closed = await self.sockets.close_all()
        self.took = time.monotonic() - began
        log.info(
            "drained in %.1f ms: stopped %s; closed %d live sockets with 1012 (Service Restart); "
            "in-flight requests finish next",
            self.took * 1000,
            ", ".join(stopped) or "no background loop",
            closed,
        )
