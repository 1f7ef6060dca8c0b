"""What the live streams tell about withdrawals, as a returns panel and a withdrawals dashboard
read them: every withdraw step of a return on `returnStatusChanged`, with the warehouse's
reason, and the resolution of a failed withdrawal (closed, retried, converted) with its note on
`withdrawalStatusChanged`. Both sides, over real sockets, the warehouse a simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import MakeMember, ServerFactory
from tests.support.distribution import (
    FAST_WAREHOUSE,
    Distribution,
    WarehouseSim,
    eventually,
    order_state,
    paid_order,
    partnered,
    push,
    warehouse_simulator,
)
from tests.support.graphql_client import GraphQLHttp, GraphQLWebSocket
from tests.support.server import RunningServer
from tests.test_order_flow import ok

RETURNS = """subscription { returnStatusChanged {
  afterSalesId number status pushStatus withdrawalStatus withdrawalId error } }"""
WITHDRAWALS = """subscription($o: [ID!]) { withdrawalStatusChanged(orderIds: $o) {
  withdrawalId orderId afterSalesId status reason resolution resolutionNote } }"""
REFUSED = "the warehouse refused: return is being received"

Connect = Callable[..., Awaitable[GraphQLWebSocket]]


@pytest.fixture
async def sim() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """The app with a fast warehouse worker (short timeouts and retry delays)."""
    return await make_server(**FAST_WAREHOUSE)


async def _listening(
    connect: Connect, token: str, document: str, variables: dict[str, Any] | None = None
) -> GraphQLWebSocket:
    ws = await connect(token)
    await ws.acknowledged()
    await ws.subscribe(document, variables)
    return ws


async def _next(ws: GraphQLWebSocket, field: str, count: int) -> list[dict[str, Any]]:
    return [(await ws.next_data())[field] for _ in range(count)]


async def _shipped_order(client: GraphQLHttp, d: Distribution, sim: WarehouseSim) -> str:
    """A paid distribution order the warehouse shipped, its returns pushed automatically."""
    await ok(
        client,
        "mutation { updateDistributionSettings(autoPushReturns: true) { userErrors { code } } }",
        token=d.supplier.token,
    )
    order_id = await paid_order(client, d)
    await push(client, d, order_id)
    await eventually(
        lambda: order_state(client, d.supplier.token, order_id),
        lambda s: s["distribution"]["pushStatus"] == "PUSHED",
    )
    await sim.advance(order_id, "SHIPPED", carrier="DHL", tracking_number="RS1")
    return order_id


async def _return_of(client: GraphQLHttp, d: Distribution, order_id: str) -> dict[str, Any]:
    line = (
        await client.data(
            "query($o: ID!) { order(id: $o) { lines { id } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
    )["order"]["lines"][0]["id"]
    return (
        await ok(
            client,
            """mutation($o: ID!, $l: ID!) { createAfterSalesOrder(input: {orderId: $o,
              items: [{lineId: $l, quantity: 1}], reason: "wrong size"})
              { afterSalesOrder { id number } userErrors { code field message } } }""",
            {"o": order_id, "l": line},
            token=d.distributor.token,
        )
    )["afterSalesOrder"]


async def test_both_sides_see_every_withdraw_step_of_a_return_and_the_refusal_reason(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    sim: WarehouseSim,
    ws_connect: Connect,
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await _shipped_order(client, d, sim)
    stranger = await make_member("BUYER")
    sides = {"supplier": d.supplier, "distributor": d.distributor}
    returns = {n: await _listening(ws_connect, m.token, RETURNS) for n, m in sides.items()}
    changes = {n: await _listening(ws_connect, m.token, WITHDRAWALS) for n, m in sides.items()}
    outsider = await _listening(ws_connect, stranger.token, RETURNS)
    await server.wait_for_subscribers(5)

    made = await _return_of(client, d, order_id)
    read = "query($r: ID!) { afterSalesOrder(id: $r) { pushStatus } }"
    await eventually(
        lambda: client.data(read, {"r": made["id"]}, token=d.supplier.token),
        lambda s: s["afterSalesOrder"]["pushStatus"] == "PUSHED",
    )
    await sim.faults(refuse_cancel=True)
    withdrawal = (
        await ok(
            client,
            "mutation($r: ID!) { withdrawAfterSalesOrder(afterSalesId: $r) "
            "{ withdrawal { id status } userErrors { code message } } }",
            {"r": made["id"]},
            token=d.distributor.token,
        )
    )["withdrawal"]
    assert withdrawal["status"] == "WITHDRAWING"

    for name in sides:
        seen = await _next(returns[name], "returnStatusChanged", 5)
        assert {s["afterSalesId"] for s in seen} == {made["id"]}
        assert {s["number"] for s in seen} == {made["number"]}
        assert [
            (s["status"], s["pushStatus"], s["withdrawalStatus"], s["withdrawalId"], s["error"])
            for s in seen
        ] == [
            ("REQUESTED", "NOT_PUSHED", None, None, None),
            ("REQUESTED", "PUSHING", None, None, None),
            ("AWAITING_STOCK_IN", "PUSHED", None, None, None),
            ("AWAITING_STOCK_IN", "PUSHED", "WITHDRAWING", withdrawal["id"], None),
            ("AWAITING_STOCK_IN", "PUSHED", "WITHDRAW_FAILED", withdrawal["id"], REFUSED),
        ], name
        steps = await _next(changes[name], "withdrawalStatusChanged", 2)
        assert [(s["status"], s["reason"], s["resolution"]) for s in steps] == [
            ("WITHDRAWING", "", None),
            ("WITHDRAW_FAILED", REFUSED, None),
        ], name
        assert {(s["withdrawalId"], s["afterSalesId"], s["orderId"]) for s in steps} == {
            (withdrawal["id"], made["id"], None)
        }
        assert {s["resolutionNote"] for s in steps} == {None}

    # closing the failure by hand: both sides hear it resolved, with the note, on both streams
    closed = await ok(
        client,
        'mutation($w: ID!) { closeWithdrawal(withdrawalId: $w, note: "customer keeps it") '
        "{ withdrawal { resolution resolutionNote } userErrors { code message } } }",
        {"w": withdrawal["id"]},
        token=d.supplier.token,
    )
    assert closed["withdrawal"] == {"resolution": "CLOSED", "resolutionNote": "customer keeps it"}
    for name in sides:
        (resolved,) = await _next(changes[name], "withdrawalStatusChanged", 1)
        assert resolved == {
            "withdrawalId": withdrawal["id"],
            "orderId": None,
            "afterSalesId": made["id"],
            "status": "WITHDRAW_FAILED",
            "reason": REFUSED,
            "resolution": "CLOSED",
            "resolutionNote": "customer keeps it",
        }, name
        (cleared,) = await _next(returns[name], "returnStatusChanged", 1)
        assert (cleared["status"], cleared["withdrawalStatus"], cleared["withdrawalId"]) == (
            "AWAITING_STOCK_IN",
            None,
            withdrawal["id"],
        ), name
        assert cleared["error"] is None
    with pytest.raises(TimeoutError):
        await outsider.next_data(timeout=0.3)

    # a client resuming from the first event reads the same steps back from the outbox
    late = await _listening(
        ws_connect,
        d.distributor.token,
        "subscription($a: ID) { returnStatusChanged(afterEventId: $a) "
        "{ withdrawalStatus withdrawalId error } }",
        {"a": "gid://supplygraph/Event/0"},
    )
    replayed = await _next(late, "returnStatusChanged", 6)
    assert [(r["withdrawalStatus"], r["error"]) for r in replayed[3:]] == [
        ("WITHDRAWING", None),
        ("WITHDRAW_FAILED", REFUSED),
        (None, None),
    ]


async def test_retrying_and_converting_a_failed_withdraw_are_told_as_its_resolution(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    sim: WarehouseSim,
    ws_connect: Connect,
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await paid_order(client, d)
    await push(client, d, order_id)
    await eventually(
        lambda: order_state(client, d.supplier.token, order_id),
        lambda s: s["distribution"]["pushStatus"] == "PUSHED",
    )
    stream = {
        name: await _listening(ws_connect, member.token, WITHDRAWALS, {"o": [order_id]})
        for name, member in (("supplier", d.supplier), ("distributor", d.distributor))
    }
    await server.wait_for_subscribers(2)
    await sim.faults(refuse_cancel=True)
    first = (
        await ok(
            client,
            "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id } userErrors { code } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
    )["withdrawal"]["id"]
    for ws in stream.values():
        assert [s["status"] for s in await _next(ws, "withdrawalStatusChanged", 2)] == [
            "WITHDRAWING",
            "WITHDRAW_FAILED",
        ]

    second = (
        await ok(
            client,
            "mutation($w: ID!) { retryWithdrawal(withdrawalId: $w) { withdrawal { id } userErrors { code message } } }",
            {"w": first},
            token=d.distributor.token,
        )
    )["withdrawal"]["id"]
    for name, ws in stream.items():
        retried, again, failed = await _next(ws, "withdrawalStatusChanged", 3)
        assert (retried["withdrawalId"], retried["status"]) == (first, "WITHDRAW_FAILED"), name
        assert (retried["resolution"], retried["resolutionNote"]) == ("RETRIED", "retried")
        assert (again["withdrawalId"], again["status"], again["resolution"]) == (
            second,
            "WITHDRAWING",
            None,
        )
        assert (failed["withdrawalId"], failed["status"], failed["resolution"]) == (
            second,
            "WITHDRAW_FAILED",
            None,
        )

    converted = (
        await ok(
            client,
            'mutation($w: ID!) { convertWithdrawalToReturn(withdrawalId: $w, reason: "send it back") '
            "{ afterSalesOrder { number } userErrors { code message } } }",
            {"w": second},
            token=d.distributor.token,
        )
    )["afterSalesOrder"]
    for name, ws in stream.items():
        (resolved,) = await _next(ws, "withdrawalStatusChanged", 1)
        assert (resolved["withdrawalId"], resolved["resolution"]) == (
            second,
            "CONVERTED_TO_RETURN",
        ), name
        assert resolved["resolutionNote"] == f"after-sales order {converted['number']}"
