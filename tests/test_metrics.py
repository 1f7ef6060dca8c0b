"""Prometheus metrics at /metrics, and the request id carried into background work."""

from __future__ import annotations

import re

from domain.distribution.models import WarehouseTask
from schema.global_ids import key_of
from tests.conftest import METRICS_HEADERS, MakeMember, ServerFactory
from tests.support.distribution import paid_order, partnered
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(r"^([a-z_]+)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


async def test_operations_routes_and_live_figures_are_exported(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect
) -> None:
    member = await make_member()
    for _ in range(3):
        await client.data("query Me { me { user { email } } }", token=member.token)
    await client.post("query Broken { nope }", token=member.token)
    ws = await ws_connect(member.token)
    await ws.acknowledged()
    await ws.subscribe("subscription Live { events { id } }")
    await server.wait_for_subscribers(1)

    text = (await client.http.get("/metrics", headers=METRICS_HEADERS)).text
    ok = sample(
        text, "supplygraph_graphql_operations_total", operation="Me", type="query", outcome="ok"
    )
    assert ok == 3
    assert sample(text, "supplygraph_graphql_operation_seconds_count", operation="Me") == 3
    assert sample(text, "supplygraph_http_requests_total", route="/graphql", status="200") >= 4
    assert sample(text, "supplygraph_active_subscriptions") == 1
    assert sample(text, "supplygraph_outbox_unpublished_events") is not None
    assert sample(text, "supplygraph_warehouse_tasks_pending") == 0
    for loop in ("outbox publisher", "store inbox", "warehouse worker", "sla worker"):
        assert sample(text, "supplygraph_background_rounds_total", loop=loop) >= 1, loop


async def test_metrics_token_is_required_when_set(make_server: ServerFactory) -> None:
    server = await make_server(metrics_token="scrape-me")
    client = GraphQLHttp(server.url)
    try:
        assert (await client.http.get("/metrics")).status_code == 401
        wrong = await client.http.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.http.get("/metrics", headers={"authorization": "Bearer scrape-me"})
        assert right.status_code == 200 and "supplygraph_active_subscriptions" in right.text
    finally:
        await client.close()


async def test_background_work_carries_the_request_id(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    d = await partnered(client, make_member, None)
    order_id = await paid_order(client, d)
    response = await client.http.post(
        "/graphql",
        json={
            "query": "mutation($o: ID!) { withdrawOrder(orderId: $o) { userErrors { code } } }",
            "variables": {"o": order_id},
        },
        headers={"authorization": f"Bearer {d.distributor.token}", "x-request-id": "req-abc-123"},
    )
    assert response.json()["data"]["withdrawOrder"]["userErrors"] == []
    [task] = await WarehouseTask.filter(order_id=key_of(order_id))
    assert task.request_id == "req-abc-123"


async def test_metrics_are_not_served_without_a_token(make_server: ServerFactory) -> None:
    """They name every tenant's operations and count them: no token set, no /metrics."""
    server = await make_server(metrics_token="")
    client = GraphQLHttp(server.url)
    try:
        answer = await client.http.get("/metrics")
        assert answer.status_code == 404
        assert "supplygraph_" not in answer.text
    finally:
        await client.close()
