"""Every root list that can grow is a cursor connection (``Connection[T]``, ``domain/pages.py``).

The schema walk fails for a root list field that is not a connection with ``first``/``after``
and a stated maximum. Then three representative lists are read page by page through a server:
``products(supplierId:)`` (the catalogue, ascending), ``quotes`` (newest first) and
``walletEntries(walletId:)`` (scoped through its parent, newest first). Each page size covers
every row the caller may see exactly once, in order, with a true ``pageInfo``, ``nodes`` equal
to the edges' nodes, and nothing of another organisation. ``first`` outside 1-100 and cursors
this API did not hand out are ``BAD_USER_INPUT`` on all of them. A page of products with their
SKUs and tiers costs the same statements whatever its size.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, get_named_type
from strawberry.schema.schema_converter import GraphQLCoreConverter

from domain.catalogue.models import Product as ProductModel
from domain.catalogue.models import ProductStatus
from domain.orders.models import Quote as QuoteModel
from domain.pages import MAX_PAGE
from domain.payments.models import WalletEntry as WalletEntryModel
from domain.stores.models import Store as StoreModel
from domain.stores.models import StorePlatform
from domain.stores.models import StoreProduct as StoreProductModel
from resolvers.permissions import declared
from schema.build import create_schema
from schema.global_ids import gid, key_of
from tests.conftest import MakeMember, Member
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.support.trading import partner
from tests.test_order_flow import ok
from tests.test_order_queries import _statements

# every root list that can grow, and the type of its nodes
CONNECTIONS = {
    "users": "User",
    "apiTokens": "ApiToken",
    "products": "Product",
    "logisticsMethods": "LogisticsMethod",
    "stores": "Store",
    "storeProducts": "StoreProduct",
    "quotes": "Quote",
    "wallets": "Wallet",
    "walletEntries": "WalletEntry",
    "partnerships": "Partnership",
    "distributionWarehouses": "DistributionWarehouse",
    "thirdPartyWarehouses": "ThirdPartyWarehouse",
    "withdrawals": "Withdrawal",
    "cloudWarehouses": "CloudWarehouse",
    "inventory": "StockItem",
    "slaBreaches": "SlaBreach",
}
# root fields that answer a plain list, each bounded otherwise
BOUNDED_ROOT_LISTS = {"nodes", "orderCounts", "slaRules"}  # 100 ids; one per status, rule
# connections of their own making, each with its own maximum
OTHER_CONNECTIONS = {"events", "orders", "afterSalesOrders", "stockMovements"}
# required arguments of the fields above: ids of the right type that name nothing
REQUIRED = {
    "storeProducts": ("storeId", "Store"),
    "walletEntries": ("walletId", "Wallet"),
    "distributionWarehouses": ("partnershipId", "Partnership"),
}


def _unwrapped(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def test_every_root_list_is_a_connection_with_a_stated_maximum() -> None:
    schema = create_schema()._schema
    assert schema.query_type is not None
    fields = schema.query_type.fields
    plain_lists = {
        name for name, f in fields.items() if isinstance(_unwrapped(f.type), GraphQLList)
    }
    assert plain_lists == BOUNDED_ROOT_LISTS, "a root list that is not a connection"
    connections = {
        name for name, f in fields.items() if get_named_type(f.type).name.endswith("Connection")
    }
    assert connections == set(CONNECTIONS) | OTHER_CONNECTIONS
    for name, node in CONNECTIONS.items():
        field = fields[name]
        connection = _unwrapped(field.type)
        assert isinstance(connection, GraphQLObjectType), name
        assert connection.name == f"{node}Connection", name
        assert f"at most {MAX_PAGE} per page" in (field.description or "").lower(), name
        first, after = field.args["first"], field.args["after"]
        assert (str(first.type), first.default_value) == ("Int!", 50), name
        assert (str(after.type), after.default_value) == ("String", None), name
        assert {n: str(f.type) for n, f in connection.fields.items()} == {
            "edges": f"[{node}Edge!]!",
            "nodes": f"[{node}!]!",
            "pageInfo": "PageInfo!",
        }, name
        edge = get_named_type(connection.fields["edges"].type)
        assert isinstance(edge, GraphQLObjectType)
        assert {n: str(f.type) for n, f in edge.fields.items()} == {
            "cursor": "String!",
            "node": f"{node}!",
        }, name


# -- reading page by page --------------------------------------------------------------------------


async def read_pages(
    client: GraphQLHttp,
    document: str,
    field: str,
    token: str,
    *,
    first: int,
    variables: dict[str, Any] | None = None,
) -> list[str]:
    """The ids of every page of ``field``, following ``endCursor``; checks each page."""
    ids: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        data = await client.data(
            document, {**(variables or {}), "first": first, "after": after}, token=token
        )
        page = data[field]
        edges, info = page["edges"], page["pageInfo"]
        assert page["nodes"] == [e["node"] for e in edges]
        assert len(edges) <= first
        assert info["hasPreviousPage"] is (after is not None)
        assert info["startCursor"] == (edges[0]["cursor"] if edges else None)
        assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)
        assert all(isinstance(e["cursor"], str) and e["cursor"] for e in edges)
        ids += [e["node"]["id"] for e in edges]
        pages += 1
        if not info["hasNextPage"]:
            break
        assert len(edges) == first, "a page before the last is full"
        after = info["endCursor"]
    expected_pages = max(1, -(-len(ids) // first))
    assert pages == expected_pages, (pages, len(ids), first)
    return ids


async def every_page_size_reads(
    client: GraphQLHttp,
    document: str,
    field: str,
    token: str,
    expected: list[str],
    *,
    variables: dict[str, Any] | None = None,
) -> None:
    """Pages of 1, 2, 3, all and ``MAX_PAGE`` rows read exactly ``expected``; after the last
    cursor comes an empty page that knows one came before."""
    for first in (1, 2, 3, len(expected), MAX_PAGE):
        ids = await read_pages(client, document, field, token, first=first, variables=variables)
        assert ids == expected, (field, first)
    whole = (await client.data(document, {**(variables or {}), "first": MAX_PAGE}, token=token))[
        field
    ]
    end = await client.data(
        document,
        {**(variables or {}), "first": 1, "after": whole["pageInfo"]["endCursor"]},
        token=token,
    )
    assert end[field] == {
        "edges": [],
        "nodes": [],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": True,
            "startCursor": None,
            "endCursor": None,
        },
    }


PRODUCTS = """query($s: ID, $first: Int!, $after: String) {
  products(supplierId: $s, first: $first, after: $after) {
    edges { cursor node { id supplierId skus { code } } }
    nodes { id supplierId skus { code } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


async def _product(client: GraphQLHttp, supplier: Member, title: str) -> str:
    made = await ok(
        client,
        """mutation($t: String!, $c: String!) { createProduct(input: {title: $t, skus: [{code: $c,
          attributes: {}, weightGrams: 100, unitPrice: "2.00", tiers: [{minQuantity: 5,
          unitPrice: "1.50"}]}]}) { product { id } userErrors { code field message } } }""",
        {"t": title, "c": f"{title}-1"},
        token=supplier.token,
    )
    return made["product"]["id"]


async def test_products_of_a_supplier_page_in_id_order(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, other, buyer = (
        await make_member("SUPPLIER"),
        await make_member("SUPPLIER"),
        await make_member("BUYER"),
    )
    for i in range(4):  # interleaved with another supplier's, so ids of the two alternate
        await _product(client, supplier, f"S{i}")
        await _product(client, other, f"O{i}")
    for i in range(4, 7):
        await _product(client, supplier, f"S{i}")
    gone = await _product(client, supplier, "Discontinued")
    await ok(
        client,
        "mutation($p: ID!) { discontinueProduct(productId: $p) { userErrors { code } } }",
        {"p": gone},
        token=supplier.token,
    )

    def gids(rows: list[int]) -> list[str]:
        return [gid("Product", key) for key in rows]

    active = gids(
        await ProductModel.filter(supplier_id=supplier.organisation_id, status=ProductStatus.ACTIVE)
        .order_by("id")
        .values_list("id", flat=True)
    )
    own = gids(
        await ProductModel.filter(supplier_id=supplier.organisation_id)
        .order_by("id")
        .values_list("id", flat=True)
    )
    assert len(active) == 7 and len(own) == 8 and gone in own and gone not in active
    # a buyer browsing one supplier: its active products only
    await every_page_size_reads(
        client, PRODUCTS, "products", buyer.token, active, variables={"s": supplier.gid}
    )
    # the supplier itself: every product of its own, none of the other supplier's
    await every_page_size_reads(client, PRODUCTS, "products", supplier.token, own)
    page = (await client.data(PRODUCTS, {"first": MAX_PAGE}, token=supplier.token))["products"]
    assert {n["supplierId"] for n in page["nodes"]} == {supplier.gid}
    assert all(n["skus"][0]["code"].startswith(("S", "Discontinued")) for n in page["nodes"])


QUOTES = """query($first: Int!, $after: String) { quotes(first: $first, after: $after) {
  edges { cursor node { id buyerId supplierId } } nodes { id buyerId supplierId }
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


async def test_quotes_page_newest_first_and_each_side_sees_its_own(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer, other = (
        await make_member("SUPPLIER"),
        await make_member("BUYER"),
        await make_member("BUYER"),
    )
    products = {}  # a store product of each asker's own (the quote's foreign key)
    for asker in (buyer, other):
        store = await StoreModel.create(
            buyer_id=asker.organisation_id,
            name="Shop",
            platform=StorePlatform.SHOPIFY,
            api_url="https://shop.example",
            access_token="token",
            webhook_secret="secret",
        )
        products[asker.organisation_id] = await StoreProductModel.create(
            store_id=store.id, external_id="1", title="Tee"
        )
    for i in range(9):  # buyer, buyer, other, ...: the other buyer's quotes lie between
        asker = other if i % 3 == 2 else buyer
        await QuoteModel.create(
            buyer_id=asker.organisation_id,
            supplier_id=supplier.organisation_id,
            store_product_id=products[asker.organisation_id].id,
            requested_by_user_id=asker.user_id,
        )

    async def newest_first(**scope: int) -> list[str]:
        keys = await QuoteModel.filter(**scope).order_by("-id").values_list("id", flat=True)
        return [gid("Quote", key) for key in keys]

    mine = await newest_first(buyer_id=buyer.organisation_id)
    theirs = await newest_first(buyer_id=other.organisation_id)
    everyone = await newest_first(supplier_id=supplier.organisation_id)
    assert (len(mine), len(theirs), len(everyone)) == (6, 3, 9)
    await every_page_size_reads(client, QUOTES, "quotes", buyer.token, mine)
    await every_page_size_reads(client, QUOTES, "quotes", other.token, theirs)
    await every_page_size_reads(client, QUOTES, "quotes", supplier.token, everyone)
    # a cursor of one buyer's list, sent by the other, pages the other's own quotes only
    cursor = (await client.data(QUOTES, {"first": 1}, token=buyer.token))["quotes"]["pageInfo"][
        "endCursor"
    ]
    after = await client.data(QUOTES, {"first": MAX_PAGE, "after": cursor}, token=other.token)
    seen = [n["id"] for n in after["quotes"]["nodes"]]
    assert seen and set(seen) <= set(theirs)


ENTRIES = """query($w: ID!, $first: Int!, $after: String) {
  walletEntries(walletId: $w, first: $first, after: $after) {
    edges { cursor node { id amount } } nodes { id amount }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
TOP_UP = """mutation($b: ID!, $a: Decimal!) { topUpWallet(buyerId: $b, amount: $a, currency: "USD")
  { wallet { id } userErrors { code field message } } }"""


async def test_wallet_entries_page_newest_first_within_the_callers_wallets(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, stranger = await make_member("SUPPLIER"), await make_member("SUPPLIER")
    buyer, other = await make_member("BUYER"), await make_member("BUYER")
    for partnered in (buyer, other):  # a supplier tops up only buyers it trades with
        await partner(client, supplier, partnered)
    wallets: dict[str, str] = {}
    for i in range(7):  # the other buyer's top-ups lie between
        whose = other if i % 3 == 1 else buyer
        made = await ok(client, TOP_UP, {"b": whose.gid, "a": f"{i + 1}.00"}, token=supplier.token)
        wallets[whose.gid] = made["wallet"]["id"]
    own, others = wallets[buyer.gid], wallets[other.gid]

    async def entries(wallet: str) -> list[str]:
        keys = (
            await WalletEntryModel.filter(wallet_id=key_of(wallet))
            .order_by("-id")
            .values_list("id", flat=True)
        )
        return [gid("WalletEntry", key) for key in keys]

    mine, theirs = await entries(own), await entries(others)
    assert (len(mine), len(theirs)) == (5, 2)
    for reader in (buyer, supplier):
        await every_page_size_reads(
            client, ENTRIES, "walletEntries", reader.token, mine, variables={"w": own}
        )
    await every_page_size_reads(
        client, ENTRIES, "walletEntries", supplier.token, theirs, variables={"w": others}
    )
    # another organisation's wallet is not found, whatever the page asked for
    for reader, wallet in ((buyer, others), (other, own), (stranger, own)):
        body = await client.post(ENTRIES, {"w": wallet, "first": 10}, token=reader.token)
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], body


# -- refusals ----------------------------------------------------------------------------------------


def _call(field: str, first: Any, after: Any) -> tuple[str, dict[str, Any]]:
    variables: dict[str, Any] = {"first": first, "after": after}
    arguments = "first: $first, after: $after"
    definitions = "$first: Int!, $after: String"
    if field in REQUIRED:
        name, kind = REQUIRED[field]
        variables["id"] = gid(kind, 2**31 - 1)
        arguments += f", {name}: $id"
        definitions += ", $id: ID!"
    return f"query({definitions}) {{ {field}({arguments}) {{ nodes {{ id }} }} }}", variables


REFUSED: list[tuple[int, str | None, str]] = [  # first, after, the argument refused
    (0, None, "first"),
    (-1, None, "first"),
    (MAX_PAGE + 1, None, "first"),
    (10, "not a cursor", "after"),
    (10, "", "after"),
    (10, "-5", "after"),
    (10, "0", "after"),
    (10, gid("Product", 1), "after"),  # an id is not a cursor
    (10, str(2**64), "after"),
]


async def test_page_arguments_out_of_range_are_bad_user_input(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """On every connection, whoever may ask and whatever its other arguments name (checked
    before anything is read: a wallet that does not exist). A caller of the kind the field's
    declaration refuses (a supplier's list asked by a buyer) is refused first: FORBIDDEN."""
    callers = {"BUYER": await make_member("BUYER"), "SUPPLIER": await make_member("SUPPLIER")}
    query_type = create_schema()._schema.query_type
    assert query_type is not None
    fields = query_type.fields
    wrong: list[str] = []
    for first, after, argument in REFUSED:
        for field in CONNECTIONS:
            document, variables = _call(field, first, after)
            requires = declared(fields[field].extensions[GraphQLCoreConverter.DEFINITION_BACKREF])
            assert requires is not None, field
            for kind, caller in callers.items():
                body = await client.post(document, variables, token=caller.token)
                codes = [
                    (e["extensions"]["code"], e["extensions"].get("field"))
                    for e in body.get("errors") or []
                ]
                refused = requires.kind is not None and requires.kind.value != kind
                expected = [("FORBIDDEN", None)] if refused else [("BAD_USER_INPUT", argument)]
                if body.get("data") is not None or codes != expected:
                    wrong.append(f"{field}(first: {first}, after: {after!r}) as {kind}: {body}")
    assert wrong == []


async def test_the_largest_page_is_served(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    buyer = await make_member("BUYER")
    for field in CONNECTIONS:
        if field in REQUIRED:
            continue
        document, variables = _call(field, MAX_PAGE, None)
        body = await client.post(document, variables, token=buyer.token)
        codes = [e["extensions"]["code"] for e in body.get("errors") or []]
        # thirdPartyWarehouses is for supplier staff
        assert codes == (["FORBIDDEN"] if field == "thirdPartyWarehouses" else []), (field, body)


# -- statements ----------------------------------------------------------------------------------------

PRODUCTS_PAGE = """query($n: Int!) { products(first: $n) { edges { cursor node { id title
  skus { code unitPrice tiers { minQuantity unitPrice } } } } pageInfo { hasNextPage endCursor } } }"""


@pytest.mark.slow
async def test_a_page_of_products_costs_the_same_statements_whatever_its_size(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier = await make_member("SUPPLIER")
    for i in range(55):
        await _product(client, supplier, f"P{i}")
    await _statements(client, supplier.token, 1, PRODUCTS_PAGE)  # warm the token's stamp
    small = await _statements(client, supplier.token, 10, PRODUCTS_PAGE)
    large = await _statements(client, supplier.token, 50, PRODUCTS_PAGE)
    assert 0 < small == large, (small, large)
    assert large <= 3, large  # the page, the SKUs of all its products, their tiers
