"""Edges a probe of a running instance found (issue 19), each pinned by a test that failed on
the old behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.organisations import tokens
from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import ok, sim
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


CREATE_TOKEN = """mutation($n: String!) { createApiToken(input: {name: $n})
  { token { id } userErrors { code } } }"""
TOKEN_EVENTS = "{ events(types: [API_TOKEN_CREATED, API_TOKEN_REVOKED]) { edges { node { subjectId payload } } } }"


async def test_a_viewer_sees_the_events_of_its_own_tokens_only_as_apitokens_shows_them(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect: Any
) -> None:
    admin = await make_member("BUYER")
    viewer = await make_member("BUYER", role="VIEWER", organisation_id=admin.organisation_id)
    socket = await ws_connect(token=viewer.token)
    await socket.acknowledged()
    await socket.subscribe(
        "subscription { events(types: [API_TOKEN_CREATED]) { subjectId payload } }"
    )
    await server.wait_for_subscribers(1)
    theirs = await ok(client, CREATE_TOKEN, {"n": "admin's deploy key"}, token=admin.token)
    mine = await ok(client, CREATE_TOKEN, {"n": "my script"}, token=viewer.token)

    # live: the colleague's token never reaches the viewer; its own does
    live: list[str] = []
    while mine["token"]["id"] not in live:  # (its own member token's event may come first)
        live.append((await socket.next_data())["events"]["subjectId"])
    assert theirs["token"]["id"] not in live
    # history: the same rule, as `apiTokens` shows tokens
    seen = (await client.data(TOKEN_EVENTS, token=viewer.token))["events"]["edges"]
    listed = await client.data("{ apiTokens { nodes { id } } }", token=viewer.token)
    own = {token["id"] for token in listed["apiTokens"]["nodes"]}
    assert mine["token"]["id"] in own and theirs["token"]["id"] not in own
    assert {e["node"]["subjectId"] for e in seen} == own
    everything = (await client.data(TOKEN_EVENTS, token=admin.token))["events"]["edges"]
    assert {theirs["token"]["id"], mine["token"]["id"]} <= {
        e["node"]["subjectId"] for e in everything
    }


async def test_tokens_expire_by_default_and_a_user_holds_a_bounded_number(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    viewer_org = await make_member("BUYER")
    viewer = await make_member("BUYER", role="VIEWER", organisation_id=viewer_org.organisation_id)
    made = await client.data(
        'mutation { createApiToken(input: {name: "x"}) { token { expiresAt } userErrors { code } } }',
        token=viewer.token,
    )
    expires = datetime.fromisoformat(made["createApiToken"]["token"]["expiresAt"])
    lifetime = expires - datetime.now(UTC)
    assert timedelta(days=89) < lifetime <= tokens.DEFAULT_LIFETIME  # was: never
    # the member's own token and this one are two; fill up to the limit, then one more
    for i in range(tokens.MAX_ACTIVE_TOKENS_PER_USER - 2):
        last = await ok(client, CREATE_TOKEN, {"n": f"t{i}"}, token=viewer.token)
    refused = await client.data(CREATE_TOKEN, {"n": "one too many"}, token=viewer.token)
    assert refused["createApiToken"] == {"token": None, "userErrors": [{"code": "TOO_MANY"}]}
    # a revoked one makes room again
    await ok(
        client,
        "mutation($i: ID!) { revokeApiToken(input: {id: $i}) { userErrors { code } } }",
        {"i": last["token"]["id"]},
        token=viewer_org.token,
    )
    await ok(client, CREATE_TOKEN, {"n": "room again"}, token=viewer.token)
