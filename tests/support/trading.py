"""Making a supplier and a buyer trading parties through the API, for tests that top up a
wallet before any order exists: a supplier tops up only buyers it trades with (an ACCEPTED
partnership or an order between them, ``domain.trading``)."""

from __future__ import annotations

from tests.conftest import Member
from tests.support.graphql_client import GraphQLHttp

APPLY = """mutation($s: ID!) { applyForPartnership(supplierId: $s, message: "trade") {
  partnership { id } userErrors { code field message } } }"""
ACCEPT = """mutation($p: ID!) { decidePartnership(partnershipId: $p, accept: true) {
  partnership { status } userErrors { code field message } } }"""


async def partner(client: GraphQLHttp, supplier: Member, buyer: Member) -> str:
    """The buyer applies to the supplier, which accepts; the partnership's id."""
    applied = (await client.data(APPLY, {"s": supplier.gid}, token=buyer.token))[
        "applyForPartnership"
    ]
    assert applied["userErrors"] == [], applied
    partnership = applied["partnership"]["id"]
    accepted = (await client.data(ACCEPT, {"p": partnership}, token=supplier.token))[
        "decidePartnership"
    ]
    assert accepted == {"partnership": {"status": "ACCEPTED"}, "userErrors": []}, accepted
    return partnership
