"""Event ids and cursors are opaque and each organisation's own (issue 19): the gaps between
the ids one tenant sees no longer measure the others' activity, and an id shown to one
organisation names nothing for another."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import MakeMember, Member
from tests.support.events import seq_of
from tests.support.graphql_client import GraphQLHttp

APPLY = """mutation($s: ID!) { applyForPartnership(supplierId: $s) { partnership { id }
  userErrors { code } } }"""
EVENTS = """query($after: String) { events(first: 50, after: $after, types: [PARTNERSHIP_UPDATED])
  { edges { cursor node { id subjectId } } } }"""
NODE = "query($i: ID!) { node(id: $i) { ... on Event { id subjectId } } }"
REPLAY = "subscription($a: ID) { events(afterEventId: $a) { id } }"
KEY = re.compile(r"gid://supplygraph/Event/[A-Za-z0-9_-]{22}")


async def partnership_events(client: GraphQLHttp, member: Member) -> list[dict[str, Any]]:
    return (await client.data(EVENTS, token=member.token))["events"]["edges"]


async def test_each_organisation_sees_its_own_opaque_id_for_a_shared_event(
    server: Any, client: GraphQLHttp, make_member: MakeMember, ws_connect: Any
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    await client.data(
        APPLY,
        {"s": f"gid://supplygraph/Organisation/{supplier.organisation_id}"},
        token=buyer.token,
    )
    [theirs] = await partnership_events(client, supplier)
    [mine] = await partnership_events(client, buyer)
    # one event, two ids: neither a number nor the other's
    assert theirs["node"]["subjectId"] == mine["node"]["subjectId"]
    assert KEY.fullmatch(theirs["node"]["id"]) and KEY.fullmatch(mine["node"]["id"])
    assert theirs["node"]["id"] != mine["node"]["id"]
    assert seq_of(theirs["node"]["id"]) == seq_of(mine["node"]["id"])
    # the cursor is the id's key
    assert mine["cursor"] == mine["node"]["id"].rsplit("/", 1)[1]
    # stable: read again, the same
    assert (await partnership_events(client, buyer))[0]["node"]["id"] == mine["node"]["id"]

    # each finds its own; the other's id reads exactly as an unknown one
    found = await client.data(NODE, {"i": mine["node"]["id"]}, token=buyer.token)
    assert found["node"] == mine["node"]
    unknown = "gid://supplygraph/Event/" + "A" * 22
    for raw in (theirs["node"]["id"], unknown, "gid://supplygraph/Event/7"):
        assert await client.data(NODE, {"i": raw}, token=buyer.token) == {"node": None}

    # a cursor or a resume point of another organisation: refused as a made-up one is
    answers = []
    for after in (theirs["cursor"], "A" * 22, "7"):
        answers.append(await client.post(EVENTS, {"after": after}, token=buyer.token))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    refusals = []
    for after_id in (theirs["node"]["id"], unknown, "gid://supplygraph/Event/7"):
        socket = await ws_connect(token=buyer.token)
        await socket.acknowledged()
        await socket.subscribe(REPLAY, {"a": after_id})
        refusals.append(await socket.receive())
        await socket.close()
    assert refusals[0] == refusals[1] == refusals[2], refusals
    # and the buyer's own resume point replays what followed it
    socket = await ws_connect(token=buyer.token)
    await socket.acknowledged()
    await socket.subscribe(REPLAY, {"a": "gid://supplygraph/Event/0"})
    replayed = [(await socket.next_data())["events"]["id"] for _ in range(2)]  # joined, applied
    assert mine["node"]["id"] in replayed
    await socket.close()
    socket = await ws_connect(token=buyer.token)
    await socket.acknowledged()
    await socket.subscribe(REPLAY, {"a": replayed[0]})
    assert (await socket.next_data())["events"]["id"] == replayed[1]
    await socket.close()
