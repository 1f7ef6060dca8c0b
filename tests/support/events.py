"""Event ids in tests: the API's are opaque (``schema.event_ids``); tests that check order, gaps
and duplicates read the service's own number back with the key this process shares with the
servers it starts (white-box, as a client never could)."""

from __future__ import annotations

from schema.event_ids import decode


def seq_of(event_id: str) -> int:
    """The ``seq`` behind an event id (``gid://supplygraph/Event/<key>``)."""
    decoded = decode(event_id.rsplit("/", 1)[1])
    assert decoded is not None, f"not an event id of this service: {event_id!r}"
    return decoded[1]
