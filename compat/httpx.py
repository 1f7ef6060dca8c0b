"""httpx: a transport on a connection pool of our making.

``integrations.outbound`` needs httpx's transport (its mapping of requests, responses, streams
and errors) on an ``httpcore.AsyncConnectionPool`` with a network backend of its own, which
httpx has no parameter for: ``AsyncHTTPTransport`` keeps its pool in the private ``_pool``.
"""

from __future__ import annotations

import httpcore
import httpx

PACKAGE = "httpx"
TESTED_WITH = "0.28.1"

__all__ = ["probe", "transport_on_pool"]


def transport_on_pool(
    transport: httpx.AsyncHTTPTransport, pool: httpcore.AsyncConnectionPool
) -> httpx.AsyncHTTPTransport:
    """``transport``, sending through ``pool`` instead of the one it built."""
    transport._pool = pool  # the one private use, checked by ``probe``
    return transport


def probe() -> None:
    """Raise if ``AsyncHTTPTransport`` no longer keeps its pool in ``_pool``."""
    transport = httpx.AsyncHTTPTransport()
    assert isinstance(transport._pool, httpcore.AsyncConnectionPool)
    pool = httpcore.AsyncConnectionPool()
    assert transport_on_pool(transport, pool)._pool is pool
