"""Multiplexed subscriptions over a real WebSocket: shared groups, isolation, clean-up,
revocation per connection, the graphql-transport-ws rules, and the legacy graphql-ws protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import websockets
from starlette.routing import WebSocketRoute

from domain.events import outbox
from domain.events.models import Event
from schema.global_ids import gid
from service.live import LiveEndpoint, Multiplexer
from tests.conftest import METRICS_HEADERS, MakeMember, ServerFactory
from tests.support.events import seq_of
from tests.support.graphql_client import EVENTS_SUBSCRIPTION, GraphQLHttp, GraphQLWebSocket
from tests.support.server import RunningServer

Connect = Callable[..., Awaitable[GraphQLWebSocket]]
RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
UPDATES = {"types": ["ORGANISATION_UPDATED"]}


def live(server: RunningServer) -> Multiplexer:
    return server.app.state.live


async def rename(client: GraphQLHttp, token: str, name: str) -> None:
    data = await client.data(RENAME, {"n": name}, token=token)
    assert data["renameOrganisation"]["userErrors"] == []


async def subscribed_socket(
    ws_connect: Connect, token: str, variables: dict[str, Any] | None = None
) -> GraphQLWebSocket:
    ws = await ws_connect(token)
    await ws.acknowledged()
    await ws.subscribe(EVENTS_SUBSCRIPTION, variables)
    return ws


async def events(ws: GraphQLWebSocket, count: int) -> list[dict[str, Any]]:
    return [(await ws.next_data())["events"] for _ in range(count)]


async def nothing_more(ws: GraphQLWebSocket) -> None:
    with pytest.raises(TimeoutError):
        await ws.receive(timeout=0.5)


async def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def settled(server: RunningServer, timeout: float = 10) -> None:
    """Wait until the hub has dispatched every event committed so far (through Redis it gets
    them a moment after the commit), so a new subscription starts after all of them."""
    hub = server.app.state.hub
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (
        await Event.filter(published_at__isnull=True).exists()
        or hub.last_seq < await outbox.last_seq()
    ):
        assert loop.time() < deadline, "events not dispatched in time"
        await asyncio.sleep(0.02)


async def closed_with(ws: Any, timeout: float = 5) -> websockets.frames.Close:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    assert closed.value.rcvd is not None
    return closed.value.rcvd


async def test_sockets_with_the_same_subscription_share_one_group(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect: Connect
) -> None:
    member = await make_member()
    sockets = [await subscribed_socket(ws_connect, member.token, UPDATES) for _ in range(5)]
    await server.wait_for_subscribers(5)
    assert live(server).group_count == 1
    assert live(server).hub_streams == 1  # one execution reads the events for all five

    await asyncio.gather(*(rename(client, member.token, f"Shared {i}") for i in range(10)))
    received = [await events(ws, 10) for ws in sockets]
    ids = [seq_of(e["id"]) for e in received[0]]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert all(r == received[0] for r in received)
    for ws in sockets:
        await nothing_more(ws)

    metrics = (await client.http.get("/metrics", headers=METRICS_HEADERS)).text
    assert "supplygraph_subscription_groups 1.0" in metrics
    assert "supplygraph_active_subscriptions 5.0" in metrics


async def test_variables_visibility_and_organisations_make_separate_groups(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect: Connect
) -> None:
    alice, bob = await make_member(), await make_member()
    alice_staff = await make_member(role="STAFF", organisation_id=alice.organisation_id)
    await settled(server)
    alice_updates = await subscribed_socket(ws_connect, alice.token, UPDATES)
    alice_all = await subscribed_socket(ws_connect, alice.token)
    staff_updates = await subscribed_socket(ws_connect, alice_staff.token, UPDATES)
    bob_updates = await subscribed_socket(ws_connect, bob.token, UPDATES)
    await server.wait_for_subscribers(4)
    assert live(server).group_count == 4

    await rename(client, alice.token, "Alice secret plans")
    await rename(client, bob.token, "Bob Co")
    for ws in (alice_updates, alice_all, staff_updates):
        [event] = await events(ws, 1)
        assert event["payload"]["name"] == "Alice secret plans"
        assert event["subjectId"] == alice.gid
    [event] = await events(bob_updates, 1)
    assert event["payload"]["name"] == "Bob Co"
    for ws in (alice_updates, alice_all, staff_updates, bob_updates):
        await nothing_more(ws)


async def test_a_refused_subscription_only_answers_its_subscriber(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect: Connect
) -> None:
    member = await make_member()
    good = await subscribed_socket(ws_connect, member.token, UPDATES)
    await server.wait_for_subscribers(1)
    bad = await ws_connect(member.token)
    await bad.acknowledged()
    op = await bad.subscribe("subscription { events { nope } }")
    message = await bad.receive()
    assert message["id"] == op and message["type"] == "error"
    assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    await rename(client, member.token, "Still here")
    assert (await events(good, 1))[0]["payload"]["name"] == "Still here"
    await nothing_more(bad)
    assert live(server).group_count == 1


async def test_group_ends_with_its_last_subscriber_and_nothing_is_left(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect: Connect
) -> None:
    member = await make_member()
    first = await subscribed_socket(ws_connect, member.token, UPDATES)
    second = await ws_connect(member.token)
    await second.acknowledged()
    op = await second.subscribe(EVENTS_SUBSCRIPTION, UPDATES)
    await server.wait_for_subscribers(2)
    assert live(server).group_count == 1

    await second.send({"id": op, "type": "complete"})
    await wait_until(lambda: live(server).open_subscriptions == 1)
    assert live(server).group_count == 1
    await rename(client, member.token, "Only the first")
    assert (await events(first, 1))[0]["payload"]["name"] == "Only the first"
    await nothing_more(second)

    await first.close()
    hub = server.app.state.hub
    await wait_until(lambda: live(server).group_count == 0 and hub.subscriber_count == 0)
    assert live(server).hub_streams == 0
    assert live(server).open_subscriptions == 0
    await second.close()
    await wait_until(
        lambda: (
            not [
                t for t in asyncio.all_tasks() if t.get_name().startswith("live-") and not t.done()
            ]
        )
    )

    # the same subscription later starts a fresh group
    again = await subscribed_socket(ws_connect, member.token, UPDATES)
    await server.wait_for_subscribers(1)
    assert live(server).group_count == 1
    await rename(client, member.token, "Again")
    assert (await events(again, 1))[0]["payload"]["name"] == "Again"


async def test_revoking_a_token_ends_only_its_connections_subscriptions(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect: Connect
) -> None:
    member = await make_member()
    created = await client.data(
        'mutation { createApiToken(input: {name: "dash"}) { secret token { id } } }',
        token=member.token,
    )
    dash = created["createApiToken"]
    await settled(server)
    # no type filter: the revocation is itself an event the other member must receive
    revoked = await subscribed_socket(ws_connect, dash["secret"])
    kept = await subscribed_socket(ws_connect, member.token)
    await server.wait_for_subscribers(2)
    assert live(server).group_count == 1

    await client.data(
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { userErrors { code } } }",
        {"id": dash["token"]["id"]},
        token=member.token,
    )
    ended = await revoked.receive()
    assert ended["id"] == "1" and ended["type"] == "next"
    assert ended["payload"]["data"] is None
    assert ended["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await revoked.receive() == {"id": "1", "type": "complete"}
    [event] = await events(kept, 1)
    assert event["type"] == "API_TOKEN_REVOKED" and event["subjectId"] == dash["token"]["id"]

    await rename(client, member.token, "After revocation")
    assert (await events(kept, 1))[0]["payload"]["name"] == "After revocation"
    await nothing_more(revoked)
    assert live(server).group_count == 1

    # the revoked connection starts nothing new
    op = await revoked.subscribe(EVENTS_SUBSCRIPTION)
    refused = await revoked.receive()
    assert refused["id"] == op and refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_replaying_subscribers_get_groups_of_their_own(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect: Connect
) -> None:
    member = await make_member()
    await rename(client, member.token, "one")
    await rename(client, member.token, "two")
    await settled(server)
    live_only = await subscribed_socket(ws_connect, member.token, UPDATES)
    replay = {"after": gid("Event", 0), **UPDATES}
    first = await subscribed_socket(ws_connect, member.token, replay)
    await server.wait_for_subscribers(2)
    assert [e["payload"]["name"] for e in await events(first, 2)] == ["one", "two"]
    late = await subscribed_socket(ws_connect, member.token, replay)
    await server.wait_for_subscribers(3)
    assert live(server).group_count == 3
    assert [e["payload"]["name"] for e in await events(late, 2)] == ["one", "two"]

    await rename(client, member.token, "three")
    for ws in (live_only, first, late):
        assert (await events(ws, 1))[0]["payload"]["name"] == "three"
        await nothing_more(ws)


async def test_queries_and_mutations_over_the_socket_run_once(
    server: RunningServer, make_member: MakeMember, ws_connect: Connect
) -> None:
    member = await make_member()
    watcher = await subscribed_socket(ws_connect, member.token, UPDATES)
    await server.wait_for_subscribers(1)
    ws = await ws_connect(member.token)
    await ws.acknowledged()
    op = await ws.subscribe("query { me { tokenId } }")
    assert await ws.receive() == {
        "id": op,
        "type": "next",
        "payload": {"data": {"me": {"tokenId": member.token_gid}}},
    }
    assert await ws.receive() == {"id": op, "type": "complete"}
    op = await ws.subscribe(RENAME, {"n": "Over the socket"})
    next_message = await ws.receive()
    assert next_message["type"] == "next"
    assert next_message["payload"]["data"]["renameOrganisation"]["userErrors"] == []
    assert await ws.receive() == {"id": op, "type": "complete"}
    assert (await events(watcher, 1))[0]["payload"]["name"] == "Over the socket"
    assert live(server).group_count == 1


async def test_subscription_limit_per_connection(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(max_subscriptions_per_connection=2)
    member = await make_member()
    ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
    try:
        await ws.acknowledged()
        await ws.subscribe(EVENTS_SUBSCRIPTION)
        await ws.subscribe(EVENTS_SUBSCRIPTION, UPDATES)
        op = await ws.subscribe(EVENTS_SUBSCRIPTION, {"types": ["QUOTE_UPDATED"]})
        refused = await ws.receive()
        assert refused["id"] == op and refused["type"] == "error"
        assert refused["payload"][0]["message"] == "Subscription limit reached"
    finally:
        await ws.close()


async def raw_socket(server: RunningServer, *, protocols: list[str] | None = None) -> Any:
    subprotocols = ["graphql-transport-ws"] if protocols is None else protocols
    return await websockets.connect(server.ws_url, subprotocols=subprotocols)


async def send_json(ws: Any, message: object) -> None:
    await ws.send(json.dumps(message))


def subscribe_message(op_id: str, query: str = EVENTS_SUBSCRIPTION) -> dict[str, Any]:
    return {"id": op_id, "type": "subscribe", "payload": {"query": query}}


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (["not json"], 4400),
        ([b"\x00binary"], 4400),
        ([{"type": "launch"}], 4400),
        ([{"id": "1"}], 4400),
        ([{"type": "connection_init", "payload": "token"}], 4400),
        (["INIT", {"id": "1", "type": "subscribe", "payload": {}}], 4400),
        (["INIT", {"type": "subscribe", "payload": {"query": "{ me { tokenId } }"}}], 4400),
        (["INIT", subscribe_message("1", "subscription { events { id }")], 4400),
        ([subscribe_message("1")], 4401),
        (["INIT", subscribe_message("1"), subscribe_message("1")], 4409),
        (["INIT", "INIT"], 4429),
    ],
    ids=[
        "not-json",
        "binary",
        "unknown-type",
        "no-type",
        "init-payload",
        "no-query",
        "no-id",
        "syntax-error",
        "subscribe-before-ack",
        "duplicate-id",
        "second-init",
    ],
)
async def test_protocol_violations_close_with_their_code(
    server: RunningServer, make_member: MakeMember, messages: list[Any], code: int
) -> None:
    member = await make_member()
    init = {"type": "connection_init", "payload": {"token": member.token}}
    async with await raw_socket(server) as ws:
        for message in messages:
            if message == "INIT":
                await send_json(ws, init)
            elif isinstance(message, bytes | str):
                await ws.send(message)
            else:
                await send_json(ws, message)
        assert (await closed_with(ws)).code == code


async def test_bad_token_closes_with_4403_and_the_reason(server: RunningServer) -> None:
    async with await raw_socket(server) as ws:
        await send_json(ws, {"type": "connection_init", "payload": {"token": "sg_wrong"}})
        close = await closed_with(ws)
    assert close.code == 4403
    assert close.reason == "The token is invalid, expired or revoked."


async def test_ping_is_answered_before_and_after_init(
    server: RunningServer, make_member: MakeMember
) -> None:
    member = await make_member()
    async with await raw_socket(server) as ws:
        await send_json(ws, {"type": "ping"})
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        await send_json(ws, {"type": "connection_init", "payload": {"token": member.token}})
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ack == {
            "type": "connection_ack",
            "payload": {"organisationId": member.gid},
        }
        await send_json(ws, {"type": "ping", "payload": {"at": 1}})
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        await send_json(ws, {"type": "pong"})
        await send_json(ws, {"type": "complete", "id": "unknown"})
        await send_json(ws, {"type": "ping"})
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}


async def test_connection_init_timeout_closes_with_4408(server: RunningServer) -> None:
    [endpoint] = [
        route.app
        for route in server.app.routes
        if isinstance(route, WebSocketRoute) and isinstance(route.app, LiveEndpoint)
    ]
    endpoint.view.connection_init_wait_timeout = timedelta(seconds=0.2)
    async with await raw_socket(server) as ws:
        assert (await closed_with(ws)).code == 4408


async def test_unknown_subprotocol_closes_with_4406(server: RunningServer) -> None:
    async with await raw_socket(server, protocols=["chat"]) as ws:
        assert (await closed_with(ws)).code == 4406


async def test_legacy_graphql_ws_sockets_are_served_next_to_multiplexed_ones(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect: Connect
) -> None:
    member = await make_member()
    modern = await subscribed_socket(ws_connect, member.token, UPDATES)
    async with await raw_socket(server, protocols=["graphql-ws", "graphql-transport-ws"]) as ws:
        assert ws.subprotocol == "graphql-ws"
        await send_json(ws, {"type": "connection_init", "payload": {"token": member.token}})
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        await send_json(
            ws,
            {
                "id": "1",
                "type": "start",
                "payload": {"query": EVENTS_SUBSCRIPTION, "variables": UPDATES},
            },
        )
        await server.wait_for_subscribers(2)
        assert live(server).group_count == 1
        assert live(server).legacy_subscriptions == 1
        await rename(client, member.token, "Both")
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "data":
                break
        assert message["payload"]["data"]["events"]["payload"]["name"] == "Both"
        assert (await events(modern, 1))[0]["payload"]["name"] == "Both"
    await wait_until(lambda: live(server).legacy_subscriptions == 0)
