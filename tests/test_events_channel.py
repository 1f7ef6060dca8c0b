"""Each deployment's events travel on a channel of its own, named after its database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.events import PublishedEvent
from integrations.bus.channel import EVENTS_CHANNEL, decode_batch, encode_batch, events_channel


def test_instances_of_one_database_share_a_channel_however_they_log_in() -> None:
    a = events_channel("postgres://app:secret@DB.internal:5432/supply")
    b = events_channel("postgres://reader@db.internal/supply?sslmode=require")
    assert a == b and a.startswith(f"{EVENTS_CHANNEL}.")


def test_other_databases_get_other_channels(tmp_path: Path) -> None:
    channels = {
        events_channel("postgres://postgres@127.0.0.1:5432/test"),
        events_channel("postgres://postgres@127.0.0.1:5432/test_other"),
        events_channel("postgres://postgres@127.0.0.1:5433/test"),
        events_channel(f"sqlite://{tmp_path / 'one.sqlite3'}"),
        events_channel(f"sqlite://{tmp_path / 'two.sqlite3'}"),
    }
    assert len(channels) == 5


def test_a_relative_sqlite_path_names_the_same_file_as_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "db.sqlite3"
    assert events_channel("sqlite://db.sqlite3") == events_channel(f"sqlite://{absolute}")


def _event(seq: int) -> PublishedEvent:
    return PublishedEvent(
        seq=seq,
        type="ORDER_STATUS_CHANGED",
        subject_type="Order",
        subject_id=str(seq),
        payload={"orderId": seq, "reason": "naïve ✓"},
        audience=frozenset({3, 1}),
        actor_user_id=None,
        created_at=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )


def test_a_message_carries_a_publisher_round_and_a_receiver_skips_what_it_has() -> None:
    events = [_event(seq) for seq in (7, 8, 9)]
    message = encode_batch(events)
    assert decode_batch(message) == events
    assert decode_batch(message, after_seq=8) == events[2:]
    assert decode_batch(message, after_seq=9) == []


def test_a_message_of_one_event_as_earlier_versions_sent_is_read() -> None:
    event = _event(5)
    assert decode_batch(json.dumps(event.to_wire())) == [event]
