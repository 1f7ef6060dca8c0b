"""The response cache: repeated queries answered from memory, invalidated by the events of the
organisations they belong to, never shared between callers who may see different things."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from domain.access import Viewer
from domain.events import EventType, PublishedEvent
from domain.organisations import commands as organisations
from domain.organisations.models import OrganisationKind, Role
from service.response_cache import (
    TOKEN_TTL,
    Operation,
    OperationIndex,
    ResponseCache,
    analyse,
    request_key,
)
from tests.conftest import METRICS_HEADERS, MakeMember, Member, ServerFactory
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.support.services import require_postgres, require_redis
from tests.test_metrics import sample
from tests.test_order_flow import ok, supplier_catalogue
from tests.test_redis_instances import second_instance

PAGE = """query Page($first: Int!) { orders(first: $first) { edges { node { id status } } } }"""
ORG_NAME = "query Org { me { organisation { id name } } }"
RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
MANUAL_ORDER = """mutation($k: ID!, $m: ID!) { createManualOrder(input: {
  lines: [{skuId: $k, quantity: 1}], logisticsMethodId: $m,
  shippingAddress: {name: "Shop", address1: "1 Road", city: "Paris", countryCode: "FR"}})
  { order { id status } userErrors { code field message } } }"""
CANCEL = """mutation($o: ID!) { cancelOrders(orderIds: [$o]) {
  orders { id status } userErrors { code field message } } }"""


def hold_publisher(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Keep the server's outbox publisher from numbering and handing events to the hub until
    the returned event is set: a read that sees a change meanwhile owes it to the cache."""
    publisher = server.app.state.publisher
    release = asyncio.Event()
    flush = publisher.flush

    async def held() -> int:
        await release.wait()
        return await flush()

    monkeypatch.setattr(publisher, "flush", held)
    return release


