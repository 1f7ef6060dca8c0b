"""A socket's frames never make their producer wait (``service.live.connection``): written at
once while the client reads, kept in order behind a send the client holds up, and the socket
ended with 1013 once too much waits."""

from __future__ import annotations

import asyncio
from typing import Any

from service.live.connection import MAX_BACKLOG_BYTES, TOO_SLOW, Connection


class FakeClient:
    """The ASGI send of one socket: frames land in ``received`` unless ``hold`` is set, as
    when the client stops reading and the transport pauses writing."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.closed_with: tuple[int, str] | None = None
        self.readable = asyncio.Event()
        self.readable.set()
        self.sends_in_progress = 0

    async def send(self, message: dict[str, Any]) -> None:
        self.sends_in_progress += 1
        try:
            await self.readable.wait()
            self.received.append(message["text"])
        finally:
            self.sends_in_progress -= 1

    async def close(self, code: int, reason: str = "") -> None:
        await self.readable.wait()
        self.closed_with = (code, reason)


def connection(client: FakeClient) -> Connection:
    return Connection(client, None, client.send)  # type: ignore[arg-type]


async def test_a_frame_the_socket_can_take_is_written_at_once_without_a_task() -> None:
    client = FakeClient()
    conn = connection(client)
    conn.push("a")
    conn.push("b")
    assert client.received == ["a", "b"]  # synchronously, before any await
    assert conn._writer is None


async def test_frames_behind_a_held_send_wait_in_order_and_the_producer_never_waits() -> None:
    client = FakeClient()
    conn = connection(client)
    client.readable.clear()  # the client stops reading
    for frame in ("1", "2", "3"):
        conn.push(frame)  # returns at once all the same
    await conn.send("complete")
    assert client.received == []
    client.readable.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert client.received == ["1", "2", "3", "complete"]
    assert conn._writer is None and conn._backlog is None
    conn.push("4")  # back to writing at once
    assert client.received[-1] == "4"


async def test_a_client_too_slow_for_the_backlog_is_closed_with_1013_after_the_held_send() -> None:
    client = FakeClient()
    conn = connection(client)
    client.readable.clear()
    frame = "x" * 1000
    for _ in range(MAX_BACKLOG_BYTES // 1000 + 5):
        conn.push(frame)
    assert conn.closed
    conn.push("dropped")
    client.readable.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert client.received == [frame]  # the send in progress, then nothing that waited
    assert client.closed_with is not None and client.closed_with[0] == TOO_SLOW


async def test_close_waits_for_the_frames_already_handed_over() -> None:
    client = FakeClient()
    conn = connection(client)
    client.readable.clear()
    conn.push("next")
    await conn.send("complete")
    await conn.close(4400, "bye")
    conn.push("after close")
    client.readable.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert client.received == ["next", "complete"]
    assert client.closed_with == (4400, "bye")


async def test_stop_writing_ends_a_writer_the_client_never_released() -> None:
    client = FakeClient()
    conn = connection(client)
    client.readable.clear()
    conn.push("stuck")
    writer = conn._writer
    assert writer is not None
    conn.stop_writing()
    await asyncio.gather(writer, return_exceptions=True)
    assert writer.cancelled() and client.sends_in_progress == 0
