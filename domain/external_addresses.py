"""Which addresses the platform may call on a tenant's behalf (store and warehouse APIs).

A tenant registers the address of its store or third-party warehouse, and the platform calls
it from inside its own network. Unchecked, that lets a tenant make the platform call its
neighbours (server-side request forgery): the database, Redis, a cloud metadata service. The
rule, in one place:

- ``https`` only; plain ``http`` only for hosts the operator lists (``OUTBOUND_ALLOWED_HOSTS``,
  such as the store and warehouse simulators on 127.0.0.1 in development and tests);
- no user name or password in the address;
- no loopback, private, link-local, shared, reserved or multicast address — for a name, after
  DNS resolution; the hosts the operator lists are exempt.

``check_registered_url`` applies it when an address is registered (a ``BAD_USER_INPUT`` refusal
on ``apiUrl``); ``integrations.outbound`` applies it again at connect time, to the address it
actually connects to, so a name that resolves elsewhere later (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from domain.errors import DomainError, ErrorCode

__all__ = [
    "AddressPolicy",
    "AddressRefused",
    "check_registered_url",
    "configure",
    "current",
]

RESOLVE_TIMEOUT = 3.0  # seconds a registration waits for DNS before leaving it to connect time


class AddressRefused(ValueError):
    """An address the platform will not call; the message says why, in the API's words."""


@dataclass(frozen=True)
class AddressPolicy:
    """``allowed_hosts``: host names or addresses (lower case) callable over plain http and on
    internal addresses."""

    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, hosts: Iterable[str]) -> AddressPolicy:
        return cls(frozenset(h.strip().lower().strip("[]") for h in hosts if h.strip()))

    def is_allowed_host(self, host: str) -> bool:
        return host.lower().strip("[]") in self.allowed_hosts

    def check_url(self, url: str) -> str:
        """The URL's host, if scheme, credentials and (for an address literal) the address
        pass; else ``AddressRefused``. A host name is not resolved here (``resolve`` does)."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            raise AddressRefused("Not a valid URL.") from None
        host = (parts.hostname or "").lower()
        if not host:
            raise AddressRefused("A URL with a host is needed, such as https://store.example.com.")
        if parts.username is not None or parts.password is not None:
            raise AddressRefused("Credentials go in their own field, not in the URL.")
        if parts.scheme == "https" or (parts.scheme == "http" and self.is_allowed_host(host)):
            self.check_host_literal(host)
            return host
        raise AddressRefused("Only https:// addresses can be called.")

    def check_host_literal(self, host: str) -> None:
        """Refuse an internal address literal (names pass: see ``check_address``)."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return
        if not self.is_allowed_host(host):
            check_address(address)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``: every one it resolves to must be public
        (``AddressRefused`` otherwise); an allowed host's are taken as they are. ``OSError``
        when the name does not resolve."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.is_allowed_host(host):
            for address in addresses:
                check_address(ipaddress.ip_address(address.split("%", 1)[0]))
        return addresses


def check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """``AddressRefused`` unless ``address`` is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        raise AddressRefused(
            "Only addresses on the public internet can be called (loopback, private, link-local "
            "and multicast addresses cannot)."
        )


_policy = AddressPolicy()


def configure(policy: AddressPolicy) -> None:
    """Install the operator's policy for this process (``Settings.configure_outbound``)."""
    global _policy
    _policy = policy


def current() -> AddressPolicy:
    return _policy


async def check_registered_url(url: str, *, field: str) -> None:
    """``BAD_USER_INPUT`` on ``field`` unless ``url`` is an address the platform may call. A
    name that does not resolve now is accepted: the connect-time check covers it."""
    policy = current()
    try:
        host = policy.check_url(url)
        if not policy.is_allowed_host(host):
            port = urlsplit(url).port or 443
            # a name that does not resolve (now) is left to the connect-time check
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(RESOLVE_TIMEOUT):
                    await policy.resolve(host, port)
    except AddressRefused as refused:
        raise DomainError(ErrorCode.BAD_USER_INPUT, str(refused), field=field) from None
