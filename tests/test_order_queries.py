"""Reading orders: no N+1 (statement count independent of page size), keyset pages, counts."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from domain.request_context import request_id_var
from schema.global_ids import key_of
from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import ok, supplier_catalogue

PAGE = """query($n: Int!, $after: String) { orders(first: $n, after: $after) {
  edges { cursor node { id number status lines { quantity sku { code product { title } } }
          store { name } logisticsMethod { name } latestTransition { toStatus at } deputes { id } } }
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


# the page of the performance target (issue: lines, SKU, product, store, shipment, timeline)
BACK = """query($n: Int!, $before: String) { orders(last: $n, before: $before) {
  edges { cursor node { id number status lines { quantity } } }
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""

TARGET_PAGE = """query($n: Int!, $after: String) { orders(first: $n, after: $after) {
  edges { cursor node { id number status carrier trackingNumber
          lines { quantity sku { code product { title } } } store { name }
          latestTransition { toStatus at } } }
  pageInfo { hasNextPage endCursor } } }"""

# a buyer's order list with what each unpaid order will cost (estimated for the whole page)
PRICED_PAGE = """query($n: Int!, $after: String) { orders(first: $n, after: $after) {
  edges { cursor node { id number status pricesEstimated goodsAmount carrier trackingNumber
          lines { quantity unitPrice sku { code product { title } } } store { name }
          latestTransition { toStatus at } } }
  pageInfo { hasNextPage endCursor } } }"""

NODES_PRICED = """query($ids: [ID!]!) { nodes(ids: $ids) { ... on Order { id goodsAmount
  lines { unitPrice } } } }"""


class _Counter(logging.Handler):
    """Counts the SQL statements of one request: those logged while the request id is ours.

    The id is set by the request middleware in the request's context, which the DataLoader
    batches (separate tasks) inherit; background loops run in contexts without it.
    """

    def __init__(self, request_id: str) -> None:
        super().__init__(logging.DEBUG)
        self.request_id = request_id
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if request_id_var.get() == self.request_id:
            self.count += 1


async def _statements(
    client: GraphQLHttp,
    token: str,
    first: int,
    page: str = PAGE,
    variables: dict[str, Any] | None = None,
) -> int:
    counter = _Counter(f"count-{uuid.uuid4().hex}")
    db_log = logging.getLogger("tortoise.db_client")
    db_log.addHandler(counter)
    previous = db_log.level
    db_log.setLevel(logging.DEBUG)
    try:
        response = await client.http.post(
            "/graphql",
            json={"query": page, "variables": variables or {"n": first}},
            headers={"authorization": f"Bearer {token}", "x-request-id": counter.request_id},
        )
        assert "errors" not in response.json(), response.text
    finally:
        db_log.removeHandler(counter)
        db_log.setLevel(previous)
    return counter.count


@pytest.mark.slow
async def test_statement_count_does_not_grow_with_page_size(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    for _ in range(55):
        await ok(
            client,
            """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 2}],
            logisticsMethodId: $m, shippingAddress: {name: "A", address1: "1", city: "L", countryCode: "GB"}})
            { order { id } userErrors { code } } }""",
            {"k": cat["skus"]["TEE-R-M"], "m": cat["method"]},
            token=buyer.token,
        )
    await _statements(client, buyer.token, 1)  # warm: token's last-used stamp is written once
    small, large = (
        await _statements(client, buyer.token, 10),
        await _statements(client, buyer.token, 50),
    )
    assert 0 < small == large, (small, large)
    assert large <= 9  # the target page's 6, plus logistics method and deputes
    target = [await _statements(client, buyer.token, n, TARGET_PAGE) for n in (10, 50)]
    assert target[0] == target[1] <= 6, target
    # unpaid orders' prices: two statements for the page (lines with SKUs, tiers), any size
    priced = [await _statements(client, buyer.token, n, PRICED_PAGE) for n in (10, 50)]
    assert priced[0] == priced[1] == target[0] + 2, (priced, target)
    shown = (await client.data(PRICED_PAGE, {"n": 50}, token=buyer.token))["orders"]["edges"]
    assert {(e["node"]["pricesEstimated"], e["node"]["goodsAmount"]) for e in shown} == {
        (True, "10.00")
    }
    # orders fetched by id resolve their prices through one DataLoader batch
    ids = [e["node"]["id"] for e in shown]
    by_id = [
        await _statements(client, buyer.token, 0, NODES_PRICED, {"ids": ids[:n]}) for n in (10, 50)
    ]
    assert by_id[0] == by_id[1], by_id


async def test_keyset_pages_cover_every_order_once_and_counts_match(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    for _ in range(7):
        await ok(
            client,
            """mutation($k: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 1}],
            shippingAddress: {name: "A", address1: "1", city: "L", countryCode: "GB"}}) { order { id } userErrors { code } } }""",
            {"k": cat["skus"]["TEE-B-L"]},
            token=buyer.token,
        )
    seen, after = [], None
    while True:
        page = (await client.data(PAGE, {"n": 3, "after": after}, token=buyer.token))["orders"]
        seen += [key_of(e["node"]["id"]) for e in page["edges"]]
        info = page["pageInfo"]
        assert info["hasPreviousPage"] is (after is not None)
        assert info["startCursor"] == page["edges"][0]["cursor"]
        assert info["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == 7 == len(set(seen)) and seen == sorted(seen, reverse=True)
    # and back again from the last page: `last` before a page's start gives the page before it
    back, before = [], None
    while True:
        page = (await client.data(BACK, {"n": 3, "before": before}, token=buyer.token))["orders"]
        keys = [key_of(e["node"]["id"]) for e in page["edges"]]
        assert keys == sorted(keys, reverse=True)  # a page reads newest first either way
        back = keys + back
        info = page["pageInfo"]
        assert info["hasNextPage"] is (before is not None)
        assert info["startCursor"] == page["edges"][0]["cursor"]
        if not info["hasPreviousPage"]:
            break
        before = info["startCursor"]
    assert back == seen
    mixed = await client.post(
        "{ orders(first: 2, last: 2) { edges { cursor } } }", token=buyer.token
    )
    assert mixed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    counts = {
        c["status"]: c["count"]
        for c in (await client.data("{ orderCounts { status count } }", token=buyer.token))[
            "orderCounts"
        ]
    }
    assert counts["AWAITING_PAYMENT"] == 7 and counts["SHIPPED"] == 0
    supplier_view = (
        await client.data(
            "{ orders(filter: {statuses: [AWAITING_PAYMENT]}) { edges { node { id } } } }",
            token=supplier.token,
        )
    )["orders"]["edges"]
    assert len(supplier_view) == 7
