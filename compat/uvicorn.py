"""uvicorn: a server whose main loop does not wake ten times a second.

``uvicorn.Server.main_loop`` (not documented) sleeps 0.1 s between calls of ``on_tick(counter)``,
which refreshes the ``date`` header when ``counter % 10 == 0`` and answers True once
``should_exit`` is set. Each wake-up of an idle event loop costs about 0.13 ms of CPU on the
bench machine, so an idle ``main.py serve`` spent 1.3 ms of CPU per second on its ticks alone
(issue 20: at most 1 ms for everything). ``QuietServer`` calls ``on_tick`` once a second, every
call a date refresh (the header's resolution is a second), and its signal handler wakes the
main loop at once, so Ctrl-C and SIGTERM are as quick as before.

Clean shutdown (issue 22): uvicorn's answer to SIGTERM or SIGINT comes in its ``shutdown()``,
which stops accepting, closes each WebSocket with 1012 and no reason, waits for requests, and
runs the lifespan's shutdown last. The app hears of the signal before that: the hooks given
to ``on_exit`` (``service/shutdown.py`` gives the app's drain) start as the signal arrives, and
``QuietServer.shutdown`` waits for them (at most ``EXIT_HOOKS_TIMEOUT``) before uvicorn's own.
After a clean shutdown asked by SIGTERM the process exits 0, as it does after Ctrl-C (uvicorn
would raise the signal again once its handlers are restored, and the process would end killed
by SIGTERM).

Relies on: ``Server._serve`` awaiting ``main_loop()`` between start-up and ``shutdown(sockets)``;
``on_tick(counter)`` as described; ``handle_exit(sig, frame)`` being the handler uvicorn
installs for SIGINT and SIGTERM; ``capture_signals()`` raising again, on its way out, the
signals listed in ``_captured_signals``; ``uvicorn.run`` catching the ``KeyboardInterrupt``
its re-raised SIGINT causes and exiting with ``STARTUP_FAILURE`` when the app did not start.
``probe()`` serves a request with the date header and stops the server through its main loop,
running an exit hook before uvicorn's shutdown. Several worker processes (``WORKERS`` > 1) are
uvicorn's own supervisor and servers, unchanged: no exit hook runs there, and each lifespan's
shutdown stops what the hooks would have (later, after uvicorn's).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

PACKAGE = "uvicorn"
TESTED_WITH = "0.54.0"

__all__ = ["EXIT_HOOKS_TIMEOUT", "QuietServer", "on_exit", "probe", "run"]

log = logging.getLogger(__name__)

ExitHook = Callable[[], Awaitable[object]]
EXIT_HOOKS_TIMEOUT = 5.0  # seconds uvicorn's shutdown waits for the exit hooks to end
_exit_hooks: list[ExitHook] = []  # the process's: a signal is the whole process's


def on_exit(hook: ExitHook) -> Callable[[], None]:
    """Have ``hook()`` run as soon as SIGTERM or SIGINT reaches a ``QuietServer`` of this
    process (or its shutdown begins otherwise), before uvicorn's shutdown, which waits for it;
    returns the function that takes it off again."""
    _exit_hooks.append(hook)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _exit_hooks.remove(hook)

    return remove


async def _run_exit_hooks(hooks: list[ExitHook]) -> None:
    results = await asyncio.gather(*(hook() for hook in hooks), return_exceptions=True)
    for hook, result in zip(hooks, results, strict=True):
        if isinstance(result, BaseException):
            log.error("exit hook %r failed", hook, exc_info=result)


class QuietServer(uvicorn.Server):
    TICK = 1.0  # seconds between date refreshes (and checks of ``should_exit``)

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_now: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hooks_running: asyncio.Future[None] | None = None

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
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_exit_hooks)
        self.wake_main_loop()

    def _start_exit_hooks(self) -> None:
        """Start the exit hooks (once), in the event loop, in a context of their own: the
        signal interrupts whatever runs, and a request's context (its id in the log lines)
        would be theirs otherwise."""
        if self._hooks_running is None and _exit_hooks:
            self._hooks_running = asyncio.get_running_loop().create_task(
                _run_exit_hooks(list(_exit_hooks)), context=contextvars.Context()
            )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """The exit hooks first (started by the signal already, or now), then uvicorn's
        shutdown; a second Ctrl-C (``force_exit``) waits for them no longer."""
        self._start_exit_hooks()
        hooks = self._hooks_running
        if hooks is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + EXIT_HOOKS_TIMEOUT
            while not hooks.done() and not self.force_exit and loop.time() < deadline:
                await asyncio.wait({hooks}, timeout=min(self.TICK, deadline - loop.time()))
            if not hooks.done():
                log.error("exit hooks still running after %g s: shutting down", EXIT_HOOKS_TIMEOUT)
                hooks.cancel()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, except that a SIGTERM is not raised again once the server has shut down
        cleanly: the process exits 0 (SIGINT is, and ``run`` catches its KeyboardInterrupt)."""
        with super().capture_signals():
            yield
            self._captured_signals[:] = [s for s in self._captured_signals if s != signal.SIGTERM]


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
    setting ``should_exit`` and waking the main loop, and check that an exit hook ran while
    the server still listened; raise if any of it no longer works."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = QuietServer(config)
    assert isinstance(server._captured_signals, list)
    listening: list[bool] = []

    async def hook() -> None:
        listening.append(all(s.is_serving() for s in server.servers))

    others = _exit_hooks[:]  # the apps this process serves, if any, are not drained here
    _exit_hooks[:] = [hook]
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
        assert listening == [True], listening
    finally:
        _exit_hooks[:] = others
        if not serving.done():
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
