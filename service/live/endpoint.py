"""The WebSocket endpoint at ``/graphql``: checks the page's origin, picks the subprotocol, and
serves graphql-transport-ws itself (``Session``) or hands a legacy graphql-ws socket, whole, to
Strawberry's view. Either kind is counted in ``sockets`` while it is open, so that a stopping
process closes them all with 1012 and a reason (``service/live/sockets.py``)."""

from __future__ import annotations

import logging

from starlette import status
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.subscriptions import GRAPHQL_WS_PROTOCOL

from compat.strawberry import is_same_origin
from service.graphql_view import GraphQLView
from service.live.multiplexer import Multiplexer
from service.live.protocol import CloseCode, pick_subprotocol
from service.live.session import Session
from service.live.sockets import HandedOver, LiveSockets
from service.settings import Settings

log = logging.getLogger(__name__)


class LiveEndpoint:
    """ASGI app for WebSockets; ``app.state.live`` holds the multiplexer (set by the lifespan)."""

    def __init__(self, view: GraphQLView, settings: Settings) -> None:
        self.view = view
        self._max_tokens = settings.max_query_tokens
        self.sockets = LiveSockets()

    def origin_allowed(self, websocket: WebSocket) -> bool:
        """Strawberry's rule: clients that send no ``Origin`` (not browsers) and same-origin
        pages are let in; other origins only if the view allows them (``WS_ALLOWED_ORIGINS``)."""
        origin = websocket.headers.get("origin")
        if origin is None:
            return True
        host = websocket.headers.get("host")
        if websocket.headers.get("sec-fetch-site") == "same-origin" or is_same_origin(origin, host):
            return True
        if self.view.is_websocket_origin_allowed(websocket, origin):
            return True
        log.warning("Rejected WebSocket connection from origin %r to host %r", origin, host)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive=receive, send=send)
        if not self.origin_allowed(websocket):
            # closing before accepting answers the handshake with 403
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
            return
        subprotocol = pick_subprotocol(scope.get("subprotocols") or ())
        if subprotocol == GRAPHQL_WS_PROTOCOL:
            handed = HandedOver(send)
            async with self.sockets.held(handed.close):
                await self.view(scope, receive, handed.send)
            return
        await websocket.accept(subprotocol=subprotocol)
        if subprotocol is None:
            await websocket.close(
                CloseCode.SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable"
            )
            return
        multiplexer: Multiplexer = websocket.app.state.live
        context = await self.view.get_context(websocket, response=websocket)
        session = Session(
            websocket,
            context,
            view=self.view,
            multiplexer=multiplexer,
            max_tokens=self._max_tokens,
            send=send,
        )
        async with self.sockets.held(session.close):
            await session.run()
