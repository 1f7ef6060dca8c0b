"""Subscriptions over a real WebSocket (graphql-transport-ws): delivery, auth, isolation, replay."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from schema.global_ids import gid
from tests.conftest import MakeMember
from tests.support.events import seq_of
from tests.support.graphql_client import EVENTS_SUBSCRIPTION, GraphQLHttp, GraphQLWebSocket
from tests.support.server import RunningServer

RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"


async def rename(client: GraphQLHttp, token: str, name: str) -> None:
    data = await client.data(RENAME, {"n": name}, token=token)
    assert data["renameOrganisation"]["userErrors"] == []


async def subscribed(
    server: RunningServer, ws_connect, token: str, **variables
) -> GraphQLWebSocket:  # type: ignore[no-untyped-def]
    """A socket with one live `events` subscription, registered before this returns."""
    ws: GraphQLWebSocket = await ws_connect(token)
    await ws.acknowledged()
    before = server.app.state.hub.subscriber_count
    await ws.subscribe(EVENTS_SUBSCRIPTION, variables)
    await server.wait_for_subscribers(before + 1)
    return ws


async def test_subscriber_receives_the_event_of_a_mutation(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect
) -> None:
    member = await make_member()
    ws: GraphQLWebSocket = await ws_connect(member.token)
    ack = await ws.acknowledged()
    assert ack["payload"] == {"organisationId": member.gid}
    await ws.subscribe(EVENTS_SUBSCRIPTION, {"types": ["ORGANISATION_UPDATED"]})
    await server.wait_for_subscribers(1)

    await rename(client, member.token, "Live Co")
    event = (await ws.next_data())["events"]
    assert event["type"] == "ORGANISATION_UPDATED"
    assert event["subjectId"] == member.gid
    assert event["payload"]["name"] == "Live Co"


async def test_events_arrive_in_order_without_duplicates(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect
) -> None:
    member = await make_member()
    ws = await subscribed(server, ws_connect, member.token, types=["ORGANISATION_UPDATED"])
    # concurrent mutations: ids still reach the subscriber strictly increasing
    await asyncio.gather(*(rename(client, member.token, f"Name {i}") for i in range(20)))
    ids = [seq_of((await ws.next_data())["events"]["id"]) for _ in range(20)]
    assert ids == sorted(ids) and len(set(ids)) == 20
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=0.5)


@pytest.mark.parametrize("payload", [{}, {"Authorization": "Bearer sg_wrong"}, {"token": 42}])
async def test_websocket_without_a_valid_token_is_closed(
    server: RunningServer, payload: dict
) -> None:
    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4403


async def test_subscribe_before_init_is_refused(server: RunningServer) -> None:
    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": EVENTS_SUBSCRIPTION}})
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4401


async def test_subscribers_see_only_their_organisations_events(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect
) -> None:
    alice, bob = await make_member(), await make_member("SUPPLIER")
    alice_ws, bob_ws = await ws_connect(alice.token), await ws_connect(bob.token)
    await alice_ws.acknowledged()
    await bob_ws.acknowledged()
    await alice_ws.subscribe(EVENTS_SUBSCRIPTION)
    await bob_ws.subscribe(
        EVENTS_SUBSCRIPTION, {"after": gid("Event", 0)}
    )  # even replaying everything
    await server.wait_for_subscribers(2)

    await rename(client, alice.token, "Alice secret plans")
    await rename(client, bob.token, "Bob Co")
    assert (await alice_ws.next_data())["events"]["payload"]["name"] == "Alice secret plans"
    seen_by_bob = []
    while True:
        event = (await bob_ws.next_data())["events"]
        seen_by_bob.append(event)
        if event["payload"].get("name") == "Bob Co":
            break
    assert "Alice" not in json.dumps(seen_by_bob)
    assert {e["subjectId"] for e in seen_by_bob if e["subjectType"] == "Organisation"} == {bob.gid}
    with pytest.raises(TimeoutError):
        await alice_ws.receive(timeout=0.5)


async def test_reconnect_with_last_id_replays_without_gap_or_duplicate(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect
) -> None:
    member = await make_member()
    ws = await subscribed(server, ws_connect, member.token, types=["ORGANISATION_UPDATED"])
    await rename(client, member.token, "one")
    await rename(client, member.token, "two")
    first = [(await ws.next_data())["events"] for _ in range(2)]
    last_seen = first[-1]["id"]
    await ws.close()

    # while disconnected, more happens; then more happens while the replay is in progress
    for name in ("three", "four", "five"):
        await rename(client, member.token, name)
    again = await ws_connect(member.token)
    await again.acknowledged()
    await again.subscribe(
        EVENTS_SUBSCRIPTION, {"after": last_seen, "types": ["ORGANISATION_UPDATED"]}
    )
    writer = asyncio.create_task(rename(client, member.token, "six"))
    received = [(await again.next_data())["events"] for _ in range(4)]
    await writer
    await rename(client, member.token, "seven")
    received.append((await again.next_data())["events"])

    names = [e["payload"]["name"] for e in first + received]
    assert names == ["one", "two", "three", "four", "five", "six", "seven"]
    ids = [seq_of(e["id"]) for e in first + received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    with pytest.raises(TimeoutError):
        await again.receive(timeout=0.5)


async def test_revoking_the_connections_token_ends_its_subscriptions(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect
) -> None:
    member = await make_member()
    created = await client.data(
        'mutation { createApiToken(input: {name: "dash"}) { secret token { id } } }',
        token=member.token,
    )
    dash = created["createApiToken"]
    ws = await ws_connect(dash["secret"])
    await ws.acknowledged()
    op = await ws.subscribe(EVENTS_SUBSCRIPTION, {"types": ["ORGANISATION_UPDATED"]})
    await server.wait_for_subscribers(1)
    await client.data(
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { userErrors { code } } }",
        {"id": dash["token"]["id"]},
        token=member.token,
    )
    message = await ws.receive()
    assert message["id"] == op
    assert message["type"] in ("error", "next")
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_shutdown_ends_open_subscriptions_cleanly(
    make_server, make_member: MakeMember
) -> None:  # type: ignore[no-untyped-def]
    """uvicorn closes sockets with 1012 (service restart: reconnect) and the hub lets go of all."""
    server: RunningServer = await make_server()
    member = await make_member()
    ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
    await ws.acknowledged()
    await ws.subscribe(EVENTS_SUBSCRIPTION, {"types": ["ORGANISATION_UPDATED"]})
    await server.wait_for_subscribers(1)
    stopping = asyncio.create_task(server.stop())
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    await stopping
    assert server.app.state.hub.subscriber_count == 0
    assert server.app.state.hub.closed


async def test_bad_after_event_id_is_a_clear_error(
    server: RunningServer, make_member: MakeMember, ws_connect
) -> None:
    member = await make_member()
    ws = await ws_connect(member.token)
    await ws.acknowledged()
    await ws.subscribe(EVENTS_SUBSCRIPTION, {"after": "not-a-number"})
    message = await ws.receive()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_legacy_graphql_ws_protocol_is_served(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    member = await make_member()
    async with websockets.connect(server.ws_url, subprotocols=["graphql-ws"]) as ws:
        await ws.send(
            json.dumps(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {member.token}"}}
            )
        )
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "start",
                    "payload": {
                        "query": EVENTS_SUBSCRIPTION,
                        "variables": {"types": ["ORGANISATION_UPDATED"]},
                    },
                }
            )
        )
        await server.wait_for_subscribers(1)
        await rename(client, member.token, "Legacy")
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "data":
                break
        assert message["payload"]["data"]["events"]["payload"]["name"] == "Legacy"


async def test_oversized_websocket_message_closes_the_socket(
    make_server, make_member: MakeMember
) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = await make_server(max_body_bytes=4096)
    member = await make_member()
    ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
    await ws.acknowledged()
    await ws.send(
        {"id": "1", "type": "subscribe", "payload": {"query": "{ me { tokenId } }" + " " * 8192}}
    )
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
    await ws.close()


async def test_graphiql_only_in_debug(make_server) -> None:  # type: ignore[no-untyped-def]
    import httpx

    headers = {"accept": "text/html"}
    async with httpx.AsyncClient() as http:
        # one in-process server at a time: Tortoise keeps one global context per process
        quiet: RunningServer = await make_server()
        assert (
            "graphiql" not in (await http.get(f"{quiet.url}/graphql", headers=headers)).text.lower()
        )
        await quiet.stop()
        debug: RunningServer = await make_server(debug=True)
        assert "graphiql" in (await http.get(f"{debug.url}/graphql", headers=headers)).text.lower()


async def test_cross_origin_websocket_is_refused_unless_allowed(make_server) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = await make_server(ws_allowed_origins=("https://dash.example",))
    headers = {"origin": "https://evil.example"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            server.ws_url, subprotocols=["graphql-transport-ws"], additional_headers=headers
        )
    assert refused.value.response.status_code == 403
    allowed = await websockets.connect(
        server.ws_url,
        subprotocols=["graphql-transport-ws"],
        additional_headers={"origin": "https://dash.example"},
    )
    await allowed.close()
