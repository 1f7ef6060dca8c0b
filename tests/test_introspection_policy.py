"""Introspection is for authenticated callers unless the operator opens it (issue 19)."""

from __future__ import annotations

import pytest

from tests.conftest import MakeMember, ServerFactory
from tests.support.graphql_client import GraphQLHttp

SCHEMA = "{ __schema { queryType { name } } }"
TYPE_BY_FRAGMENT = 'query { ...T } fragment T on Query { __type(name: "Order") { name } }'
INLINE = "query { ... on Query { __schema { types { name } } } }"


@pytest.mark.parametrize("document", [SCHEMA, TYPE_BY_FRAGMENT, INLINE])
async def test_anonymous_and_bad_tokens_cannot_introspect(
    make_server: ServerFactory, make_member: MakeMember, document: str
) -> None:
    server = await make_server()
    member = await make_member()
    client = GraphQLHttp(server.url)
    try:
        for token in (None, "sg_not-a-token"):
            body = await client.post(document, token=token)
            assert "data" not in body or body["data"] is None
            assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
        answered = await client.post(document, token=member.token)
        assert "errors" not in answered and answered["data"]
        # __typename is not introspection of the schema: clients add it everywhere
        typename = await client.post("{ __typename }")
        assert typename["data"] == {"__typename": "Query"}
    finally:
        await client.close()


@pytest.mark.parametrize("overrides", [{"introspection": "open"}, {"debug": True}])
async def test_the_operator_can_open_introspection(
    make_server: ServerFactory, overrides: dict[str, object]
) -> None:
    server = await make_server(**overrides)
    client = GraphQLHttp(server.url)
    try:
        body = await client.post(SCHEMA)
        assert body["data"] == {"__schema": {"queryType": {"name": "Query"}}}
    finally:
        await client.close()
