"""Persisted documents: Apollo's automatic persisted queries over POST, GET and WebSocket, in
memory and in Redis, and trusted-documents mode refusing anything not in its manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.persisted_documents import MemoryDocuments, RedisDocuments
from tests.conftest import MakeMember, ServerFactory
from tests.support.graphql_client import GraphQLWebSocket
from tests.support.node import node_tools
from tests.support.server import RunningServer
from tests.support.services import require_redis

GRAPHQL_RESPONSE = "application/graphql-response+json"
ME = "query Me { me { tokenId organisation { name } } }"
EVENTS = "subscription Updates { events(types: [ORGANISATION_UPDATED]) { type payload } }"
RENAME = (
    "mutation Rename($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
)


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def persisted(document: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(document)}}


async def post(
    http: httpx.AsyncClient, body: Any, token: str, accept: str = "application/json"
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}", "accept": accept}
    return await http.post("/graphql", json=body, headers=headers)


async def get(http: httpx.AsyncClient, params: dict[str, str], token: str) -> httpx.Response:
    return await http.get("/graphql", params=params, headers={"authorization": f"Bearer {token}"})


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


async def test_automatic_persisted_queries_over_post_and_get(
    server: RunningServer, make_member: MakeMember
) -> None:
    member = await make_member()
    async with httpx.AsyncClient(base_url=server.url) as http:
        # an unknown hash: the client is told to send the document
        missing = await post(http, {"extensions": persisted(ME)}, member.token)
        assert missing.status_code == 200 and "data" not in missing.json()
        assert codes(missing.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        assert missing.json()["errors"][0]["message"] == "PersistedQueryNotFound"
        strict = await post(http, {"extensions": persisted(ME)}, member.token, GRAPHQL_RESPONSE)
        assert strict.status_code == 400
        # hash and document: checked, run and kept
        sent = await post(http, {"query": ME, "extensions": persisted(ME)}, member.token)
        assert sent.json()["data"]["me"]["tokenId"] == member.token_gid
        # from now on the hash alone, over POST and GET (and the response cache answers GET)
        by_hash = await post(http, {"extensions": persisted(ME)}, member.token)
        assert by_hash.json() == sent.json()
        params = {"extensions": json.dumps(persisted(ME)), "operationName": "Me"}
        first = await get(http, params, member.token)
        second = await get(http, params, member.token)
        assert first.json() == sent.json()
        assert second.headers.get("x-cache") == "hit"


async def test_a_hash_that_does_not_match_or_a_bad_extension_is_refused(
    server: RunningServer, make_member: MakeMember
) -> None:
    member = await make_member()
    async with httpx.AsyncClient(base_url=server.url) as http:
        wrong = await post(http, {"query": ME, "extensions": persisted(ME + " ")}, member.token)
        assert codes(wrong.json()) == ["BAD_REQUEST"] and "data" not in wrong.json()
        for extension in (
            {"persistedQuery": {"version": 2, "sha256Hash": sha(ME)}},
            {"persistedQuery": {"version": 1, "sha256Hash": "abc"}},
            {"persistedQuery": "x"},
        ):
            answer = await post(http, {"extensions": extension}, member.token, GRAPHQL_RESPONSE)
            assert answer.status_code == 400 and codes(answer.json()) == ["BAD_REQUEST"]
        # in a batch, each operation is resolved alone
        batch = [{"extensions": persisted("{ __typename }")}, {"query": ME}]
        one, two = (await post(http, batch, member.token)).json()
        assert codes(one) == ["PERSISTED_QUERY_NOT_FOUND"] and two["data"]["me"]


async def test_persisted_subscriptions_over_the_socket(
    server: RunningServer, make_member: MakeMember
) -> None:
    member = await make_member()
    ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
    try:
        await ws.acknowledged()
        await ws.send(
            {"id": "1", "type": "subscribe", "payload": {"extensions": persisted(EVENTS)}}
        )
        refused = await ws.receive()
        assert refused["type"] == "error" and refused["id"] == "1"
        assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        payload = {"query": EVENTS, "extensions": persisted(EVENTS)}
        await ws.send({"id": "2", "type": "subscribe", "payload": payload})
        await ws.send(
            {"id": "3", "type": "subscribe", "payload": {"extensions": persisted(EVENTS)}}
        )
        await server.wait_for_subscribers(2)
        async with httpx.AsyncClient(base_url=server.url) as http:
            renamed = await post(http, {"query": RENAME, "variables": {"n": "Live"}}, member.token)
            assert renamed.status_code == 200
        received = {}
        for _ in range(2):
            frame = await ws.receive()
            received[frame["id"]] = frame["payload"]["data"]["events"]["payload"]["name"]
        assert received == {"2": "Live", "3": "Live"}
    finally:
        await ws.close()


async def test_the_memory_store_keeps_the_most_recent_documents() -> None:
    store = MemoryDocuments(max_entries=2)
    for n in range(3):
        await store.put(f"h{n}", f"doc {n}")
    assert len(store) == 2 and await store.get("h0") is None
    assert await store.get("h2") == "doc 2"


async def test_the_redis_store_is_shared_and_a_dead_redis_is_a_miss(
    make_server: ServerFactory, make_member: MakeMember
) -> None:
    url = require_redis("redis: persisted documents")
    document = "query Shared { me { tokenId } }"
    server = await make_server(redis_url=url)
    member = await make_member()
    async with httpx.AsyncClient(base_url=server.url) as http:
        await post(http, {"query": document, "extensions": persisted(document)}, member.token)
    other = RedisDocuments(url, ttl=60)  # as another instance reads it
    try:
        assert await other.get(sha(document)) == document
    finally:
        await other.close()
    dead = RedisDocuments("redis://127.0.0.1:1/0", ttl=60)
    try:
        assert await dead.get(sha(document)) is None
        await dead.put(sha(document), document)  # logged, not raised
    finally:
        await dead.close()


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "persisted-query-manifest.json"
    operations = [
        {"id": sha(ME), "name": "Me", "type": "query", "body": ME},
        {"id": "rename-1", "name": "Rename", "type": "mutation", "body": RENAME},
        {"id": sha(EVENTS), "name": "Updates", "type": "subscription", "body": EVENTS},
    ]
    manifest = {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
    path.write_text(json.dumps(manifest))
    return path


async def test_trusted_documents_mode_runs_only_what_the_manifest_lists(
    make_server: ServerFactory, make_member: MakeMember, manifest: Path
) -> None:
    server = await make_server(trusted_documents=str(manifest))
    member = await make_member()
    async with httpx.AsyncClient(base_url=server.url) as http:
        # listed: by hash, by id (Relay's doc_id and documentId), or sent as text
        for body in (
            {"extensions": persisted(ME)},
            {"documentId": f"sha256:{sha(ME)}"},
            {"query": ME},
        ):
            answer = await post(http, body, member.token, GRAPHQL_RESPONSE)
            assert answer.status_code == 200, (body, answer.text)
            assert answer.json()["data"]["me"]["tokenId"] == member.token_gid
        renamed = await post(
            http, {"doc_id": "rename-1", "variables": {"n": "Trusted"}}, member.token
        )
        assert renamed.json()["data"]["renameOrganisation"]["userErrors"] == []
        # anything else is refused, sent as text, with its hash, in a batch or over GET
        other = "{ me { tokenId } }"
        for body in (
            {"query": other},
            {"query": other, "extensions": persisted(other)},
            [{"query": ME}, {"query": other}],
        ):
            answer = await post(http, body, member.token, GRAPHQL_RESPONSE)
            results = answer.json() if isinstance(body, list) else [answer.json()]
            assert codes(results[-1]) == ["PERSISTED_QUERY_NOT_IN_LIST"], answer.text
            assert "data" not in results[-1]
            if not isinstance(body, list):
                assert answer.status_code == 400
        unknown = await post(http, {"extensions": persisted(other)}, member.token)
        assert codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        by_get = await get(http, {"query": other}, member.token)
        assert codes(by_get.json()) == ["PERSISTED_QUERY_NOT_IN_LIST"]
    ws = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
    try:
        await ws.acknowledged()
        await ws.send(
            {"id": "1", "type": "subscribe", "payload": {"query": EVENTS.replace("type ", "")}}
        )
        refused = await ws.receive()
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
        await ws.send(
            {"id": "2", "type": "subscribe", "payload": {"extensions": persisted(EVENTS)}}
        )
        await server.wait_for_subscribers(1)
    finally:
        await ws.close()


async def test_apollo_persisted_query_link(server: RunningServer, make_member: MakeMember) -> None:
    tools = node_tools("apollo client")
    member = await make_member()
    run = await tools.json("apollo_apq.mjs", f"{server.url}/graphql", member.token)
    requests = run["requests"]
    # first: the hash over GET, not found; then hash and document over POST; then GET alone
    assert [(r["method"], r["hasQuery"]) for r in requests] == [
        ("GET", False),
        ("POST", True),
        ("GET", False),
        ("GET", False),
    ], requests
    assert all("persistedQuery" in r["extensions"] for r in requests)
    assert requests[-1]["cache"] == "hit"  # hashed GETs are answered from the response cache
    for answer in ("first", "second", "third"):
        assert run[answer]["me"]["tokenId"] == member.token_gid
