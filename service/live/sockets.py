"""The live WebSockets open on one app, so that a restart closes them all the same way.

A process asked to stop (``service/shutdown.py``) closes every live socket with 1012 (Service
Restart) and ``RESTART_REASON``: a graphql-ws client treats 1012 as a reason to reconnect,
and the reason tells whoever reads it to resume with ``afterEventId`` (another instance, or
this one started again, replays what was missed). Without this, uvicorn's own shutdown would
close them later with 1012 and no reason. Both kinds of socket are counted: graphql-transport-ws
sessions (``Session.close``) and legacy graphql-ws sockets handed to Strawberry, which are
closed through their ASGI send (``HandedOver``). A socket that opens once the drain has begun
is closed the same way as soon as it is accepted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.types import Message, Send

from service.live.protocol import CloseCode, fit_reason

log = logging.getLogger(__name__)

RESTART_REASON = "Server restarting: reconnect and resume with afterEventId"

Closer = Callable[[int, str], Awaitable[None]]
"""Closes one socket with a code and a reason (after the frames already handed to it)."""

_GONE = (RuntimeError, OSError)  # the socket is closed already, or the client left


class LiveSockets:
    """The sockets open on the app, each known by the function that closes it."""

    def __init__(self) -> None:
        self._open: dict[object, Closer] = {}
        self.closing: tuple[int, str] | None = None  # set by ``close_all``: new ones are closed

    def __len__(self) -> int:
        return len(self._open)

    @contextlib.asynccontextmanager
    async def held(self, close: Closer) -> AsyncIterator[None]:
        """Count a socket as open while the body serves it; one that opens after
        ``close_all`` is closed at once with the same code and reason."""
        key = object()
        self._open[key] = close
        try:
            if self.closing is not None:
                await close(*self.closing)
            yield
        finally:
            del self._open[key]

    async def close_all(
        self, code: int = CloseCode.SERVICE_RESTART, reason: str = RESTART_REASON
    ) -> int:
        """Close every open socket with ``code`` and ``reason``, and those that open from now
        on; how many were open."""
        self.closing = (code, reason)
        closers = list(self._open.values())
        for close in closers:
            try:
                await close(code, reason)
            except _GONE:
                pass  # closed meanwhile
            except Exception:  # one socket's failure leaves the others to close
                log.exception("closing a live socket failed")
        return len(closers)


class HandedOver:
    """The ASGI send of a graphql-ws socket served by Strawberry, through which the socket can
    be closed from outside (``close``); what Strawberry sends after that is dropped, as it
    would be for a client that left. A close asked before Strawberry has accepted the socket
    is sent right after the acceptance (a close before it would refuse the handshake, which a
    client cannot tell from a server that is down)."""

    __slots__ = ("_accepted", "_closed", "_pending", "_send")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._accepted = False
        self._closed = False
        self._pending: tuple[int, str] | None = None

    async def send(self, message: Message) -> None:
        if self._closed:
            return
        kind = message["type"]
        if kind == "websocket.close":
            self._closed = True
        await self._send(message)
        if kind == "websocket.accept":
            self._accepted = True
            if self._pending is not None:
                await self.close(*self._pending)

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        if not self._accepted:
            self._pending = (code, reason)
            return
        self._closed = True
        with contextlib.suppress(*_GONE):
            await self._send(
                {"type": "websocket.close", "code": code, "reason": fit_reason(reason)}
            )
