"""The broadcast channel events travel on, and their wire format."""

from __future__ import annotations

import json

from domain.events import PublishedEvent

EVENTS_CHANNEL = "supplygraph.events"


def encode(event: PublishedEvent) -> str:
    return json.dumps(event.to_wire(), separators=(",", ":"))


def decode(message: str) -> PublishedEvent:
    return PublishedEvent.from_wire(json.loads(message))