async def send(
    client: GraphQLHttp,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str,
    operation_name: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation_name is not None:
        body["operationName"] = operation_name
    response = await client.http.post(
        "/graphql", json=body, headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    return response


async def order_of(client: GraphQLHttp, server: RunningServer, buyer: Member, supplier: Member):  # type: ignore[no-untyped-def]
    catalogue = await supplier_catalogue(client, supplier)
    made = await ok(
        client,
        MANUAL_ORDER,
        {"k": catalogue["skus"]["TEE-R-M"], "m": catalogue["method"]},
        token=buyer.token,
    )
    return made["order"]["id"]


async def test_repeated_query_is_answered_from_the_cache(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    order_id = await order_of(client, server, buyer, supplier)

    first = await send(client, PAGE, {"first": 10}, token=buyer.token)
    second = await send(client, PAGE, {"first": 10}, token=buyer.token)
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert second.content == first.content
    assert first.json()["data"]["orders"]["edges"] == [
        {"node": {"id": order_id, "status": "AWAITING_PAYMENT"}}
    ]
    assert second.headers["content-type"] == "application/json"
    assert second.headers["cache-control"] == "no-store"
    assert second.headers["x-request-id"] != first.headers["x-request-id"]

    metrics = (await client.http.get("/metrics", headers=METRICS_HEADERS)).text
    assert sample(metrics, "supplygraph_response_cache_lookups_total", result="hit") == 1
    assert sample(metrics, "supplygraph_response_cache_lookups_total", result="miss") == 1
    # a hit still counts as an operation answered
    assert (
        sample(
            metrics,
            "supplygraph_graphql_operations_total",
            operation="Page",
            type="query",
            outcome="ok",
        )
        == 2
    )


async def test_a_change_invalidates_and_the_next_read_shows_it(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    order_id = await order_of(client, server, buyer, supplier)
    for member in (buyer, supplier):
        await send(client, PAGE, {"first": 10}, token=member.token)
        assert (await send(client, PAGE, {"first": 10}, token=member.token)).headers[
            "x-cache"
        ] == "hit"
    await send(client, ORG_NAME, token=buyer.token)

    # the buyer mutates, then both organisations of the event read at once: neither is
    # answered from the cache, though the publisher has not handed the event to the hub
    release = hold_publisher(server, monkeypatch)
    cancelled = await ok(client, CANCEL, {"o": order_id}, token=buyer.token)
    assert cancelled["orders"] == [{"id": order_id, "status": "CANCELLED"}]
    for member in (buyer, supplier):
        page = await send(client, PAGE, {"first": 10}, token=member.token)
        assert page.headers["x-cache"] == "miss"
        assert page.json()["data"]["orders"]["edges"][0]["node"]["status"] == "CANCELLED"
        again = await send(client, PAGE, {"first": 10}, token=member.token)
        assert again.headers["x-cache"] == "hit" and again.content == page.content

    await ok(client, RENAME, {"n": "Renamed"}, token=buyer.token)
    renamed = await send(client, ORG_NAME, token=buyer.token)
    assert renamed.headers["x-cache"] == "miss"
    assert renamed.json()["data"]["me"]["organisation"]["name"] == "Renamed"
    release.set()


async def test_a_change_made_outside_any_request_is_seen_by_the_next_read(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a webhook or background work commits: no mutation of the reader's went through the
    view, and the publisher has not reached the event yet."""
    member = await make_member()
    await send(client, ORG_NAME, token=member.token)
    assert (await send(client, ORG_NAME, token=member.token)).headers["x-cache"] == "hit"
    release = hold_publisher(server, monkeypatch)
    viewer = Viewer(
        user_id=member.user_id,
        organisation_id=member.organisation_id,
        organisation_kind=OrganisationKind.BUYER,
        role=Role.OWNER,
        token_id=member.token_id,
    )
    await organisations.rename_organisation(viewer=viewer, name="Renamed elsewhere")
    response = await send(client, ORG_NAME, token=member.token)
    assert response.headers["x-cache"] == "miss"
    assert response.json()["data"]["me"]["organisation"]["name"] == "Renamed elsewhere"
    release.set()


async def test_one_callers_page_is_never_served_to_another(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    alice, bob = await make_member(), await make_member()
    colleague = await make_member(role="OWNER", organisation_id=alice.organisation_id)
    for member in (alice, bob):
        await send(client, ORG_NAME, token=member.token)
    for member in (alice, bob):
        response = await send(client, ORG_NAME, token=member.token)
        assert response.headers["x-cache"] == "hit"
        organisation = response.json()["data"]["me"]["organisation"]
        assert organisation == {"id": member.gid, "name": f"Org {member.email}"}

    # the same organisation and role, another user: answers that depend on the user differ
    me = "{ me { user { email } } }"
    assert (await send(client, me, token=alice.token)).json()["data"]["me"]["user"][
        "email"
    ] == alice.email
    theirs = await send(client, me, token=colleague.token)
    assert theirs.headers["x-cache"] == "miss"
    assert theirs.json()["data"]["me"]["user"]["email"] == colleague.email

    # and a staff member of the same organisation sees only their own tokens
    staff = await make_member(role="STAFF", organisation_id=alice.organisation_id)
    tokens = "{ apiTokens { nodes { id } } }"
    await send(client, tokens, token=alice.token)
    listed = (await send(client, tokens, token=staff.token)).json()["data"]["apiTokens"]["nodes"]
    assert listed == [{"id": staff.token_gid}]


async def test_me_token_id_is_the_requests_own_token(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    member = await make_member()
    created = await ok(
        client,
        'mutation { createApiToken(input: {name: "second"}) { secret token { id } userErrors { code } } }',
        token=member.token,
    )
    query = "{ me { user { email } tokenId } }"
    for token, token_id in ((member.token, member.token_gid), (created["secret"], None)):
        token_id = token_id or created["token"]["id"]
        for _ in range(2):
            assert (await send(client, query, token=token)).json()["data"]["me"][
                "tokenId"
            ] == token_id


async def test_variables_documents_and_operations_are_separate_entries(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    await order_of(client, server, buyer, supplier)

    one = await send(client, PAGE, {"first": 1}, token=buyer.token)
    two = await send(client, PAGE, {"first": 2}, token=buyer.token)
    assert (one.headers["x-cache"], two.headers["x-cache"]) == ("miss", "miss")
    spaced = PAGE.replace("{ orders", "{  orders")
    assert (await send(client, spaced, {"first": 1}, token=buyer.token)).headers[
        "x-cache"
    ] == "miss"

    # variables are compared as JSON values, not as text; GET and POST share entries
    variables = {"first": 1, "after": None}
    assert (await send(client, PAGE, variables, token=buyer.token)).headers["x-cache"] == "miss"
    reordered = {"after": None, "first": 1}
    assert (await send(client, PAGE, reordered, token=buyer.token)).headers["x-cache"] == "hit"
    got = await client.http.get(
        "/graphql",
        params={"query": PAGE, "variables": json.dumps({"first": 2})},
        headers={"authorization": f"Bearer {buyer.token}"},
    )
    assert got.headers["x-cache"] == "hit" and got.content == two.content

    # two operations in one document: each name is its own entry
    both = f"{PAGE}\n{ORG_NAME}"
    page = await send(client, both, {"first": 1}, token=buyer.token, operation_name="Page")
    org = await send(client, both, {"first": 1}, token=buyer.token, operation_name="Org")
    assert (page.headers["x-cache"], org.headers["x-cache"]) == ("miss", "miss")
    assert "orders" in page.json()["data"] and "me" in org.json()["data"]


async def test_mutations_and_errors_are_never_cached(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = await make_member()
    for _ in range(2):
        response = await send(client, RENAME, {"n": "same"}, token=member.token)
        assert "x-cache" not in response.headers
        assert response.json()["data"]["renameOrganisation"]["userErrors"] == []

    for _ in range(2):
        response = await send(client, "{ nosuchfield }", token=member.token)
        assert response.headers["x-cache"] == "miss"
        assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

    from domain.organisations import queries as organisation_queries

    real = organisation_queries.list_users

    async def broken(**kwargs: object) -> None:
        raise RuntimeError("database went away")

    users = "{ users { nodes { email } } }"
    monkeypatch.setattr(organisation_queries, "list_users", broken)
    failed = await send(client, users, token=member.token)
    assert failed.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    monkeypatch.setattr(organisation_queries, "list_users", real)
    fine = await send(client, users, token=member.token)
    assert fine.headers["x-cache"] == "miss"
    assert fine.json()["data"]["users"]["nodes"] == [{"email": member.email}]

    anonymous = await client.http.post("/graphql", json={"query": users})
    assert "x-cache" not in anonymous.headers
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_revoked_token_is_refused_even_when_its_page_is_cached(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = await make_member()
    created = await ok(
        client,
        'mutation { createApiToken(input: {name: "dash"}) { secret token { id } userErrors { code } } }',
        token=owner.token,
    )
    secret, token_id = created["secret"], created["token"]["id"]
    await send(client, ORG_NAME, token=secret)
    assert (await send(client, ORG_NAME, token=secret)).headers["x-cache"] == "hit"

    release = hold_publisher(server, monkeypatch)  # the hub has not seen the revocation
    await ok(
        client,
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { userErrors { code } } }",
        {"id": token_id},
        token=owner.token,
    )
    refused = await send(client, ORG_NAME, token=secret)
    assert "x-cache" not in refused.headers
    [error] = refused.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED" and "revoked" in error["message"]
    assert (await send(client, ORG_NAME, token=owner.token)).json()["data"]["me"]
    release.set()


async def test_the_cache_can_be_switched_off(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(response_cache=False)
    client = GraphQLHttp(server.url)
    try:
        member = await make_member()
        for _ in range(2):
            response = await send(client, ORG_NAME, token=member.token)
            assert "x-cache" not in response.headers
            assert response.json()["data"]["me"]["organisation"]["name"] == f"Org {member.email}"
    finally:
        await client.close()


async def test_a_change_on_another_instance_invalidates_through_redis(
    make_server: ServerFactory, make_member: MakeMember, database_url: str
) -> None:
    redis_url = require_redis("redis: response cache across instances")
    require_postgres("redis: response cache across instances")
    a: RunningServer = await make_server(redis_url=redis_url, event_resync_interval=300.0)
    async with second_instance(database_url, redis_url) as b_url:
        on_a, on_b = GraphQLHttp(a.url), GraphQLHttp(b_url)
        try:
            member = await make_member()
            second = await ok(
                on_b,
                'mutation { createApiToken(input: {name: "a"}) { secret token { id } userErrors { code } } }',
                token=member.token,
            )
            await _until(lambda r: r.headers["x-cache"] == "hit", on_a, ORG_NAME, second["secret"])

            await ok(on_b, RENAME, {"n": "changed on B"}, token=member.token)
            seen = await _until(
                lambda r: r.json()["data"]["me"]["organisation"]["name"] == "changed on B",
                on_a,
                ORG_NAME,
                second["secret"],
            )
            assert seen.headers["x-cache"] == "miss"

            # a token revoked through B stops working on A, where it was just authenticated, when
            # the revocation arrives (well before TokenCache would look it up again)
            await ok(
                on_b,
                "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { userErrors { code } } }",
                {"id": second["token"]["id"]},
                token=member.token,
            )
            await _until(
                lambda r: "errors" in r.json(), on_a, ORG_NAME, second["secret"], TOKEN_TTL / 2
            )
        finally:
            await on_a.close()
            await on_b.close()


async def _until(
    done: Any, client: GraphQLHttp, query: str, token: str, timeout: float = 10.0
) -> httpx.Response:
    """Send ``query`` until ``done(response)``: the broadcast's latency is the window."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await send(client, query, token=token)
        if done(response):
            return response
        assert asyncio.get_running_loop().time() < deadline, response.text
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- the cache itself

VIEWER = Viewer(
    user_id=1, organisation_id=10, organisation_kind=OrganisationKind.BUYER, role=Role.OWNER,
    token_id=100,
)  # fmt: skip


def _event(*audience: int, type: EventType = EventType.ORDER_CREATED) -> PublishedEvent:
    return PublishedEvent(
        seq=1,
        type=type.value,
        subject_type="Order",
        subject_id="5",
        payload={},
        audience=frozenset(audience),
        actor_user_id=None,
        created_at=datetime.now(UTC),
    )


def _key(viewer: Viewer = VIEWER, document: str = "{ me { user { id } } }") -> Any:
    operation = analyse(document, None, max_tokens=100)
    assert operation is not None
    return request_key(viewer, operation, document, None, None)


def test_operations_are_recognised() -> None:
    assert analyse("{ me { tokenId } }", None, max_tokens=100) == Operation(
        kind=analyse("query { a }", None, max_tokens=100).kind,  # type: ignore[union-attr]
        name=None,
        token_scoped=True,
    )
    both = "query A { a } mutation B { b }"
    assert analyse(both, "B", max_tokens=100).kind.value == "mutation"  # type: ignore[union-attr]
    assert analyse(both, None, max_tokens=100) is None  # ambiguous
    assert analyse("{ broken", None, max_tokens=100) is None
    assert analyse("{ a b c d e f }", None, max_tokens=4) is None  # too many tokens
    fragment = "query Q { ...F } fragment F on Query { me { tokenId } }"
    assert analyse(fragment, None, max_tokens=100).token_scoped  # type: ignore[union-attr]
    index = OperationIndex(max_tokens=100, size=1)
    assert index.get("{ a }", None) is index.get("{ a }", None)
    index.get("{ b }", None)
    assert index.get("{ a }", None) == analyse("{ a }", None, max_tokens=100)


def test_keys_separate_callers_and_requests() -> None:
    other_user = replace(VIEWER, user_id=2)
    other_role = replace(VIEWER, role=Role.VIEWER)
    other_token = replace(VIEWER, token_id=101)
    keys = {_key(), _key(other_user), _key(other_role)}
    assert len(keys) == 3
    assert _key(other_token) == _key()  # the token matters only where a field depends on it
    with_token = "{ me { tokenId } }"
    assert _key(other_token, with_token) != _key(VIEWER, with_token)


def test_entries_follow_their_organisations_events() -> None:
    cache = ResponseCache(max_entries=10, max_bytes=100_000, ttl=60)
    key = _key()
    assert cache.put(key, cache.ticket(), b"page") and cache.get(key) == b"page"
    cache.on_event(_event(11))  # another organisation's event
    assert cache.get(key) == b"page"
    cache.on_event(_event(11, 10))
    assert cache.get(key) is None

    # a result computed across a change is not stored
    ticket = cache.ticket()
    cache.on_event(_event(10))
    assert not cache.put(key, ticket, b"old")
    assert cache.put(key, cache.ticket(), b"new") and cache.get(key) == b"new"

    cache.on_event(None)  # the broadcast may have dropped events: everything goes
    assert cache.get(key) is None and len(cache) == 0 and cache.bytes == 0


def test_entries_are_bounded_and_expire() -> None:
    now = [0.0]
    cache = ResponseCache(max_entries=2, max_bytes=4_000, ttl=30, clock=lambda: now[0])
    keys = [_key(document="{ me { user { id } } }" + " " * i) for i in range(3)]
    for key in keys:
        assert cache.put(key, cache.ticket(), b"x")
    assert len(cache) == 2 and cache.get(keys[0]) is None  # least recently used went first
    assert not cache.put(keys[0], cache.ticket(), b"x" * 600)  # over 1/8 of the bytes
    cache.put(keys[0], cache.ticket(), b"x" * 400)
    assert cache.bytes <= cache.max_bytes
    now[0] = 30.0
    assert cache.get(keys[0]) is None  # expired


async def test_tokens_are_forgotten_on_revocation(
    server: RunningServer, make_member: MakeMember
) -> None:
    cache = ResponseCache(max_entries=10, max_bytes=100_000, ttl=60)
    member = await make_member()
    viewer = await cache.tokens.authenticate(member.token)
    assert viewer is not None and len(cache.tokens) == 1
    cache.on_event(_event(member.organisation_id, type=EventType.API_TOKEN_REVOKED))
    assert len(cache.tokens) == 1  # another token (subject 5)
    revoked = _event(member.organisation_id, type=EventType.API_TOKEN_REVOKED)
    cache.on_event(replace(revoked, subject_id=str(member.token_id)))
    assert len(cache.tokens) == 0
    assert await cache.tokens.authenticate(member.token) == viewer
    cache.after_mutation(member.organisation_id)
    assert len(cache.tokens) == 0
    assert await cache.tokens.authenticate("sg_unknown") is None
