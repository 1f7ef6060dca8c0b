"""The broadcast channel events travel on, and their wire format.

Every deployment has a channel of its own, named after its database: instances of one
deployment share the database and so the channel, and two deployments (or test runs) sharing one
Redis never hear each other's events. An event heard from another deployment would otherwise be
dispatched here (its sequence numbers and organisation ids mean nothing in this database).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlparse

from domain.events import PublishedEvent

EVENTS_CHANNEL = "supplygraph.events"


def events_channel(database_url: str) -> str:
    """``supplygraph.events.<digest of the database's host, port and name>`` (for SQLite, of the
    file's absolute path). Credentials and options do not count, so every instance of a
    deployment gets the same channel however it logs in."""
    url = urlparse(database_url)
    if url.scheme == "sqlite":
        where = str(Path(database_url.removeprefix("sqlite://")).resolve())
    else:
        where = f"{(url.hostname or '').lower()}:{url.port or 5432}{url.path}"
    return f"{EVENTS_CHANNEL}.{hashlib.sha256(where.encode()).hexdigest()[:16]}"


def encode(event: PublishedEvent) -> str:
    return json.dumps(event.to_wire(), separators=(",", ":"))


def decode(message: str) -> PublishedEvent:
    return PublishedEvent.from_wire(json.loads(message))
