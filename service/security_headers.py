"""Standard security headers on every HTTP answer, and HSTS where the request came over TLS.

Added only where the answer has not set the header itself (the dashboard and GraphiQL pages
send their own Content-Security-Policy):

- ``X-Content-Type-Options: nosniff``: a JSON answer is never run as a script or page;
- ``X-Frame-Options: DENY`` and ``frame-ancestors 'none'``: no page of ours in another's frame;
- ``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`` on everything else
  (JSON, metrics, plain text): nothing in such an answer may load or run anything;
- ``Referrer-Policy: no-referrer``;
- ``Strict-Transport-Security: max-age=HSTS_SECONDS`` when the request's scheme is https: behind
  a TLS-terminating proxy that is what uvicorn's ``--proxy-headers`` (the default for addresses
  in ``FORWARDED_ALLOW_IPS``) makes of ``X-Forwarded-Proto: https``. Never over plain http,
  where a browser ignores it anyway.

The ``server: uvicorn`` banner is off where uvicorn is configured (``server_header=False``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULTS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts_seconds: int) -> None:
        self.app = app
        self.hsts = f"max-age={hsts_seconds}".encode() if hsts_seconds > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(DEFAULTS)
        if self.hsts is not None and scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", self.hsts))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
