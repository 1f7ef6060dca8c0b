"""One graphql-transport-ws socket: who is on it, the operations it runs, and how frames reach
it.

Frames are handed over by whichever task produces them (the multiplexer fans one result out to
every member in turn) and never make that task wait for this client: a frame the socket can
take now is written at once, as a hand-written endpoint would; once the client stops reading
(a phone on a slow link, an app in the background) and the socket's buffers are full, frames
wait in this connection's backlog, written by a task of its own as the client reads. So one
slow socket delays only itself, never the other sockets of a shared execution. A backlog past
``MAX_BACKLOG_BYTES`` ends the connection with 1013 (try again later): the client reconnects
and resumes with ``afterEventId``. Frames keep their order. A failed send marks the socket
closed; what is sent after that is dropped, and the session's receive loop sees the disconnect
and lets go of its operations.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.types import Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from resolvers.context import Context
from service.live.protocol import fit_reason

if TYPE_CHECKING:
    from service.live.multiplexer import Member

# A subscription shared through the multiplexer, or a query or mutation run for this socket.
Operation: TypeAlias = "Member | asyncio.Task[None]"

MAX_BACKLOG_BYTES = 1_048_576
"""Most bytes of frames one socket may have waiting for its client before it is closed."""
TOO_SLOW = 1013
TOO_SLOW_REASON = "Client too slow: reconnect and resume with afterEventId"
_GONE = (WebSocketDisconnect, RuntimeError, OSError)  # the client left, or the socket closed


class _Resumed:
    """Awaiting this finishes ``coroutine``, which was stepped once outside any task and
    suspended on ``waiting`` (a future, as asyncio's tasks expect): the awaiting task takes it
    over from there."""

    __slots__ = ("_coroutine", "_waiting")

    def __init__(self, coroutine: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coroutine = coroutine
        self._waiting = waiting

    def close(self) -> None:
        """Abandon the send (the task finishing it may never have started)."""
        self._coroutine.close()

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, signal = self._coroutine, self._waiting
        while True:
            try:
                sent = yield signal
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:  # a cancellation, passed on
                try:
                    signal = coroutine.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    signal = coroutine.send(sent)
                except StopIteration:
                    return


class Connection:
    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_close_after",
        "_held",
        "_send",
        "_writer",
        "closed",
        "context",
        "operations",
        "revoked",
        "token_id",
        "websocket",
    )

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
        self._backlog: deque[str] | None = None  # frames behind a send the client holds up
        self._backlog_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._held: _Resumed | None = None  # the send the client holds up
        self._close_after: tuple[int, str] | None = None

    def push(self, frame: str) -> None:
        """Hand one text frame to the socket without waiting for the client; dropped once the
        socket is closed."""
        if self.closed:
            return
        if self._backlog is not None:
            self._queue(frame)
            return
        sending = self._send({"type": "websocket.send", "text": frame})
        try:
            waiting = sending.send(None)
        except StopIteration:
            return  # written: the usual case
        except _GONE:
            self.closed = True
            return
        # The socket's buffers are full: finish this send, then the backlog, in a task.
        self._backlog = deque()
        self._held = _Resumed(sending, waiting)
        self._writer = asyncio.create_task(self._drain(self._held))

    async def send(self, frame: str) -> None:
        """``push`` for protocol frames (acknowledgements, errors, completions): in order with
        every other frame of the socket."""
        self.push(frame)

    def _queue(self, frame: str) -> None:
        assert self._backlog is not None
        if self._backlog_bytes + len(frame) > MAX_BACKLOG_BYTES:
            # This client cannot keep up: what waits is dropped and the socket ends once the
            # send in progress is through; the client resumes from its last event id.
            self._backlog.clear()
            self._backlog_bytes = 0
            self._close_after = (TOO_SLOW, TOO_SLOW_REASON)
            self.closed = True
            return
        self._backlog.append(frame)
        self._backlog_bytes += len(frame)

    async def _drain(self, first: _Resumed) -> None:
        backlog = self._backlog
        assert backlog is not None
        try:
            await first
            while backlog:
                frame = backlog.popleft()
                self._backlog_bytes -= len(frame)
                await self._send({"type": "websocket.send", "text": frame})
        except _GONE:
            self.closed = True
        finally:
            self._backlog = None
            self._backlog_bytes = 0
            self._writer = self._held = None
        if self._close_after is not None:
            code, reason = self._close_after
            with contextlib.suppress(*_GONE):
                await self.websocket.close(code, fit_reason(reason))

    async def close(self, code: int, reason: str = "") -> None:
        """Close the socket after the frames already handed over."""
        if self.closed:
            return
        self.closed = True
        if self._writer is not None:
            self._close_after = (code, reason)
            return
        with contextlib.suppress(*_GONE):  # already gone
            await self.websocket.close(code, fit_reason(reason))

    def stop_writing(self) -> None:
        """The session is over: stop writing what still waits for the client."""
        if self._writer is not None:
            self._writer.cancel()
        if self._held is not None:
            self._held.close()

    def forget(self, op_id: str, operation: Operation) -> None:
        """Let go of ``op_id`` if it still names ``operation`` (the id can then be reused)."""
        if self.operations.get(op_id) is operation:
            del self.operations[op_id]
