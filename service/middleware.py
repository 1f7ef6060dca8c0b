"""ASGI middleware: request ids and the request body limit."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability import bind_request, new_request_id, unbind_request


class RequestIdMiddleware:
    """Gives every HTTP request and WebSocket connection an id, echoed as ``X-Request-Id``.

    The id is bound for the request's log lines (and ``request_id_var``) until it ends, with
    the organisation the view binds once the viewer is known (``service/observability.py``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        request_id = new_request_id(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        binding = bind_request(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        # a WebSocket has no response headers to add to: its frames go on unwrapped (a result
        # fanned out to many sockets would pay for the wrapper once per socket)
        outgoing = send if scope["type"] == "websocket" else send_with_id
        try:
            await self.app(scope, receive, outgoing)
        finally:
            unbind_request(binding)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses HTTP bodies over ``max_bytes`` with 413 and a GraphQL-shaped error.

    Checked on ``Content-Length`` up front and while reading (chunked bodies), so an oversized
    body is never held in memory. WebSocket messages are limited by uvicorn (``ws_max_size``).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "errors": [
                    {
                        "message": f"Request body too large: at most {self.max_bytes} bytes.",
                        "extensions": {"code": "PAYLOAD_TOO_LARGE"},
                    }
                ]
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
