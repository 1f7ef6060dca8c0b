"""Abuse limits: the requested cost of every operation (Shopify's rules), charged to its
token's bucket before it runs or is answered from the cache, a bucket of requests per client
address for callers without a valid token, and buckets shared through Redis by instances.

Buckets here are small with a fast restore rate, or slow enough that nothing refills within a
test; no assertion is about how long anything took."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from graphql import parse, validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, nodes, queries

from bench.orders_page import QUERY as ORDERS_PAGE
from schema.build import create_schema
from service.limits.buckets import MemoryBuckets
from service.limits.cost import requested_cost
from tests.conftest import MakeMember, ServerFactory
from tests.support.graphql_client import GraphQLWebSocket
from tests.support.server import IDLE_SAFE, RunningServer, app_process
from tests.support.services import require_postgres, require_redis

SCHEMA = create_schema()._schema
GRAPHQL_RESPONSE = "application/graphql-response+json"
SLOW = 0.01  # points a second: nothing refills within a test


def cost(document: str, variables: dict[str, Any] | None = None, name: str | None = None) -> int:
    found = requested_cost(SCHEMA, parse(document), name, variables)
    assert found is not None
    return found


def page_of(points: int) -> str:
    """A query costing ``points``: a connection (2) of ``points - 2`` orders (1 each)."""
    return f"{{ orders(first: {points - 2}) {{ edges {{ cursor node {{ id status }} }} }} }}"


# --------------------------------------------------------------------------- costs


def test_a_page_of_orders_costs_each_order_with_what_it_selects() -> None:
    # the dashboard's page: per order, the order (1), lines (a nested list, priced once: 1),
    # each line's sku (1) and product (1), store (1), logistics method (1), latest transition
    # (1); the connection 2; edges, cursors, pageInfo and scalars nothing
    assert cost(ORDERS_PAGE, {"first": 50}) == 2 + 50 * 7 == 352
    assert cost(ORDERS_PAGE, {"first": 10}) == 2 + 10 * 7
    nodes = "{ products(first: 20) { nodes { id skus { id tiers { minQuantity } } } } }"
    assert cost(nodes) == 2 + 20 * 3
    # no `first`: the argument's default (50); for `orders`, which has none, the maximum page
    assert cost("{ users { edges { node { id } } } }") == 2 + 50
    assert cost("{ orders { edges { node { id } } } }") == 2 + 100
    assert cost("{ orders(last: 5) { edges { node { id } } } }") == 2 + 5
    # a page past the maximum is priced at the maximum (the resolver refuses it anyway)
    assert cost("{ users(first: 5000) { edges { node { id } } } }") == 2 + 100


def test_scalars_objects_interfaces_lists_mutations_and_directives() -> None:
    assert cost("{ __typename }") == 0
    assert cost("{ me { organisation { name } } }") == 2
    # an interface: 1 plus the most any of its types' selections costs
    node = '{ node(id: "x") { id ... on Order { store { name } logisticsMethod { name } } } }'
    assert cost(node) == 1 + 2
    # a list sized by the ids asked for
    assert cost('{ nodes(ids: ["a", "b", "c"]) { id } }') == 3
    assert cost("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["a"] * 7}) == 7
    # a mutation field costs 10, plus what its payload selects
    rename = 'mutation { renameOrganisation(input: {name: "x"}) { userErrors { code } } }'
    assert cost(rename) == 10 + 1
    assert cost("subscription { events { id type } }") == 1
    skipped = "query($s: Boolean!) { me @skip(if: $s) { organisation { name } } }"
    assert cost(skipped, {"s": True}) == 0 and cost(skipped, {"s": False}) == 2
    variable = "query($n: Int = 7) { users(first: $n) { edges { node { id } } } }"
    assert cost(variable) == 2 + 7 and cost(variable, {"n": 3}) == 2 + 3
    two = "query A { me { id } } query B { users(first: 4) { edges { node { id } } } }"
    assert cost(two, name="A") == 1 and cost(two, name="B") == 6


def test_fragments_spread_many_times_are_priced_each_time_but_walked_once() -> None:
    levels = 40  # 2**40 spreads of `me`: walked naively, this would not finish
    fragments = "".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(levels)
    )
    document = f"query {{ ...F0 }}\n{fragments}fragment F{levels} on Query {{ me {{ id }} }}"
    assert cost(document) == 2**levels


SCALARS = {
    "ID": st.just(nodes.String("gid://supplygraph/Order/1")),
    "Decimal": st.just(nodes.String("1.5")),
    "DateTime": st.just(nodes.String("2030-01-01T00:00:00+00:00")),
    "JSON": st.just(nodes.String("x")),
}
SDL = create_schema().as_str()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.one_of(queries(SDL, custom_scalars=SCALARS), mutations(SDL, custom_scalars=SCALARS))
)
def test_every_valid_document_has_a_price(document: str) -> None:
    parsed = parse(document)
    assert validate(SCHEMA, parsed) == []
    price = requested_cost(SCHEMA, parsed, None, {})
    assert isinstance(price, int) and price >= 0
    if document.startswith("mutation"):
        assert price >= 10


async def test_memory_buckets_refill_and_forget_idle_ones() -> None:
    now = [0.0]
    buckets = MemoryBuckets(max_buckets=2, clock=lambda: now[0])
    first = await buckets.take("a", 8, capacity=10, rate=2)
    assert first.taken and first.available == 2
    refused = await buckets.take("a", 5, capacity=10, rate=2)
    assert not refused.taken and refused.available == 2 and refused.retry_after == 1.5
    now[0] = 1.5
    assert (await buckets.take("a", 5, capacity=10, rate=2)).taken
    await buckets.take("b", 1, capacity=10, rate=2)
    await buckets.take("c", 1, capacity=10, rate=2)
    assert len(buckets) == 2  # "a", least recently used, was forgotten
    now[0] = 100.0  # every bucket has refilled: none is kept
    await buckets.take("d", 0, capacity=10, rate=2)
    assert len(buckets) == 0


# --------------------------------------------------------------------------- HTTP


async def post(
    server: RunningServer | str,
    query: str,
    token: str | None = None,
    *,
    accept: str | None = None,
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if accept:
        headers["accept"] = accept
    url = server if isinstance(server, str) else server.url
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=IDLE_SAFE) as http:
        return await http.post("/graphql", json={"query": query}, headers=headers)


async def drain(server: RunningServer, query: str, token: str) -> httpx.Response:
    """Send ``query`` until it is throttled; the 429."""
    for _ in range(50):
        answer = await post(server, query, token)
        if answer.status_code == 429:
            return answer
        assert answer.status_code == 200 and "errors" not in answer.json(), answer.text
    raise AssertionError(f"never throttled: {answer.json()}")


def assert_throttled(answer: httpx.Response) -> float:
    """A THROTTLED refusal; its ``retryAfter``."""
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    body = answer.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "THROTTLED"
    retry_after = error["extensions"]["retryAfter"]
    assert retry_after > 0 and int(answer.headers["retry-after"]) >= retry_after
    return float(retry_after)


@pytest.fixture(params=["memory", "redis"])
def buckets_in(request: pytest.FixtureRequest) -> str:
    """Where a server keeps its buckets: ``REDIS_URL`` (empty: in memory)."""
    if request.param == "memory":
        return ""
    return require_redis("redis: rate limits")


async def test_every_answer_reports_its_cost_and_a_drained_bucket_throttles_until_it_refills(
    make_server: ServerFactory, make_member: MakeMember, buckets_in: str
) -> None:
    server = await make_server(
        throttle_maximum_available=100, throttle_restore_rate=50.0, redis_url=buckets_in
    )
    member = await make_member()
    first = await post(server, page_of(60), member.token)
    assert first.status_code == 200
    report = first.json()["extensions"]["cost"]
    assert report["requestedQueryCost"] == 60
    status = report["throttleStatus"]
    assert status["maximumAvailable"] == 100 and status["restoreRate"] == 50
    assert 40 <= status["currentlyAvailable"] < 100

    throttled = await drain(server, page_of(60), member.token)
    retry_after = assert_throttled(throttled)
    refused = throttled.json()["extensions"]["cost"]
    assert refused["requestedQueryCost"] == 60
    assert refused["throttleStatus"]["currentlyAvailable"] < 60

    await asyncio.sleep(retry_after)  # what it said: the bucket holds the cost again
    again = await post(server, page_of(60), member.token)
    assert again.status_code == 200 and "errors" not in again.json(), again.text
    # the same refusal for a client of the GraphQL response media type
    ahead = await post(server, page_of(100), member.token, accept=GRAPHQL_RESPONSE)
    assert_throttled(ahead)
    # another token has a bucket of its own
    other = await make_member()
    assert (await post(server, page_of(60), other.token)).status_code == 200


async def test_a_document_costing_more_than_a_bucket_holds_is_refused_unrun(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(throttle_maximum_available=100, throttle_restore_rate=SLOW)
    member = await make_member()
    for accept, status in ((None, 200), (GRAPHQL_RESPONSE, 400)):
        answer = await post(server, page_of(101), member.token, accept=accept)
        assert answer.status_code == status, answer.text
        body = answer.json()
        assert "data" not in body
        [error] = body["errors"]
        assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
        assert "101" in error["message"] and "100" in error["message"]
        assert body["extensions"]["cost"]["requestedQueryCost"] == 101
    # a caller without a token has no bucket: its cost is reported, and checked against the most
    anonymous = (await post(server, "{ __typename }")).json()
    assert anonymous["extensions"] == {"cost": {"requestedQueryCost": 0}}
    refused = (await post(server, page_of(101))).json()
    assert refused["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    # nothing was taken from the bucket
    answer = await post(server, page_of(100), member.token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0


async def test_batched_operations_are_charged_one_by_one(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(throttle_maximum_available=100, throttle_restore_rate=SLOW)
    member = await make_member()
    batch = [{"query": page_of(60)}, {"query": page_of(60)}]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = await http.post(
            "/graphql", json=batch, headers={"authorization": f"Bearer {member.token}"}
        )
    assert answer.status_code == 200  # the first ran: retrying the batch would run it again
    assert int(answer.headers["retry-after"]) >= 1
    ran, refused = answer.json()
    assert "errors" not in ran and ran["extensions"]["cost"]["requestedQueryCost"] == 60
    assert refused["errors"][0]["extensions"]["code"] == "THROTTLED"


async def test_an_answer_from_the_cache_costs_what_its_document_costs(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(
        throttle_maximum_available=100, throttle_restore_rate=SLOW, response_cache=True
    )
    member = await make_member()
    miss = await post(server, page_of(30), member.token)
    hit = await post(server, page_of(30), member.token)
    assert miss.headers["x-cache"] == "miss" and hit.headers["x-cache"] == "hit"
    assert hit.json()["data"] == miss.json()["data"]
    assert hit.json()["extensions"]["cost"]["requestedQueryCost"] == 30
    available = [
        a.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] for a in (miss, hit)
    ]
    assert available == [70, 40]
    assert (await post(server, page_of(30), member.token)).headers["x-cache"] == "hit"
    refused = await post(server, page_of(30), member.token)  # 10 left
    assert_throttled(refused)
    assert "x-cache" not in refused.headers


# --------------------------------------------------------------------------- addresses


async def test_requests_without_a_token_are_limited_per_address(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(anonymous_rate=SLOW, anonymous_burst=3)
    member = await make_member()
    for _ in range(3):
        answer = await post(server, "{ __typename }")
        assert answer.status_code == 200 and answer.json()["data"] == {"__typename": "Query"}
    refused = await post(server, "{ __typename }")
    assert_throttled(refused)
    # a caller with a valid token, from the same address, is not held back
    known = await post(server, "{ me { organisation { name } } }", member.token)
    assert known.status_code == 200 and "errors" not in known.json()
    # nor charged query cost: that limit is off on this server
    assert "extensions" not in known.json()


async def test_requests_with_a_bad_token_are_limited_per_address(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(anonymous_rate=SLOW, anonymous_burst=2)
    member = await make_member()
    revoked = await make_member()
    revoke = "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { userErrors { code } } }"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        done = await http.post(
            "/graphql",
            json={"query": revoke, "variables": {"id": revoked.token_gid}},
            headers={"authorization": f"Bearer {revoked.token}"},
        )
    assert done.json()["data"]["revokeApiToken"]["userErrors"] == []
    for token in ("not-a-token", revoked.token):
        answer = await post(server, "{ me { tokenId } }", token)
        assert answer.status_code == 200
        assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert_throttled(await post(server, "{ me { tokenId } }", "another-guess"))
    assert_throttled(await post(server, "{ me { tokenId } }"))  # the same address, no token
    # a WebSocket whose token fails is told so too, and closed
    ws = await GraphQLWebSocket.connect(server.ws_url, token="yet-another-guess")
    try:
        with pytest.raises(Exception) as closed:
            await ws.receive()
        assert "4403" in str(closed.value) and "retry in" in str(closed.value)
    finally:
        await ws.close()
    assert (await post(server, "{ me { tokenId } }", member.token)).status_code == 200


# --------------------------------------------------------------------------- WebSocket


async def test_a_subscription_is_charged_once_when_it_starts_and_refused_when_throttled(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(throttle_maximum_available=100, throttle_restore_rate=SLOW)
    member = await make_member()
    ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
    try:
        await ws.acknowledged()
        await ws.subscribe("subscription { events { id } }")  # 1 point
        await server.wait_for_subscribers(1)
        answer = await post(server, page_of(99), member.token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0
        op = await ws.subscribe("subscription { events { id } }")
        refused = await ws.receive()
        assert refused["id"] == op and refused["type"] == "error", refused
        [error] = refused["payload"]
        assert error["extensions"]["code"] == "THROTTLED" and error["extensions"]["retryAfter"] > 0
        # a query over the socket is charged as over HTTP
        op = await ws.subscribe("{ me { organisation { name } } }")
        refused = await ws.receive()
        assert refused["type"] == "error" and refused["id"] == op, refused
        assert refused["payload"][0]["extensions"]["code"] == "THROTTLED"
        assert server.app.state.live.open_subscriptions == 1  # the refused one never started
    finally:
        await ws.close()


# --------------------------------------------------------------------------- Redis


async def test_two_instances_share_one_bucket_through_redis(
    make_server: ServerFactory, make_member: MakeMember, database_url: str
) -> None:
    redis_url = require_redis("redis: shared rate limits")
    require_postgres("redis: shared rate limits")
    limits = {"maximum": 100, "rate": SLOW, "address_rate": SLOW, "burst": 2}
    a = await make_server(
        redis_url=redis_url,
        throttle_maximum_available=limits["maximum"],
        throttle_restore_rate=limits["rate"],
        anonymous_rate=limits["address_rate"],
        anonymous_burst=limits["burst"],
    )
    member = await make_member()
    environment = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "THROTTLE_MAXIMUM_AVAILABLE": str(limits["maximum"]),
        "THROTTLE_RESTORE_RATE": str(limits["rate"]),
        "ANONYMOUS_RATE": str(limits["address_rate"]),
        "ANONYMOUS_BURST": str(limits["burst"]),
    }
    async with app_process(environment) as b:
        first = await post(a, page_of(70), member.token)
        assert first.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 30
        assert_throttled(await post(b, page_of(70), member.token))
        second = await post(b, page_of(30), member.token)
        assert second.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0
        assert_throttled(await post(a, page_of(3), member.token))
        # the address limit too
        assert (await post(a, "{ __typename }")).status_code == 200
        assert (await post(b, "{ __typename }")).status_code == 200
        assert_throttled(await post(a, "{ __typename }"))
