"""uvicorn: a server whose main loop does not wake ten times a second.

``uvicorn.Server.main_loop`` (not documented) sleeps 0.1 s between calls of ``on_tick(counter)``,
which refreshes the ``date`` header when ``counter % 10 == 0`` and answers True once
``should_exit`` is set. Each wake-up of an idle event loop costs about 0.13 ms of CPU on the
bench machine, so an idle ``main.py serve`` spent 1.3 ms of CPU per second on its ticks alone
(issue 20: at most 1 ms for everything). ``QuietServer`` calls ``on_tick`` once a second, every
call a date refresh (the header's resolution is a second), and its signal handler wakes the
main loop at once, so Ctrl-C and SIGTERM are as quick as before.

Relies on: ``Server._serve`` awaiting ``main_loop()`` between start-up and shutdown;
``on_tick(counter)`` as described; ``handle_exit(sig, frame)`` being the handler uvicorn
installs for SIGINT and SIGTERM; ``uvicorn.run`` catching the ``KeyboardInterrupt`` its
re-raised signal causes and exiting with ``STARTUP_FAILURE`` when the app did not start.
``probe()`` serves a request with the date header and stops the server through its main loop.
Several worker processes (``WORKERS`` > 1) are uvicorn's own supervisor and servers, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

PACKAGE = "uvicorn"
TESTED_WITH = "0.54.0"

__all__ = ["QuietServer", "probe", "run"]


class QuietServer(uvicorn.Server):
    TICK = 1.0  # seconds between date refreshes (and checks of ``should_exit``)

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_now: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._exit_now = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864_000  # uvicorn's own wrap: ten ticks a second, a day
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.TICK):
                    await self._exit_now.wait()
            should_exit = await self.on_tick(counter)

    def wake_main_loop(self) -> None:
        """Have the main loop look at ``should_exit`` now (safe from a signal handler)."""
        if self._loop is not None and self._exit_now is not None:
            self._loop.call_soon_threadsafe(self._exit_now.set)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.wake_main_loop()


def run(app: str, **options: Any) -> None:
    """``uvicorn.run(app, **options)``, served by ``QuietServer`` when one process serves."""
    config = uvicorn.Config(app, **options)
    if config.workers > 1 or config.reload:
        uvicorn.run(app, **options)
        return
    config.load_app()  # an app that does not import fails here, as uvicorn.run makes it
    server = QuietServer(config)
    with contextlib.suppress(KeyboardInterrupt):  # the signal that stopped it, raised again
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


async def probe() -> None:
    """Serve one request on a free port and check its date header, then stop the server by
    setting ``should_exit`` and waking the main loop; raise if any of it no longer works."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = QuietServer(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, no event
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")
        head = (await asyncio.wait_for(reader.read(), 10)).lower()
        writer.close()
        assert head.startswith(b"http/1.1 204") and b"\r\ndate: " in head, head
        server.should_exit = True
        server.wake_main_loop()
        await asyncio.wait_for(serving, 10)
    finally:
        if not serving.done():
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
