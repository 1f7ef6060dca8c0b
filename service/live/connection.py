"""One graphql-transport-ws socket: who is on it, the operations it runs, and how frames reach
it.

Frames are sent by whichever task produces them (the multiplexer fans a result out to every
member in turn, as a hand-written endpoint would), each frame whole, so the frames of one
operation keep their order. A failed send marks the socket closed; what is sent after that is
dropped, and the session's receive loop sees the disconnect and lets go of its operations.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, TypeAlias

from starlette.types import Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from resolvers.context import Context
from service.live.protocol import fit_reason

if TYPE_CHECKING:
    from service.live.multiplexer import Member

# A subscription shared through the multiplexer, or a query or mutation run for this socket.
Operation: TypeAlias = "Member | asyncio.Task[None]"


class Connection:
    __slots__ = ("_send", "closed", "context", "operations", "revoked", "token_id", "websocket")

    def __init__(self, websocket: WebSocket, context: Context, send: Send) -> None:
        """``send``: the ASGI send of the socket's scope, which frames go straight to (once the
        socket is accepted, ``WebSocket.send`` only checks a state this class keeps itself; a
        fan-out of one result to many sockets pays for every layer once per socket)."""
        self.websocket = websocket
        self._send = send
        self.context = context
        self.operations: dict[str, Operation] = {}
        self.token_id: str | None = None
        self.revoked = False
        self.closed = False

    async def send(self, frame: str) -> None:
        """Send one text frame; dropped once the socket is closed."""
        if self.closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": frame})
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True  # the client is gone, or the socket was closed meanwhile

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # already gone
            await self.websocket.close(code, fit_reason(reason))

    def forget(self, op_id: str, operation: Operation) -> None:
        """Let go of ``op_id`` if it still names ``operation`` (the id can then be reused)."""
        if self.operations.get(op_id) is operation:
            del self.operations[op_id]
