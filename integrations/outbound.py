"""HTTP clients for calls to external parties (stores, warehouses): the outbound-request policy
and one TLS context per process.

Every client made here (``new_client``) goes through ``GuardedTransport``:

- **where it may connect**: the host is resolved by the transport itself and every address
  checked against ``domain.external_addresses`` (no loopback, private, link-local or multicast
  address unless the operator lists the host); the connection goes to the checked address, so
  a name that resolves to something else a moment later (DNS rebinding) is never used;
- **no redirects** (httpx follows none unless asked, and nothing here asks);
- **bounded answers**: at most ``max_response_bytes`` (``OUTBOUND_MAX_RESPONSE_BYTES``) are read,
  uncompressed (``Accept-Encoding: identity``, so no small body inflates past the bound).

Refusals raise ``OutboundRefused``, an ``httpx.TransportError`` that is not retried.

``httpx.AsyncClient()`` builds a new SSL context and loads the CA bundle into it: about 20 ms of
CPU on a 2-core machine, during which the event loop runs nothing else. Clients made here share
the process's context (built once, at start-up: ``tls_context``) and cost about 0.1 ms.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import typing
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx

from compat.httpx import transport_on_pool
from domain import external_addresses
from domain.external_addresses import AddressRefused

__all__ = ["GuardedTransport", "OutboundRefused", "configure", "new_client", "tls_context"]

DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's own
_max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES


class OutboundRefused(httpx.TransportError):
    """A call the outbound policy stopped: an internal address, or an answer over the size
    bound. Not transient: trying again gets the same refusal."""


def configure(*, max_response_bytes: int) -> None:
    """Install the operator's bound on answers for this process (``Settings``)."""
    global _max_response_bytes
    _max_response_bytes = max_response_bytes


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context for outbound calls, as httpx would build it."""
    return httpx.create_ssl_context()


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows: resolves the host itself and connects to
    the checked address (TLS still verifies the certificate against the host name)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        policy = external_addresses.current()
        try:
            policy.check_host_literal(host)
            async with asyncio.timeout(timeout):
                addresses = await policy.resolve(host, port)
        except AddressRefused as refused:
            raise OutboundRefused(str(refused)) from None
        except TimeoutError:
            raise httpcore.ConnectTimeout("the host name did not resolve in time") from None
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve the host: {error}") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        raise last or httpcore.ConnectError("no address to connect to")

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("unix sockets cannot be called")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _BoundedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise OutboundRefused(f"the answer is larger than {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool that applies the outbound policy."""

    def __init__(self, **options: Any) -> None:
        limits: httpx.Limits = options.pop("limits", DEFAULT_LIMITS)
        super().__init__(verify=tls_context(), trust_env=False, limits=limits, **options)
        # the same pool httpx builds, with the checking network backend (httpx has no
        # parameter for it: ``compat.httpx``)
        pool = httpcore.AsyncConnectionPool(
            ssl_context=tls_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(),
        )
        transport_on_pool(self, pool)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        limit = _max_response_bytes
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await response.aclose()
            raise OutboundRefused(f"the answer is larger than {limit} bytes")
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _BoundedStream(response.stream, limit)
        return response


def new_client(**options: Any) -> httpx.AsyncClient:
    """``httpx.AsyncClient(**options)`` under the outbound policy (a given ``transport``, such
    as a test's ``httpx.MockTransport``, replaces the guarded one)."""
    transport = options.pop("transport", None) or GuardedTransport(
        limits=options.pop("limits", DEFAULT_LIMITS)
    )
    headers = {"Accept-Encoding": "identity", **options.pop("headers", {})}
    return httpx.AsyncClient(
        transport=transport, headers=headers, follow_redirects=False, trust_env=False, **options
    )
