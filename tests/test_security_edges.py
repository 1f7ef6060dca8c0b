"""Edges a probe of a running instance found (issue 19), each pinned by a test that failed on
the old behaviour."""

from __future__ import annotations

from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import sim
from tests.test_store_followups import connected_order
from tests.test_store_integration import Sim

__all__ = ["sim"]

STORE_OF_ORDERS = "{ orders { edges { node { store { id apiUrl } } } } }"
STORES = "{ stores { nodes { id apiUrl } } }"


async def test_a_stores_backend_address_is_shown_to_its_buyers_admins_only(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    await connected_order(client, server, supplier, buyer, sim)
    staff = await make_member("BUYER", role="STAFF", organisation_id=buyer.organisation_id)
    admin = await make_member("BUYER", role="ADMIN", organisation_id=buyer.organisation_id)

    def addresses(data: dict) -> list[str | None]:
        return [e["node"]["store"]["apiUrl"] for e in data["orders"]["edges"]]

    # the supplier of its orders sees the store, not where its backend is (was: the URL)
    assert addresses(await client.data(STORE_OF_ORDERS, token=supplier.token)) == [None]
    assert addresses(await client.data(STORE_OF_ORDERS, token=staff.token)) == [None]
    for member in (admin, buyer):  # ADMIN and OWNER
        assert addresses(await client.data(STORE_OF_ORDERS, token=member.token)) == [sim.url]
        stores = (await client.data(STORES, token=member.token))["stores"]["nodes"]
        assert [s["apiUrl"] for s in stores] == [sim.url]
    stores = (await client.data(STORES, token=staff.token))["stores"]["nodes"]
    assert [s["apiUrl"] for s in stores] == [None]
