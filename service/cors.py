"""CORS for browser apps on other origins (``CORS_ALLOWED_ORIGINS``).

Off by default: without allowed origins the app sends no CORS header at all, and a browser
keeps pages on other origins from reading its answers. With them, Starlette's
``CORSMiddleware`` answers preflights (``OPTIONS`` with ``Access-Control-Request-Method``) and
adds ``Access-Control-Allow-Origin`` to the answers to allowed origins. Credentials (cookies)
stay off: the API authenticates with an ``Authorization: Bearer`` header, which a page sends
explicitly.

CORS does not cover WebSockets: browsers do not ask before opening one, so the socket endpoint
checks the ``Origin`` itself against ``WS_ALLOWED_ORIGINS`` (``service/live/endpoint.py``). A
browser app on another origin that also subscribes needs its origin in both settings.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from service.settings import Settings

ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
# What GraphQL clients send beyond the CORS-safelisted headers: Apollo Client (its CSRF
# header, operation name and client awareness), Relay and urql (accept, content-type), and
# our request id.
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "x-request-id",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "apollographql-client-name",
    "apollographql-client-version",
)
# response headers a page may read besides the safelisted ones
EXPOSED_HEADERS = ("x-request-id", "x-cache", "retry-after")
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer


def cors_middleware(settings: Settings) -> list[Middleware]:
    """The CORS middleware for ``settings``, or none when no origin is allowed."""
    if not settings.cors_allowed_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=PREFLIGHT_MAX_AGE,
        )
    ]
