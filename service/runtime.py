"""Garbage-collector settings for a long-running server process.

CPython's defaults (a young collection every 700 net allocations, a full one when enough has
survived) suit short scripts. A server builds hundreds of objects per request and holds tens
of thousands more per thousand WebSocket subscribers, and a profile of the live-subscriber
benchmark showed collections taking a large share of its CPU: a young-generation pass every
few milliseconds under load and full passes of 100-185 ms over everything the process had
ever loaded (modules, the schema, ORM metadata).

``tune`` runs once the application has started: it collects, then freezes what survived (the
startup objects, which live as long as the process, are no longer scanned by any collection)
and lets ``YOUNG_THRESHOLD`` allocations happen between young collections. Memory freed by
reference counting, which is nearly all of it, is unaffected; only cycles wait longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLDS = (20, 20)


def tune() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
