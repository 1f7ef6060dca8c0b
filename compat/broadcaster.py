"""broadcaster: the names it exports only from private modules.

``integrations.bus.broadcast`` builds on broadcaster's backend interface and events (public),
its in-memory backend and its subscriber handle (``broadcaster._backends.memory``,
``broadcaster._base``: not exported by the package).
"""

from __future__ import annotations

import asyncio

from broadcaster._backends.memory import MemoryBackend
from broadcaster._base import Subscriber, Unsubscribed

PACKAGE = "broadcaster"
TESTED_WITH = "0.3.1"

__all__ = ["MemoryBackend", "Subscriber", "Unsubscribed", "probe"]


async def probe() -> None:
    """Use each internal as ``integrations.bus.broadcast`` does; raise if one moved."""
    backend = MemoryBackend("memory://")
    await backend.connect()
    await backend.subscribe("probe")
    await backend.publish("probe", "message")
    event = await asyncio.wait_for(backend.next_published(), 1)
    assert (event.channel, event.message) == ("probe", "message")
    await backend.unsubscribe("probe")
    await backend.disconnect()
    queue: asyncio.Queue[object] = asyncio.Queue()
    queue.put_nowait(event)
    queue.put_nowait(None)
    subscriber = Subscriber(queue)  # type: ignore[arg-type]
    assert await subscriber.get() is event
    try:
        await subscriber.get()
    except Unsubscribed:
        return
    raise AssertionError("Subscriber.get() no longer raises Unsubscribed at the end")
