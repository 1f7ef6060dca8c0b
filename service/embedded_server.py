"""An ASGI app served by uvicorn inside a command's own event loop (the demo's temporary
server, the simulation's warehouse): on a socket bound beforehand, so there is no race for the
port, and without uvicorn's signal handlers, since Ctrl-C belongs to the command, which stops
the server on its way out."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp


class ServerStopped(RuntimeError):
    """The served app stopped during start-up (its lifespan failed, or the socket would not
    serve)."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp, sock: socket.socket, *, lifespan: str = "on", graceful: float = 5
) -> AsyncIterator[None]:
    """``app`` served on ``sock`` until the block ends (``ServerStopped`` if it stops during
    start-up); the socket is closed afterwards."""
    config = uvicorn.Config(
        app,
        log_config=None,
        lifespan=lifespan,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=graceful,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise ServerStopped("the server stopped during start-up")
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=graceful * 2 + 10)
        if not done:
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: raised above already if it mattered
        sock.close()
