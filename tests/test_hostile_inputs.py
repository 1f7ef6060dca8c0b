"""Hand-written hostile inputs against a running server, over HTTP and over the WebSocket.

HTTP: deep nesting, alias and token floods, huge strings and lists, malformed bodies (invalid
UTF-8, not JSON, JSON that is not an object, deeply nested JSON, batches), wrong variable
types, out-of-range quantities, money amounts and page sizes, and oversized bodies. Each must
be refused with a clear, typed answer (a 4xx, or GraphQL errors / userErrors carrying a code),
never a 5xx, an unexpected (masked) error, a stack trace or SQL, and must write nothing.

WebSocket (graphql-transport-ws on ``/graphql``): malformed and binary frames, protocol
violations, huge messages and floods of ``subscribe`` messages on one socket must close the
socket with the protocol's code or refuse the operation, while other clients keep being
served and the process stays healthy. Only the protocol is observed, not how the endpoint is
built.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from schema.global_ids import gid
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.graphql_client import EVENTS_SUBSCRIPTION, GraphQLHttp
from tests.support.server import RunningServer
from tests.support.services import answers, redis_url

LEAKS = ("Traceback", 'File "', "SELECT ", "INSERT INTO", "UPDATE ", "sqlite", "asyncpg")
RENAME = (
    "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code field } } }"
)
ME = "{ me { tokenId } }"


# --- what every answer must be -------------------------------------------------------------


def no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"answer leaks {leak!r}: {text[:500]}"


def error_codes(body: dict[str, Any]) -> list[str]:
    """``extensions.code`` of every error (each must have one, none may be unexpected)."""
    codes = []
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        where = ".".join(str(p) for p in error.get("path") or ()) or "operation"
        assert code, f"error without a code at {where}: {error.get('message')!r}"
        assert code != "INTERNAL_SERVER_ERROR", f"INTERNAL_SERVER_ERROR at {where}"
        codes.append(code)
    return codes


def refused(response: httpx.Response) -> list[str]:
    """Asserts a clear refusal and returns its codes: a 4xx (with a GraphQL-shaped body when
    it is JSON), or a 200 whose errors or payload userErrors all carry a code."""
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:500]}"
    no_leak(response.text)
    if response.status_code >= 400:
        # every refusal is JSON in the GraphQL error shape, each error with a code
        assert response.headers.get("content-type", "").startswith("application/"), response
        codes = error_codes(response.json())
        assert codes and all(codes), response.text[:500]
        return codes
    body = response.json()
    codes = error_codes(body)
    if not codes:
        for payload in (body.get("data") or {}).values():
            for error in (payload or {}).get("userErrors") or []:
                assert error.get("code"), f"userError without a code: {error}"
                codes.append(error["code"])
    assert codes, f"accepted: {response.text[:500]}"
    return codes


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """The app, broadcasting through Redis when REDIS_URL answers (else in memory)."""
    url = redis_url()
    return await make_server(**({"redis_url": url} if url and answers(url, 6379) else {}))


# --- the data the attacks aim at, and proof that nothing was written -------------------------


@dataclass
class World:
    buyer: Member
    supplier: Member
    sku: str
    method: str
    warehouse: str
    order: str
    line: str


async def _ok(client: GraphQLHttp, query: str, token: str, variables: dict | None = None) -> Any:
    data = await client.data(query, variables, token=token)
    payload = next(iter(data.values()))
    assert payload.get("userErrors", []) == [], payload
    return payload


@pytest.fixture
async def world(client: GraphQLHttp, make_member: MakeMember) -> World:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    product = await _ok(
        client,
        """mutation { createProduct(input: {title: "Tee", skus: [{code: "T", attributes: {},
          weightGrams: 200, unitPrice: "5.00"}]}) { product { skus { id } } userErrors { code } } }""",
        supplier.token,
    )
    method = await _ok(
        client,
        """mutation { createLogisticsMethod(input: {name: "Air", minDays: 1, maxDays: 9, rules: [
          {countryCode: "*", firstWeightGrams: 500, firstPrice: "8.00", stepGrams: 500,
           stepPrice: "2.00"}]}) { logisticsMethod { id } userErrors { code } } }""",
        supplier.token,
    )
    warehouse = await _ok(
        client,
        """mutation { createCloudWarehouse(input: {name: "WH", address: {name: "WH",
          address1: "1 Dock Rd", city: "Felixstowe", countryCode: "GB"}})
          { warehouse { id } userErrors { code } } }""",
        supplier.token,
    )
    sku = product["product"]["skus"][0]["id"]
    order = await _ok(
        client,
        """mutation($s: ID!) { createManualOrder(input: {lines: [{skuId: $s, quantity: 1}],
          shippingAddress: {name: "A", address1: "1 St", city: "London", countryCode: "GB"}})
          { order { id lines { id } } userErrors { code } } }""",
        buyer.token,
        {"s": sku},
    )
    # after the order: a supplier tops up only buyers it trades with
    await _ok(
        client,
        """mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "100.00", currency: "USD")
          { userErrors { code } } }""",
        supplier.token,
        {"b": buyer.gid},
    )
    return World(
        buyer=buyer,
        supplier=supplier,
        sku=sku,
        method=method["logisticsMethod"]["id"],
        warehouse=warehouse["warehouse"]["id"],
        order=order["order"]["id"],
        line=order["order"]["lines"][0]["id"],
    )


async def snapshot() -> dict[str, Any]:
    """Row counts of every table a mutation writes, organisation names and wallet balances."""
    from domain.catalogue import models as catalogue
    from domain.events import models as events
    from domain.orders import models as orders
    from domain.organisations import models as organisations
    from domain.payments import models as wallets
    from domain.stock import models as stock
    from domain.stores import models as stores

    models = [
        organisations.Organisation,
        organisations.User,
        organisations.ApiToken,
        catalogue.Product,
        catalogue.Sku,
        catalogue.PriceTier,
        catalogue.LogisticsMethod,
        catalogue.FreightRule,
        orders.Order,
        orders.OrderLine,
        orders.OrderTransition,
        orders.Depute,
        orders.Quote,
        stock.CloudWarehouse,
        stock.StockItem,
        stock.StockMovement,
        stores.Store,
        wallets.Wallet,
        wallets.WalletEntry,
        events.Event,
    ]
    state: dict[str, Any] = {m.__name__: await m.all().count() for m in models}
    state["names"] = sorted(await organisations.Organisation.all().values_list("name", flat=True))
    state["balances"] = sorted(await wallets.Wallet.all().values_list("balance_cents", flat=True))
    state["statuses"] = sorted(await orders.Order.all().values_list("status", flat=True))
    return state


async def post(
    client: GraphQLHttp,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )


async def post_bytes(
    client: GraphQLHttp,
    content: bytes,
    *,
    token: str | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    headers = {"content-type": content_type}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return await client.http.post("/graphql", content=content, headers=headers)


def raw_body(document: str, raw_value: str) -> bytes:
    """A request body whose variable ``v`` is ``raw_value`` as written (``NaN``, ``1e309``)."""
    return (
        '{"query": ' + json.dumps(document) + ', "variables": {"v": ' + raw_value + "}}"
    ).encode()


async def healthy(client: GraphQLHttp, token: str) -> None:
    """The process still answers: /healthz, and a query of a well-behaved client."""
    assert (await client.http.get("/healthz")).status_code == 200
    assert (await client.data(ME, token=token))["me"]["tokenId"]


# --- HTTP --------------------------------------------------------------------------------------


def nested(depth: int, leaf: str = "id", field: str = "user") -> str:
    return "{ me " + f"{{ {field} " * depth + f"{{ {leaf} }}" + " }" * depth + " }"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ a " + "{ a " * 20 + "}" * 21, "QUERY_TOO_COMPLEX"),
        (nested(13), "QUERY_TOO_COMPLEX"),  # MAX_QUERY_DEPTH is 12
        (nested(3000), "GRAPHQL_PARSE_FAILED"),
        ("query($v: " + "[" * 500 + "ID" + "]" * 500 + ") { me { tokenId } }", None),
        ("{ freightQuote(orderIds: " + "[" * 2000 + '"1"' + "]" * 2000 + ") { total } }", None),
        ("{ " + "...on Query { " * 1500 + "me { tokenId }" + " }" * 1500 + " }", None),
    ],
    ids=[
        "unknown-fields-20-deep",
        "13-deep",
        "3000-deep",
        "500-deep-list-type",
        "2000-deep-list-literal",
        "1500-deep-inline-fragments",
    ],
)
async def test_deep_nesting_is_refused_before_execution(
    client: GraphQLHttp, world: World, query: str, code: str | None
) -> None:
    before = await snapshot()
    codes = refused(await post(client, query, token=world.buyer.token))
    if code is not None:
        assert code in codes, codes
    else:
        assert set(codes) <= {"QUERY_TOO_COMPLEX", "GRAPHQL_PARSE_FAILED"}, codes
    assert await snapshot() == before
    await healthy(client, world.buyer.token)


async def test_deeply_nested_json_variables_are_a_400_not_a_500(
    client: GraphQLHttp, world: World
) -> None:
    """100,000 nested JSON arrays in ``variables``: ``json.loads`` raises RecursionError."""
    body = (
        b'{"query": "query($v: [ID!]!) { freightQuote(orderIds: $v) { total } }", "variables": '
        + b'{"v": '
        + b"[" * 100_000
        + b'"1"'
        + b"]" * 100_000
        + b"}}"
    )
    statuses = {}
    for caller, token in (("member", world.buyer.token), ("anonymous", None)):
        statuses[caller] = (await post_bytes(client, body, token=token)).status_code
    assert statuses == {"member": 400, "anonymous": 400}, statuses
    await healthy(client, world.buyer.token)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"hello", "application/json"),
        (b"", "application/json"),
        (b"{", "application/json"),
        (b"\xff\xfe\x00{", "application/json"),
        (b'{"query": "{ me { tokenId } }\xff\xfe"}', "application/json"),
        (b'{"query": "{ me { tokenId } }"}', "text/plain"),
        (b"[]", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'[{"query": "{ me { tokenId } }"}, {"query": 1}]', "application/json"),
        (b'[{"query": "{ me { tokenId } }", "variables": []}]', "application/json"),
        (b'"{ me { tokenId } }"', "application/json"),
        (b"42", "application/json"),
        (b"null", "application/json"),
        (b"{}", "application/json"),
        (b'{"query": 1}', "application/json"),
        (b'{"query": ["{ me { tokenId } }"]}', "application/json"),
        (b'{"query": "{ me { tokenId } }", "variables": [1]}', "application/json"),
        (b'{"query": "{ me { tokenId } }", "variables": "x"}', "application/json"),
        (b'{"query": "{ me { tokenId } }", "operationName": 5}', "application/json"),
        (b'{"query": "{ me { tokenId } }", "extensions": []}', "application/json"),
    ],
    ids=[
        "not-json",
        "empty",
        "truncated-json",
        "invalid-utf8-outside-json",
        "invalid-utf8-in-json-string",
        "wrong-content-type",
        "empty-batch",
        "batch-of-numbers",
        "batch-query-not-a-string",
        "batch-variables-a-list",
        "json-string",
        "json-number",
        "json-null",
        "no-query",
        "query-not-a-string",
        "query-a-list",
        "variables-a-list",
        "variables-a-string",
        "operation-name-not-a-string",
        "extensions-a-list",
    ],
)
async def test_malformed_body_is_a_4xx_not_a_5xx(
    client: GraphQLHttp, world: World, body: bytes, content_type: str
) -> None:
    """As a member and anonymously (a request with a token takes another path first)."""
    before = await snapshot()
    answers = {}
    for caller, token in (("member", world.buyer.token), ("anonymous", None)):
        response = await post_bytes(client, body, token=token, content_type=content_type)
        answers[caller] = f"HTTP {response.status_code}: {response.text[:200]}"
        if 400 <= response.status_code < 500:
            refused(response)
    assert all(answer.startswith("HTTP 4") for answer in answers.values()), answers
    assert await snapshot() == before
    await healthy(client, world.buyer.token)


async def test_a_batch_over_the_limit_is_refused_and_writes_nothing(
    client: GraphQLHttp, world: World
) -> None:
    before = await snapshot()
    batch = [{"query": RENAME, "variables": {"n": f"Batch {i}"}} for i in range(11)]
    response = await client.http.post(
        "/graphql", json=batch, headers={"authorization": f"Bearer {world.buyer.token}"}
    )
    assert response.status_code == 400
    refused(response)
    assert await snapshot() == before


async def test_alias_and_token_floods_are_refused(client: GraphQLHttp, world: World) -> None:
    before = await snapshot()
    aliases = "{ " + " ".join(f"a{i}: me {{ tokenId }}" for i in range(500)) + " }"
    assert "QUERY_TOO_COMPLEX" in refused(await post(client, aliases, token=world.buyer.token))
    mutations = (
        "mutation { "
        + " ".join(
            f'r{i}: renameOrganisation(input: {{name: "Flood {i}"}}) {{ userErrors {{ code }} }}'
            for i in range(31)
        )
        + " }"
    )
    assert "QUERY_TOO_COMPLEX" in refused(await post(client, mutations, token=world.buyer.token))
    tokens = "{ me { tokenId } " + "__typename " * 50_000 + "}"
    assert "QUERY_TOO_COMPLEX" in refused(await post(client, tokens, token=world.buyer.token))
    operations = " ".join(f"query Q{i} {{ me {{ tokenId }} }}" for i in range(2000))
    codes = refused(await post(client, operations, token=world.buyer.token))
    assert "QUERY_TOO_COMPLEX" in codes or "GRAPHQL_VALIDATION_FAILED" in codes
    assert await snapshot() == before
    await healthy(client, world.buyer.token)


async def test_huge_strings_are_refused_and_write_nothing(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    limit = server.settings.max_body_bytes
    before = await snapshot()
    token = world.buyer.token
    under = "x" * (limit - 1000)
    codes = refused(await post(client, RENAME, {"n": under}, token=token))
    assert codes == ["TOO_LONG"]
    inline = 'mutation { renameOrganisation(input: {name: "%s"}) { userErrors { code } } }'
    assert refused(await post(client, inline % ("y" * (limit // 2)), token=token)) == ["TOO_LONG"]
    over = await post(client, RENAME, {"n": "z" * limit}, token=token)
    assert over.status_code == 413 and refused(over) == ["PAYLOAD_TOO_LARGE"]
    long_name = await client.http.post(
        "/graphql",
        json={"query": "query Q { me { tokenId } }", "operationName": "Q" * 500_000},
        headers={"authorization": f"Bearer {token}"},
    )
    refused(long_name)
    assert await snapshot() == before
    await healthy(client, token)


async def test_lone_surrogate_in_a_string_is_refused_not_an_internal_error(
    client: GraphQLHttp, world: World
) -> None:
    """``"\\ud800"`` is valid JSON but no valid Unicode text: it cannot be stored (the
    database driver fails to encode it), so it must be a user error, not a masked one."""
    before = await snapshot()
    cases = {
        "renameOrganisation": (RENAME, {"n": "Shop \ud800"}),
        "orders.search": (
            "query($n: String) { orders(filter: {search: $n}) { edges { cursor } } }",
            {"n": "\udfff"},
        ),
        "addUser.name": (
            "mutation($n: String!) { addUser(input: {email: "
            '"surrogate@example.test", name: $n, role: STAFF}) { userErrors { code } } }',
            {"n": "\ud83d"},
        ),
    }
    wrong = {}
    for name, (document, variables) in cases.items():
        body = json.dumps({"query": document, "variables": variables}).encode()
        try:
            refused(await post_bytes(client, body, token=world.buyer.token))
        except AssertionError as error:
            wrong[name] = str(error).splitlines()[0]
    assert not wrong, wrong
    assert await snapshot() == before


async def test_huge_lists_are_refused_and_write_nothing(client: GraphQLHttp, world: World) -> None:
    bogus = [str(10**12 + i) for i in range(100_000)]
    repeated = [world.order] * 100_000
    before = await snapshot()
    for ids in (bogus, repeated, [world.order, *bogus]):
        for document, token in (
            (
                "query($v: [ID!]!) { freightQuote(orderIds: $v) { total } }",
                world.buyer.token,
            ),
            (
                "mutation($v: [ID!]!) { payOrders(orderIds: $v) { userErrors { code field } } }",
                world.buyer.token,
            ),
            (
                "mutation($v: [ID!]!) { pushOrders(orderIds: $v) { userErrors { code field } } }",
                world.supplier.token,
            ),
        ):
            response = await post(client, document, {"v": ids}, token=token)
            refused(response)
    assert await snapshot() == before
    await healthy(client, world.buyer.token)


async def test_manual_order_with_20000_lines_is_refused(client: GraphQLHttp, world: World) -> None:
    """20,000 lines fit in a body under MAX_BODY_BYTES; nothing caps how many lines one
    order may have, so one request writes an order with 20,000 lines."""
    before = await snapshot()
    lines = [{"skuId": world.sku, "quantity": 1}] * 20_000
    started = asyncio.get_running_loop().time()
    response = await post(
        client,
        """mutation($l: [ManualOrderLineInput!]!) { createManualOrder(input: {lines: $l,
          shippingAddress: {name: "A", address1: "1 St", city: "London", countryCode: "GB"}})
          { order { id } userErrors { code field } } }""",
        {"l": lines},
        token=world.buyer.token,
    )
    seconds = asyncio.get_running_loop().time() - started
    after = await snapshot()
    written = {k: after[k] - before[k] for k in ("Order", "OrderLine") if after[k] != before[k]}
    assert not written, f"{response.text[:200]} after {seconds:.1f}s; rows written: {written}"
    refused(response)


ID_USES = [
    ("query($v: ID!) { order(id: $v) { id } }", "buyer", "Order"),
    ("query($v: ID!) { node(id: $v) { id } }", "buyer", "Order"),
    ("query($v: ID!) { storeProducts(storeId: $v) { nodes { id } } }", "buyer", "Store"),
    ("query($v: ID) { products(supplierId: $v) { nodes { id } } }", "buyer", "Organisation"),
    ("query($v: ID!) { walletEntries(walletId: $v) { nodes { id } } }", "buyer", "Wallet"),
    (
        "query($v: ID!) { distributionWarehouses(partnershipId: $v) { nodes { id } } }",
        "buyer",
        "Partnership",
    ),
    ("query($v: ID!) { freightQuote(orderIds: [$v]) { total } }", "buyer", "Order"),
    (
        "mutation($v: ID!) { revokeApiToken(input: {id: $v}) { userErrors { code field } } }",
        "buyer",
        "ApiToken",
    ),
    (
        "mutation($v: ID!) { cancelOrders(orderIds: [$v]) { userErrors { code field } } }",
        "buyer",
        "Order",
    ),
    (
        "mutation($v: ID!) { applyForPartnership(supplierId: $v) { userErrors { code field } } }",
        "buyer",
        "Organisation",
    ),
    (
        "mutation($v: ID!) { discontinueProduct(productId: $v) { userErrors { code field } } }",
        "supplier",
        "Product",
    ),
    (
        'mutation($v: ID!) { topUpWallet(buyerId: $v, amount: "1.00", currency: "USD") '
        "{ userErrors { code field } } }",
        "supplier",
        "Organisation",
    ),
]


async def test_id_beyond_32_bits_is_not_found_not_an_internal_error(
    client: GraphQLHttp, world: World
) -> None:
    """Id keys are accepted up to 2**63 - 1 (``schema/global_ids.py``); an id that no row can have
    must be NOT_FOUND (or null, or an empty list) whatever the database's key type: on
    PostgreSQL, whose ``integer`` keys are 32 bits, asyncpg refuses to encode it."""
    before = await snapshot()
    wrong: dict[str, str] = {}
    for document, who, type_name in ID_USES:
        token = world.supplier.token if who == "supplier" else world.buyer.token
        for value in (gid(type_name, 2**31), gid(type_name, 2**63 - 1)):
            response = await post(client, document, {"v": value}, token=token)
            try:
                assert response.status_code == 200, response.status_code
                body = response.json()
                codes = error_codes(body)
                payload = next(iter((body.get("data") or {}).values()), None)
                if not codes and isinstance(payload, dict):
                    codes = [e["code"] for e in payload.get("userErrors") or []]
                assert codes == ["NOT_FOUND"] or payload in (None, []), response.text[:200]
            except AssertionError as error:
                field = document.split("{")[1].split("(")[0].strip()
                wrong[f"{field}({value})"] = str(error).splitlines()[0]
    assert not wrong, "\n".join(f"{case}: {reason}" for case, reason in wrong.items())
    assert await snapshot() == before


EXTREME_DATES = [
    "9999-12-31T23:59:59-23:59",  # past year 9999 in UTC
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "9999-12-31T23:59:59.999999",
    "0001-01-01T00:00:00",
]
DATE_USES = [
    'mutation($v: DateTime) { createApiToken(input: {name: "t", expiresAt: $v}) '
    "{ token { id } userErrors { code field } } }",
    "query($v: DateTime) { orders(filter: {createdFrom: $v}) { edges { cursor } } }",
    "query($v: DateTime) { orders(filter: {updatedTo: $v}) { edges { cursor } } }",
]


async def test_extreme_dates_are_refused_or_answered_not_an_internal_error(
    client: GraphQLHttp, world: World
) -> None:
    """Dates at the ends of Python's range, with offsets that carry them past it in UTC: a
    userError or an (empty) answer, never an unexpected error."""
    before = await snapshot()
    wrong: dict[str, str] = {}
    for document in DATE_USES:
        for value in EXTREME_DATES:
            response = await post(client, document, {"v": value}, token=world.buyer.token)
            try:
                assert response.status_code == 200, response.status_code
                error_codes(response.json())
            except AssertionError as error:
                field = document.split("{")[1].split("(")[0].strip()
                wrong[f"{field}({value})"] = str(error).splitlines()[0]
    assert not wrong, "\n".join(f"{case}: {reason}" for case, reason in wrong.items())
    assert await snapshot() == before


WRONG_TYPES: list[tuple[str, str]] = [
    # (GraphQL type, raw JSON value)
    ("String!", "42"),
    ("String!", '{"a": 1}'),
    ("String!", '["a"]'),
    ("String!", "null"),
    ("String!", "true"),
    ("Int!", '"1"'),
    ("Int!", "1.5"),
    ("Int!", str(2**31)),
    ("Int!", str(2**63)),
    ("Int!", "1e309"),
    ("Int!", "NaN"),
    ("Int!", "-Infinity"),
    ("ID!", "1.5"),
    ("ID!", "true"),
    ("ID!", "{}"),
    ("Boolean!", '"true"'),
    ("OrderStatus!", '"NOPE"'),
    ("[OrderStatus!]", "[null]"),
    ("OrderFilterInput", '"x"'),
    ("OrderFilterInput", '{"unknown": 1}'),
    ("DateTime", '"yesterday"'),
    ("DateTime", '"2024-13-45T99:99:99"'),
    ("Decimal!", '"abc"'),
    ("Decimal!", "[1]"),
]


USES = {
    "String!": "orders(filter: {search: $v}) { edges { cursor } }",
    "Int!": "orders(first: $v) { edges { cursor } }",
    "ID!": "order(id: $v) { id }",
    "Boolean!": "orders(filter: {distributionOnly: $v}) { edges { cursor } }",
    "OrderStatus!": "orders(filter: {statuses: [$v]}) { edges { cursor } }",
    "[OrderStatus!]": "orders(filter: {statuses: $v}) { edges { cursor } }",
    "OrderFilterInput": "orders(filter: $v) { edges { cursor } }",
    "DateTime": "orders(filter: {createdFrom: $v}) { edges { cursor } }",
    "Decimal!": 'topUpWallet(buyerId: "1", amount: $v, currency: "USD") { userErrors { code } }',
}


async def test_wrong_variable_types_are_validation_errors(
    client: GraphQLHttp, world: World
) -> None:
    """Each type through a variable of an operation that uses it (raw JSON, so ``NaN`` and
    ``1e309`` reach the server as Python's ``json`` reads them)."""
    before = await snapshot()
    wrong: dict[str, str] = {}
    for declared, raw in WRONG_TYPES:
        operation = "mutation" if declared == "Decimal!" else "query"
        document = f"{operation}($v: {declared}) {{ {USES[declared]} }}"
        token = world.supplier.token if declared == "Decimal!" else world.buyer.token
        response = await post_bytes(client, raw_body(document, raw), token=token)
        try:
            codes = refused(response)
            assert set(codes) <= {"GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}, codes
        except AssertionError as error:
            wrong[f"{declared} = {raw}"] = str(error).splitlines()[0][:200]
    assert not wrong, "\n".join(f"{case}: {reason}" for case, reason in wrong.items())
    assert await snapshot() == before


QUANTITIES = ["0", "-1", str(-(2**31)), str(2**31 - 1), str(2**31), str(2**63), "1e309", "NaN"]
AMOUNTS = [
    '"0"',
    '"-1"',
    '"-0.01"',
    '"0.001"',
    '"NaN"',
    '"sNaN"',
    '"Infinity"',
    '"-Infinity"',
    '"1e12"',
    str(2**63),
    '"99999999999999999999999999"',
    "1e309",
    "NaN",
    "-1.5",
]


async def all_refused(client: GraphQLHttp, document: str, values: list[str], token: str) -> None:
    """Every raw JSON value of ``$v`` is refused with a typed error and writes nothing; the
    failure names each value that was not."""
    before = await snapshot()
    wrong: dict[str, str] = {}
    for raw in values:
        response = await post_bytes(client, raw_body(document, raw), token=token)
        try:
            codes = refused(response)
            assert set(codes) <= {"INVALID", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}, codes
        except AssertionError as error:
            wrong[raw] = str(error).splitlines()[0][:200]
    assert not wrong, "\n".join(f"$v = {raw}: {reason}" for raw, reason in wrong.items())
    assert await snapshot() == before


# more than 26 integer digits: ``domain.validation.money`` quantizes to cents before its "too
# large" check, and ``Decimal.quantize`` raises InvalidOperation past 28 significant digits
HUGE_AMOUNTS = ['"1e26"', '"9999999999999999999999999999"', '"1e309"', "1" + "0" * 30]


def amount_cases(world: World) -> dict[str, tuple[str, str]]:
    """Mutations with one money amount ``$v`` (Decimal!) and everything else valid, with who
    sends them."""
    sku = json.dumps(world.sku)
    return {
        "topUpWallet": (
            f'topUpWallet(buyerId: "{world.buyer.organisation_id}", amount: $v, currency: "USD")'
            " { userErrors { code field } }",
            "supplier",
        ),
        "createProduct": (
            'createProduct(input: {title: "P", skus: [{code: "C", attributes: {}, '
            "weightGrams: 1, unitPrice: $v}]}) { userErrors { code field } }",
            "supplier",
        ),
        "createProduct.tier": (
            'createProduct(input: {title: "P", skus: [{code: "C", attributes: {}, '
            'weightGrams: 1, unitPrice: "1.00", tiers: [{minQuantity: 5, unitPrice: $v}]}]})'
            " { userErrors { code field } }",
            "supplier",
        ),
        "updateSku": (
            f"updateSku(input: {{skuId: {sku}, unitPrice: $v}}) {{ userErrors {{ code field }} }}",
            "supplier",
        ),
        "createLogisticsMethod": (  # a free first weight is allowed
            'createLogisticsMethod(input: {name: "M", minDays: 1, maxDays: 2, rules: '
            '[{countryCode: "*", firstWeightGrams: 1, firstPrice: $v, stepGrams: 1, '
            'stepPrice: "1.00"}]}) { userErrors { code field } }',
            "supplier",
        ),
        "refundDepute": (
            'refundDepute(deputeId: "1", amount: $v, note: "n") { userErrors { code field } }',
            "supplier",
        ),
    }


@pytest.mark.parametrize(
    "mutation",
    [
        "topUpWallet",
        "createProduct",
        "createProduct.tier",
        "updateSku",
        "createLogisticsMethod",
        "refundDepute",
    ],
)
async def test_bad_money_amounts_are_refused_and_write_nothing(
    client: GraphQLHttp, world: World, mutation: str
) -> None:
    """Zero, negative, sub-cent, NaN, infinite and huge amounts, as strings and as numbers."""
    call, who = amount_cases(world)[mutation]
    token = world.supplier.token if who == "supplier" else world.buyer.token
    document = f"mutation($v: Decimal!) {{ {call} }}"
    values = [v for v in AMOUNTS if v != '"0"' or mutation != "createLogisticsMethod"]
    await all_refused(client, document, values, token)


@pytest.mark.parametrize(
    "mutation",
    [
        "topUpWallet",
        "createProduct",
        "createProduct.tier",
        "updateSku",
        "createLogisticsMethod",
        "refundDepute",
    ],
)
async def test_amount_of_more_than_26_digits_is_invalid_not_an_internal_error(
    client: GraphQLHttp, world: World, mutation: str
) -> None:
    call, who = amount_cases(world)[mutation]
    token = world.supplier.token if who == "supplier" else world.buyer.token
    await all_refused(client, f"mutation($v: Decimal!) {{ {call} }}", HUGE_AMOUNTS, token)


def quantity_cases(world: World) -> dict[str, tuple[str, str]]:
    """Operations with one quantity or size ``$v`` (Int!) and everything else valid."""
    sku, warehouse = json.dumps(world.sku), json.dumps(world.warehouse)
    address = '{name: "A", address1: "1 St", city: "London", countryCode: "GB"}'
    return {
        "createManualOrder": (
            f"mutation($v: Int!) {{ createManualOrder(input: {{lines: [{{skuId: {sku}, "
            f"quantity: $v}}], shippingAddress: {address}}}) {{ userErrors {{ code field }} }} }}",
            "buyer",
        ),
        "createCloudWarehouseOrder": (
            f"mutation($v: Int!) {{ createCloudWarehouseOrder(input: {{warehouseId: {warehouse},"
            f" lines: [{{skuId: {sku}, quantity: $v}}]}}) {{ userErrors {{ code field }} }} }}",
            "buyer",
        ),
        "createProduct.weightGrams": (
            'mutation($v: Int!) { createProduct(input: {title: "P", skus: [{code: "C", '
            'attributes: {}, weightGrams: $v, unitPrice: "1.00"}]}) '
            "{ userErrors { code field } } }",
            "supplier",
        ),
        "createLogisticsMethod.minDays": (
            'mutation($v: Int!) { createLogisticsMethod(input: {name: "M", minDays: $v, '
            'maxDays: 2, rules: [{countryCode: "*", firstWeightGrams: 1, firstPrice: "1.00", '
            'stepGrams: 1, stepPrice: "1.00"}]}) { userErrors { code field } } }',
            "supplier",
        ),
        "orders.first": ("query($v: Int!) { orders(first: $v) { edges { cursor } } }", "buyer"),
        "events.first": ("query($v: Int!) { events(first: $v) { edges { cursor } } }", "buyer"),
    }


@pytest.mark.parametrize(
    "operation",
    [
        "createManualOrder",
        "createCloudWarehouseOrder",
        "createProduct.weightGrams",
        "createLogisticsMethod.minDays",
        "orders.first",
        "events.first",
    ],
)
async def test_bad_quantities_are_refused_and_write_nothing(
    client: GraphQLHttp, world: World, operation: str
) -> None:
    """Zero, negative, past the domain's maximum, past 32 bits, infinite and NaN."""
    document, who = quantity_cases(world)[operation]
    token = world.supplier.token if who == "supplier" else world.buyer.token
    await all_refused(client, document, QUANTITIES, token)


async def test_oversized_bodies_get_413(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    limit = server.settings.max_body_bytes
    before = await snapshot()
    big = json.dumps({"query": ME, "variables": {"pad": "x" * limit}}).encode()
    response = await post_bytes(client, big, token=world.buyer.token)
    assert response.status_code == 413
    assert refused(response) == ["PAYLOAD_TOO_LARGE"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 65_536 + 2):
            yield b" " * 65_536

    chunked = await client.http.post(
        "/graphql",
        content=chunks(),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {world.buyer.token}",
        },
    )
    assert chunked.status_code == 413
    no_leak(chunked.text)
    assert await snapshot() == before
    await healthy(client, world.buyer.token)


async def raw_http(server: RunningServer, request: bytes) -> bytes:
    """Send bytes as they are (headers httpx would refuse to send) and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65_536), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "head",
    [
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: abc\r\n\r\n",
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: -5\r\n\r\n",
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999999999999999999\r\n\r\n",
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /graphql?query=" + b"%7B" * 30_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    ],
    ids=[
        "content-length-not-a-number",
        "negative-content-length",
        "huge-content-length",
        "bad-chunk-size",
        "huge-get-query",
        "huge-header",
    ],
)
async def test_broken_http_requests_get_4xx(
    server: RunningServer, client: GraphQLHttp, world: World, head: bytes
) -> None:
    answer = await raw_http(server, head)
    if answer:  # closing the connection without an answer is a refusal too
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
        no_leak(answer.decode("latin-1"))
    await healthy(client, world.buyer.token)


# --- WebSocket ---------------------------------------------------------------------------------

Socket = Any  # a websockets ClientConnection


async def open_socket(server: RunningServer) -> Socket:
    return await websockets.connect(
        server.ws_url, subprotocols=["graphql-transport-ws"], max_size=None
    )


async def send(ws: Socket, message: object) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: Socket, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def closed_with(ws: Socket, timeout: float = 15) -> int:
    """The close code the server sends (messages before it are skipped)."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def initialised(server: RunningServer, token: str) -> Socket:
    ws = await open_socket(server)
    await send(ws, {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    assert (await receive(ws))["type"] == "connection_ack"
    return ws


def subscribe(op_id: str, query: str = EVENTS_SUBSCRIPTION, **payload: Any) -> dict[str, Any]:
    return {"id": op_id, "type": "subscribe", "payload": {"query": query, **payload}}


INIT = "INIT"
WS_VIOLATIONS: list[tuple[str, list[Any], int]] = [
    ("not-json", ["{not json"], 4400),
    ("binary-frame", [b"\x00\x01binary"], 4400),
    ("json-array", [[{"type": "connection_init"}]], 4400),
    ("json-number", [42], 4400),
    ("no-type", [{"payload": {}}], 4400),
    ("type-not-a-string", [{"type": 7}], 4400),
    ("unknown-type", [{"type": "start", "id": "1"}], 4400),
    ("init-payload-a-string", [{"type": "connection_init", "payload": "token"}], 4400),
    ("subscribe-before-init", [subscribe("1")], 4401),
    ("query-before-init", [subscribe("1", ME)], 4401),
    ("second-init", [INIT, INIT], 4429),
    ("second-init-before-ack", [{"type": "connection_init"}, {"type": "connection_init"}], 4403),
    ("duplicate-id", [INIT, subscribe("1"), subscribe("1")], 4409),
    ("subscribe-without-id", [INIT, {"type": "subscribe", "payload": {"query": ME}}], 4400),
    ("subscribe-empty-id", [INIT, subscribe("")], 4400),
    ("subscribe-numeric-id", [INIT, {**subscribe("x"), "id": 1}], 4400),
    ("subscribe-without-payload", [INIT, {"id": "1", "type": "subscribe"}], 4400),
    ("payload-a-list", [INIT, {"id": "1", "type": "subscribe", "payload": [ME]}], 4400),
    ("query-not-a-string", [INIT, {"id": "1", "type": "subscribe", "payload": {"query": 1}}], 4400),
    ("variables-a-list", [INIT, subscribe("1", variables=[1])], 4400),
    ("syntax-error", [INIT, subscribe("1", "subscription { events { id }")], 4400),
    ("complete-without-id", [INIT, {"type": "complete"}], 4400),
    ("ping-payload-a-list", [{"type": "ping", "payload": [1]}], 4400),
]


@pytest.mark.parametrize(
    ("messages", "code"),
    [(messages, code) for _, messages, code in WS_VIOLATIONS],
    ids=[name for name, _, _ in WS_VIOLATIONS],
)
async def test_protocol_violations_close_the_socket_with_their_code(
    server: RunningServer, client: GraphQLHttp, world: World, messages: list[Any], code: int
) -> None:
    init = {"type": "connection_init", "payload": {"token": world.buyer.token}}
    ws = await open_socket(server)
    acknowledged = False
    try:
        for message in messages:
            if message == INIT:
                await send(ws, init)
                if not acknowledged:
                    assert (await receive(ws))["type"] == "connection_ack"
                    acknowledged = True
            elif isinstance(message, bytes | str):
                await ws.send(message)
            else:
                await send(ws, message)
        assert await closed_with(ws) == code
    finally:
        await ws.close()
    await healthy(client, world.buyer.token)


async def test_invalid_utf8_text_frame_closes_the_socket(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    ws = await initialised(server, world.buyer.token)
    try:
        await ws.send(b'{"type": "ping", "payload": {"x": "\xff\xfe"}}', text=True)
        assert await closed_with(ws) in {1007, 4400}
    finally:
        await ws.close()
    await healthy(client, world.buyer.token)


async def test_unauthenticated_sockets_are_closed_with_4403(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    inits: list[dict[str, Any]] = [
        {},
        {"Authorization": "Bearer sg_wrong"},
        {"Authorization": "Basic " + world.buyer.token},
        {"token": "x" * 500_000},
        {"token": ["x"]},
        {"Authorization": None},
    ]
    for init in inits:
        ws = await open_socket(server)
        try:
            await send(ws, {"type": "connection_init", "payload": init})
            assert await closed_with(ws) == 4403, init
        finally:
            await ws.close()
    await healthy(client, world.buyer.token)


async def test_huge_websocket_messages(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    ws = await initialised(server, world.buyer.token)
    try:
        # under the limit: a mutation with a 900 kB name is refused like over HTTP
        await send(ws, subscribe("1", RENAME, variables={"n": "x" * 900_000}))
        answer = await receive(ws)
        assert answer["type"] == "next", answer
        payload = answer["payload"]["data"]["renameOrganisation"]
        assert payload["userErrors"] == [{"code": "TOO_LONG", "field": "input.name"}]
        assert (await receive(ws)) == {"id": "1", "type": "complete"}
        # a document of 50,000 tokens (MAX_QUERY_TOKENS is 3,000)
        await send(ws, subscribe("2", "{ me { tokenId } " + "__typename " * 50_000 + "}"))
        assert await closed_with(ws) == 4400
    finally:
        await ws.close()
    ws = await initialised(server, world.buyer.token)
    try:
        # over the limit (MAX_BODY_BYTES): 1009 "message too big"
        pad = "x" * (server.settings.max_body_bytes + 1)
        await send(ws, subscribe("1", ME, variables={"pad": pad}))
        assert await closed_with(ws) == 1009
    finally:
        await ws.close()
    await healthy(client, world.buyer.token)


async def test_subscribe_flood_on_one_socket_is_capped_and_others_are_served(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    """500 subscriptions on one socket: at most MAX_SUBSCRIPTIONS_PER_CONNECTION (50) run;
    each of the others gets an ``error`` for its id. Other clients are served meanwhile."""
    limit, flood = server.settings.max_subscriptions_per_connection, 500
    ws = await initialised(server, world.buyer.token)
    other = await initialised(server, world.buyer.token)
    try:
        await asyncio.gather(
            *(
                send(ws, subscribe(str(i), variables={"types": ["QUOTE_UPDATED"]}))
                for i in range(flood)
            )
        )
        refusals: set[str] = set()
        while len(refusals) < flood - limit:
            message = await receive(ws)
            assert message["type"] == "error", message
            assert message["payload"] and all(e.get("message") for e in message["payload"])
            no_leak(json.dumps(message))
            refusals.add(message["id"])
        assert len(refusals) == flood - limit
        # the flooded socket still speaks the protocol
        await send(ws, {"type": "ping"})
        assert (await receive(ws)) == {"type": "pong"}
        # another socket and HTTP are served, and events still reach subscribers
        await send(other, subscribe("a", variables={"types": ["ORGANISATION_UPDATED"]}))
        await server.wait_for_subscribers(limit + 1)
        renamed = await client.data(RENAME, {"n": "After the flood"}, token=world.buyer.token)
        assert renamed["renameOrganisation"]["userErrors"] == []
        event = await receive(other)
        assert event["type"] == "next" and event["id"] == "a", event
        assert event["payload"]["data"]["events"]["type"] == "ORGANISATION_UPDATED"
        # ending the subscriptions frees the slots
        for i in range(flood):
            await send(ws, {"id": str(i), "type": "complete"})
        await send(ws, subscribe("again", ME))
        assert (await receive(ws))["type"] == "next"
    finally:
        await ws.close()
        await other.close()
    await healthy(client, world.buyer.token)


async def test_operation_flood_on_one_socket_gets_an_answer_for_each(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    """1,000 queries sent at once on one socket: each gets its result and ``complete``, or an
    ``error`` when the socket already runs as many operations as it may."""
    flood = 1000
    ws = await initialised(server, world.buyer.token)
    try:
        await asyncio.gather(*(send(ws, subscribe(f"q{i}", ME)) for i in range(flood)))
        finished: set[str] = set()
        while len(finished) < flood:
            message = await receive(ws)
            assert message["type"] in {"next", "complete", "error"}, message
            if message["type"] == "next":
                assert "errors" not in message["payload"], message
            else:
                finished.add(message["id"])
        await send(ws, {"type": "ping"})
        assert (await receive(ws)) == {"type": "pong"}
    finally:
        await ws.close()
    await healthy(client, world.buyer.token)


async def test_socket_without_connection_init_is_closed_with_4408(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    """The server waits 10 seconds for ``connection_init``; others are served meanwhile."""
    idle = await open_socket(server)
    try:
        closing = asyncio.ensure_future(closed_with(idle, timeout=20))
        for _ in range(5):
            await asyncio.sleep(1)
            await healthy(client, world.buyer.token)
        assert await closing == 4408
    finally:
        await idle.close()


async def test_many_sockets_that_misbehave_leave_the_server_healthy(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    """100 sockets at once, each breaking the protocol in its own way."""
    breakers: list[Callable[[Socket], Awaitable[None]]] = [
        lambda ws: ws.send("{"),
        lambda ws: ws.send(b"\x00"),
        lambda ws: send(ws, subscribe("1")),
        lambda ws: send(ws, {"type": "connection_init", "payload": {"token": "sg_no"}}),
        lambda ws: ws.close(),
    ]

    async def misbehave(i: int) -> None:
        ws = await open_socket(server)
        try:
            await breakers[i % len(breakers)](ws)
            if i % len(breakers) != len(breakers) - 1:
                assert await closed_with(ws) in {4400, 4401, 4403}
        finally:
            await ws.close()

    await asyncio.gather(*(misbehave(i) for i in range(100)))
    await healthy(client, world.buyer.token)


async def test_hostile_queries_over_the_socket_are_refused_like_over_http(
    server: RunningServer, client: GraphQLHttp, world: World
) -> None:
    before = await snapshot()
    ws = await initialised(server, world.buyer.token)
    cases = [
        (nested(13), "QUERY_TOO_COMPLEX"),  # MAX_QUERY_DEPTH is 12
        (
            "{ " + " ".join(f"a{i}: me {{ tokenId }}" for i in range(100)) + " }",
            "QUERY_TOO_COMPLEX",
        ),
        ("query($v: Int!) { orders(first: $v) { edges { cursor } } }", None),
        (
            'mutation($v: Decimal!) { topUpWallet(buyerId: "1", amount: $v, currency: "USD") '
            "{ userErrors { code } } }",
            None,
        ),
    ]
    try:
        for i, (query, code) in enumerate(cases):
            await send(
                ws, subscribe(str(i), query, variables={"v": 2**63} if "$v" in query else {})
            )
            message = await receive(ws)
            no_leak(json.dumps(message))
            if message["type"] == "error":
                codes = [(e.get("extensions") or {}).get("code") for e in message["payload"]]
            else:
                assert message["type"] == "next", message
                body = message["payload"]
                codes = error_codes(body) or [
                    e["code"] for p in (body.get("data") or {}).values() for e in p["userErrors"]
                ]
                assert (await receive(ws))["type"] == "complete"
            assert all(codes) and "INTERNAL_SERVER_ERROR" not in codes, message
            if code is not None:
                assert code in codes, message
    finally:
        await ws.close()
    assert await snapshot() == before
    await healthy(client, world.buyer.token)
