"""The outbound-request policy (issue 19): a tenant's store or warehouse address cannot make the
platform call its own network, at registration or at connect time; no redirects; answers are
bounded; a body as it came is never shown back."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from domain import external_addresses
from domain.external_addresses import AddressPolicy, AddressRefused, check_address
from integrations import outbound
from integrations.stores.client import StoreApiError, StoreClient
from integrations.warehouses.client import WarehouseApiError, WarehouseClient
from tests.conftest import MakeMember, ServerFactory
from tests.support.graphql_client import GraphQLHttp

STRICT = AddressPolicy()
LOCAL = AddressPolicy.of(["127.0.0.1"])

AUTHORISE = """mutation($u: String!) { authoriseThirdPartyWarehouse(input: {provider: "X",
  name: "X", apiUrl: $u, apiKey: "k"}) { thirdPartyWarehouse { id } userErrors { code field message } } }"""
CONNECT = """mutation($u: String!) { connectStore(input: {name: "S", platform: SHOPIFY, apiUrl: $u,
  accessToken: "t"}) { store { id } userErrors { code field message } } }"""
TEST = """mutation($c: ID!) { testThirdPartyWarehouse(id: $c) { thirdPartyWarehouse {
  lastTestOk lastTestMessage } userErrors { code } } }"""


@dataclass
class Listener:
    """A TCP server on 127.0.0.1 answering every request with ``answer``; counts connections."""

    answer: bytes
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(self.answer)
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def http_answer(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


Listen = Callable[[bytes], Awaitable[Listener]]


@pytest.fixture
async def listen() -> AsyncIterator[Listen]:
    servers: list[asyncio.Server] = []

    async def start(answer: bytes) -> Listener:
        listener = Listener(answer)
        server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
        listener.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return listener

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example.com",  # plain http to a host nobody listed
        "ftp://shop.example.com",
        "https://user:pass@shop.example.com",
        "https://127.0.0.1",
        "https://127.1.2.3:8443/x",
        "https://10.0.0.5",
        "https://172.16.0.1",
        "https://192.168.1.1",
        "https://169.254.169.254/latest/meta-data",  # a cloud metadata service
        "https://100.64.0.1",  # shared address space
        "https://0.0.0.0",
        "https://224.0.0.1",
        "https://[::1]",
        "https://[::ffff:127.0.0.1]",
        "https://[fe80::1]",
        "https://[fd00::1]",
        "https://",
        "https://shop.example.com:99999",
    ],
)
def test_the_policy_refuses_internal_and_non_https_addresses(url: str) -> None:
    with pytest.raises(AddressRefused):
        STRICT.check_url(url)


def test_the_policy_takes_public_https_and_the_operators_hosts() -> None:
    assert STRICT.check_url("https://shop.example.com/admin") == "shop.example.com"
    assert STRICT.check_url("https://93.184.216.34") == "93.184.216.34"
    assert LOCAL.check_url("http://127.0.0.1:8001/sim") == "127.0.0.1"
    check_address(ipaddress.ip_address("2606:4700::1111"))
    with pytest.raises(AddressRefused):
        LOCAL.check_url("http://localhost:8001")  # listed by address, not by this name


async def test_registration_refuses_an_internal_address_with_bad_user_input_and_writes_nothing(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(outbound_allowed_hosts=())  # production's default
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    client = GraphQLHttp(server.url)
    try:
        for url in ("http://127.0.0.1:6379", "https://localhost:5432", "https://[::1]:22"):
            for mutation, member, name in (
                (AUTHORISE, supplier, "authoriseThirdPartyWarehouse"),
                (CONNECT, buyer, "connectStore"),
            ):
                answer = (await client.data(mutation, {"u": url}, token=member.token))[name]
                assert answer["userErrors"][0]["code"] == "BAD_USER_INPUT", (url, answer)
                assert answer["userErrors"][0]["field"] == "input.apiUrl"
        stores = await client.data("{ stores { nodes { id } } }", token=buyer.token)
        assert stores["stores"]["nodes"] == []
        warehouses = await client.data(
            "{ thirdPartyWarehouses { nodes { id } } }", token=supplier.token
        )
        assert warehouses["thirdPartyWarehouses"]["nodes"] == []
    finally:
        await client.close()


async def test_a_listed_host_is_taken_and_the_check_runs_again_at_connect_time(
    make_server: ServerFactory, make_member: MakeMember, listen: Listen
) -> None:
    """Registered while allowed; the operator then removes the host: the call is refused before
    any connection (as a name that resolves to an internal address later would be)."""
    listener = await listen(http_answer("200 OK", b'{"ok": true, "warehouse": "inside"}'))
    server = await make_server(outbound_allowed_hosts=("127.0.0.1",))
    supplier = await make_member("SUPPLIER")
    client = GraphQLHttp(server.url)
    try:
        authorised = (await client.data(AUTHORISE, {"u": listener.url}, token=supplier.token))[
            "authoriseThirdPartyWarehouse"
        ]
        assert authorised["userErrors"] == []
        warehouse_id = authorised["thirdPartyWarehouse"]["id"]
        tested = await client.data(TEST, {"c": warehouse_id}, token=supplier.token)
        assert tested["testThirdPartyWarehouse"]["thirdPartyWarehouse"]["lastTestOk"] is True
        assert listener.connections == 1

        external_addresses.configure(STRICT)
        tested = await client.data(TEST, {"c": warehouse_id}, token=supplier.token)
        result = tested["testThirdPartyWarehouse"]["thirdPartyWarehouse"]
        assert result["lastTestOk"] is False
        assert "public internet" in result["lastTestMessage"]
        assert listener.connections == 1  # nothing reached it
    finally:
        await client.close()


async def test_a_name_resolving_to_an_internal_address_is_refused_at_connect_time(
    listen: Listen,
) -> None:
    listener = await listen(http_answer("200 OK", b"{}"))
    external_addresses.configure(STRICT)
    # `localhost` stands for any name whose DNS answer changed after registration
    async with WarehouseClient(
        base_url=f"http://localhost:{listener.port}", api_key="k", retries=2
    ) as client:
        with pytest.raises(WarehouseApiError, match="public internet") as refused:
            await client.ping()
    assert client.attempts == 1  # a refusal is not retried
    assert not refused.value.transient
    async with StoreClient(
        base_url=f"http://localhost:{listener.port}", access_token="store-token"
    ) as store:
        with pytest.raises(StoreApiError, match="public internet"):
            await store.list_orders()
    assert listener.connections == 0


async def test_redirects_are_not_followed(listen: Listen) -> None:
    target = await listen(http_answer("200 OK", b'{"ok": true, "warehouse": "moved"}'))
    redirect = await listen(http_answer("302 Found", b"", f"Location: {target.url}/v1/ping"))
    async with WarehouseClient(base_url=redirect.url, api_key="k", retries=0) as client:
        with pytest.raises(WarehouseApiError, match="HTTP 302"):
            await client.ping()
    assert target.connections == 0


async def test_answers_are_bounded_and_bodies_are_never_shown(
    listen: Listen, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "_max_response_bytes", 1000)
    big = await listen(http_answer("200 OK", b'{"ok": true, "pad": "' + b"x" * 5000 + b'"}'))
    async with WarehouseClient(base_url=big.url, api_key="k", retries=0) as client:
        with pytest.raises(WarehouseApiError, match="larger than 1000 bytes"):
            await client.ping()
    # an answer with no Content-Length is cut off at the bound as it streams
    chunked = await listen(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 5000)
    async with StoreClient(base_url=chunked.url, access_token="store-token", retries=0) as store:
        with pytest.raises(StoreApiError, match="larger than 1000 bytes"):
            await store.list_orders()

    banner = b"redis_version:7.0.15 internal banner"
    internal = await listen(http_answer("500 Internal Server Error", banner))
    async with WarehouseClient(base_url=internal.url, api_key="k", retries=0) as client:
        with pytest.raises(WarehouseApiError) as failed:
            await client.ping()
    assert "redis_version" not in failed.value.message
    async with StoreClient(base_url=internal.url, access_token="store-token", retries=0) as store:
        with pytest.raises(StoreApiError) as failed_store:
            await store.list_orders()
    assert "redis_version" not in failed_store.value.message
    # what is asked for is the identity encoding: no small body inflates past the bound
    assert b"accept-encoding: identity" in internal.requests[0].lower()
