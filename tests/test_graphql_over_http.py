"""GraphQL over HTTP as clients meet it: the media type they accept, the status it implies,
errors always in JSON, batches as Apollo's ``BatchHttpLink`` sends them, and the
``graphql-http`` server audit, every MUST and SHOULD."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import MakeMember, ServerFactory
from tests.support.graphql_client import GraphQLHttp
from tests.support.node import node_tools
from tests.support.server import RunningServer

GRAPHQL_RESPONSE = "application/graphql-response+json"
ME = "{ me { tokenId organisation { name } } }"
RENAME = (
    "mutation($n: String!) { renameOrganisation(input: {name: $n}) "
    "{ organisation { name } userErrors { code } } }"
)


async def post(
    client: GraphQLHttp,
    body: Any,
    *,
    token: str | None = None,
    accept: str | None = GRAPHQL_RESPONSE,
) -> httpx.Response:
    headers = {}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if accept is not None:
        headers["accept"] = accept
    return await client.http.post("/graphql", json=body, headers=headers)


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_the_media_type_follows_accept(client: GraphQLHttp, make_member: MakeMember) -> None:
    member = await make_member()
    for accept, expected in (
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE};q=0.5", "application/json"),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        (None, "application/json"),
    ):
        response = await post(client, {"query": ME}, token=member.token, accept=accept)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(expected), (accept, response.headers)
        assert response.json()["data"]["me"]["tokenId"] == member.token_gid
    # the response cache answers in the same media type
    again = await post(client, {"query": ME}, token=member.token)
    assert again.headers.get("x-cache") == "hit"
    assert again.headers["content-type"].startswith(GRAPHQL_RESPONSE)


async def test_request_errors_are_400_without_data_under_graphql_response_json(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    member = await make_member()
    for query, variables, code in (
        ("{ me { ", None, "GRAPHQL_PARSE_FAILED"),
        ("{ nothingHere }", None, "GRAPHQL_VALIDATION_FAILED"),
        ("query($n: Int!) { events(first: $n) { edges { node { id } } } }", {"n": "x"}, None),
    ):
        body = {"query": query, "variables": variables}
        strict = await post(client, body, token=member.token)
        assert strict.status_code == 400, strict.text
        assert strict.headers["content-type"].startswith(GRAPHQL_RESPONSE)
        assert "data" not in strict.json() and strict.json()["errors"]
        if code:
            assert codes(strict.json()) == [code]
        legacy = await post(client, body, token=member.token, accept="application/json")
        assert legacy.status_code == 200 and "data" not in legacy.json()
        assert legacy.json()["errors"] == strict.json()["errors"]


async def test_field_errors_are_200_with_data(client: GraphQLHttp) -> None:
    response = await post(client, {"query": "{ me { tokenId } }"})  # no token
    assert response.status_code == 200
    body = response.json()
    assert "data" in body and codes(body) == ["UNAUTHENTICATED"]


async def test_every_refusal_is_a_graphql_error_in_json(client: GraphQLHttp) -> None:
    for response, status in (
        (await client.http.put("/graphql", json={"query": ME}), 405),
        (await client.http.post("/graphql", content=b"{ me }", headers={}), 400),
        (await post(client, [{"query": ME}] * 11), 400),
        (await post(client, []), 400),
        (
            await client.http.post(
                "/graphql", content=b"not json", headers={"content-type": "application/json"}
            ),
            400,
        ),
    ):
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/")
        body = response.json()
        assert "data" not in body and body["errors"][0]["message"]
        assert body["errors"][0]["extensions"]["code"]
    refused = await client.http.put("/graphql", json={"query": ME})
    assert refused.headers["allow"] == "GET, POST"
    assert codes(refused.json()) == ["METHOD_NOT_ALLOWED"]


async def test_a_batch_runs_in_order_each_operation_as_if_alone(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    member = await make_member()
    assert (await post(client, {"query": ME}, token=member.token)).status_code == 200
    cached = await post(client, {"query": ME}, token=member.token)
    assert cached.headers.get("x-cache") == "hit"

    flood = "{ " + " ".join(f"a{i}: me {{ tokenId }}" for i in range(40)) + " }"
    response = await post(
        client,
        [
            {"query": RENAME, "variables": {"n": "Batched"}},
            {"query": ME},
            {"query": flood},
            {"query": None},
            {"query": ME},
        ],
        token=member.token,
    )
    assert response.status_code == 200, response.text
    renamed, me, flooded, empty, last = response.json()
    assert renamed["data"]["renameOrganisation"]["organisation"]["name"] == "Batched"
    # after the mutation: no loader or cache of the batch's own serves the old name
    assert me["data"]["me"]["organisation"]["name"] == "Batched"
    # limited like a single operation, refused alone
    assert codes(flooded) == ["QUERY_TOO_COMPLEX"] and "data" not in flooded
    assert codes(empty) == ["BAD_REQUEST"]
    assert last["data"]["me"]["organisation"]["name"] == "Batched"
    # the batched mutation invalidated the response cache, as a single one does
    after = await post(client, {"query": ME}, token=member.token)
    assert after.json()["data"]["me"]["organisation"]["name"] == "Batched"


async def test_a_batch_is_authorised_operation_by_operation(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    response = await post(client, [{"query": ME}, {"query": RENAME, "variables": {"n": "x"}}])
    assert response.status_code == 200
    for result in response.json():
        assert codes(result) == ["UNAUTHENTICATED"]
    member = await make_member()
    mine = await post(client, [{"query": ME}], token=member.token)
    assert mine.json()[0]["data"]["me"]["tokenId"] == member.token_gid


async def test_apollo_batch_http_link(server: RunningServer, make_member: MakeMember) -> None:
    tools = node_tools("apollo client")
    member = await make_member()
    run = await tools.json("apollo_batch.mjs", f"{server.url}/graphql", member.token, "Via Apollo")
    first = run["requests"][0]
    assert isinstance(first["body"], list) and len(first["body"]) == 2  # two queries, one request
    assert all(r["status"] == 200 for r in run["requests"])
    assert run["me"]["me"]["tokenId"] == member.token_gid
    assert "edges" in run["events"]["events"]
    assert run["renamed"]["renameOrganisation"]["organisation"]["name"] == "Via Apollo"
    assert run["again"]["me"]["organisation"]["name"] == "Via Apollo"


async def test_graphql_http_server_audit(make_server: ServerFactory) -> None:
    # the audit's requests are anonymous and some introspect (`__type`): who may introspect is
    # a deployment's choice (INTROSPECTION), not part of the protocol it checks
    server = await make_server(introspection="open")
    tools = node_tools("graphql-http audit")
    results = await tools.lines("audit.mjs", f"{server.url}/graphql")
    assert len(results) > 50
    failed = [f"{r['name']}: {r['reason']}" for r in results if r["status"] != "ok"]
    assert failed == []
