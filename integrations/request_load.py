"""How busy this instance is answering HTTP requests, for background work to yield to them.

Requests and background work (the warehouse worker's task runs) share one event loop, so one
core. Under a load that keeps the core busy, a background cascade that keeps pace with the
requests halves the rate they are answered at: a withdraw's cascade (the cancel at the
warehouse, the refund, four events) costs about as much of the process as the request that
queued it. The work is queued so that the request can be answered at once; while requests wait,
the worker therefore takes its tasks in batches some time apart (``WorkerSettings.busy_pause``)
instead of as soon as they come, and catches up as the load falls.

``HttpMetricsMiddleware`` counts the requests in flight; the instance is busy while ``busy_at``
of them are (0: never), and counts as busy for a while after (``busy``): requests arrive in
bursts, and a closed loop of clients leaves moments with few in flight even when it keeps the
core busy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class RequestLoad:
    busy_at: int = 8
    in_flight: int = 0  # HTTP requests being answered now (WebSockets are not counted)
    busy_since: float = -math.inf  # ``time.monotonic()`` when that many were last in flight

    def entered(self) -> None:
        self.in_flight += 1
        if self._busy_now():
            self.busy_since = time.monotonic()

    def left(self) -> None:
        self.in_flight -= 1

    def busy(self, within: float = 0.0) -> bool:
        """Whether ``busy_at`` requests are in flight, or were in the last ``within`` seconds."""
        return self._busy_now() or time.monotonic() - self.busy_since <= within

    def _busy_now(self) -> bool:
        return 0 < self.busy_at <= self.in_flight
