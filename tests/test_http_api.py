"""Queries and mutations over HTTP: health, auth, errors, isolation between organisations."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer

ME = "{ me { user { id email role } organisation { id name kind } tokenId } }"


async def test_health_and_readiness(client: GraphQLHttp) -> None:
    assert (await client.http.get("/healthz")).json() == {"status": "ok"}
    ready = await client.http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_query_over_post_and_get(client: GraphQLHttp, make_member: MakeMember) -> None:
    member = await make_member("SUPPLIER")
    data = await client.data(ME, token=member.token)
    assert data["me"]["user"]["email"] == member.email
    assert data["me"]["organisation"] == {
        "id": member.gid,
        "name": f"Org {member.email}",
        "kind": "SUPPLIER",
    }
    response = await client.http.get(
        "/graphql", params={"query": ME}, headers={"authorization": f"Bearer {member.token}"}
    )
    assert response.status_code == 200
    assert response.json()["data"]["me"]["user"]["email"] == member.email
    assert response.headers["x-request-id"]


async def test_mutation_over_get_is_refused(client: GraphQLHttp, make_member: MakeMember) -> None:
    member = await make_member()
    response = await client.http.get(
        "/graphql",
        params={
            "query": 'mutation { renameOrganisation(input: {name: "x"}) { userErrors { code } } }'
        },
        headers={"authorization": f"Bearer {member.token}"},
    )
    assert response.status_code in (400, 405)
    org = await client.data("{ me { organisation { name } } }", token=member.token)
    assert org["me"]["organisation"]["name"] == f"Org {member.email}"


async def test_mutation_changes_state_and_records_event(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    member = await make_member()
    data = await client.data(
        'mutation { renameOrganisation(input: {name: " Acme "}) '
        "{ organisation { name } userErrors { code field message } } }",
        token=member.token,
    )
    assert data["renameOrganisation"] == {"organisation": {"name": "Acme"}, "userErrors": []}
    events = await client.data(
        "{ events(types: [ORGANISATION_UPDATED]) { edges { node { type payload } } } }",
        token=member.token,
    )
    assert [e["node"] for e in events["events"]["edges"]] == [
        {
            "type": "ORGANISATION_UPDATED",
            "payload": {"name": "Acme", "previousName": f"Org {member.email}"},
        }
    ]


async def test_anonymous_request_is_unauthenticated(client: GraphQLHttp) -> None:
    body = await client.post(ME)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Authorization: Bearer" in error["message"]


@pytest.mark.parametrize("header", ["Bearer sg_not-a-real-token", "Bearer nonsense", "Basic abc"])
async def test_wrong_token_is_unauthenticated(client: GraphQLHttp, header: str) -> None:
    response = await client.http.post(
        "/graphql", json={"query": ME}, headers={"authorization": header}
    )
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_revoked_token_stops_working(client: GraphQLHttp, make_member: MakeMember) -> None:
    member = await make_member()
    created = await client.data(
        'mutation { createApiToken(input: {name: "ci"}) { secret token { id prefix } userErrors { code } } }',
        token=member.token,
    )
    second = created["createApiToken"]
    assert second["secret"].startswith(second["token"]["prefix"])
    assert (await client.data(ME, token=second["secret"]))["me"]["tokenId"] == second["token"]["id"]

    revoked = await client.data(
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { token { revokedAt } userErrors { code } } }",
        {"id": second["token"]["id"]},
        token=member.token,
    )
    assert revoked["revokeApiToken"]["token"]["revokedAt"]
    body = await client.post(ME, token=second["secret"])
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "revoked" in body["errors"][0]["message"]
    # the first token is untouched; revoking twice is an illegal transition
    again = await client.data(
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { userErrors { code field } } }",
        {"id": second["token"]["id"]},
        token=member.token,
    )
    assert again["revokeApiToken"]["userErrors"] == [
        {"code": "ILLEGAL_TRANSITION", "field": "input.id"}
    ]


async def test_secrets_are_stored_hashed(client: GraphQLHttp, make_member: MakeMember) -> None:
    from domain.organisations.models import ApiToken

    member = await make_member()
    stored = await ApiToken.get(id=member.token_id)
    assert member.token not in (stored.secret_hash, stored.prefix, stored.name)
    listed = await client.data("{ apiTokens { nodes { id prefix } } }", token=member.token)
    assert member.token not in str(listed)


async def test_other_organisations_data_is_invisible(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    alice = await make_member()
    bob = await make_member()
    await client.data(
        'mutation { renameOrganisation(input: {name: "Bob Co"}) { userErrors { code } } }',
        token=bob.token,
    )

    tokens = await client.data(
        "{ apiTokens { nodes { id } } users { nodes { email } } }", token=alice.token
    )
    assert bob.token_gid not in {t["id"] for t in tokens["apiTokens"]["nodes"]}
    assert [u["email"] for u in tokens["users"]["nodes"]] == [alice.email]
    events = await client.data(
        "{ events(first: 200) { edges { node { payload } } } }", token=alice.token
    )
    assert "Bob Co" not in str(events)

    # touching Bob's token from Alice's organisation: not found, and Bob's token still works
    refused = await client.data(
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { token { id } userErrors { code field } } }",
        {"id": bob.token_gid},
        token=alice.token,
    )
    assert refused["revokeApiToken"] == {
        "token": None,
        "userErrors": [{"code": "NOT_FOUND", "field": "input.id"}],
    }
    assert (await client.data(ME, token=bob.token))["me"]["user"]["email"] == bob.email


async def test_roles_are_enforced(client: GraphQLHttp, make_member: MakeMember) -> None:
    owner = await make_member()
    staff = await make_member(role="STAFF", organisation_id=owner.organisation_id)
    refused = await client.data(
        'mutation { renameOrganisation(input: {name: "Mine"}) { organisation { name } userErrors { code } } }',
        token=staff.token,
    )
    assert refused["renameOrganisation"] == {
        "organisation": None,
        "userErrors": [{"code": "FORBIDDEN"}],
    }
    # staff see only their own tokens; the owner sees all of the organisation's
    assert {
        t["id"]
        for t in (await client.data("{ apiTokens { nodes { id } } }", token=staff.token))[
            "apiTokens"
        ]["nodes"]
    } == {staff.token_gid}
    owner_view = await client.data("{ apiTokens { nodes { id } } }", token=owner.token)
    assert {owner.token_gid, staff.token_gid} <= {t["id"] for t in owner_view["apiTokens"]["nodes"]}
    # an admin cannot create an owner; an owner can
    admin = await make_member(role="ADMIN", organisation_id=owner.organisation_id)
    add_owner = 'mutation($e: String!) { addUser(input: {email: $e, name: "N", role: OWNER}) { user { role } userErrors { code } } }'
    assert (await client.data(add_owner, {"e": "x-" + admin.email}, token=admin.token))["addUser"][
        "userErrors"
    ] == [{"code": "FORBIDDEN"}]
    assert (await client.data(add_owner, {"e": "y-" + admin.email}, token=owner.token))[
        "addUser"
    ] == {"user": {"role": "OWNER"}, "userErrors": []}


async def test_bad_input_gets_typed_errors_and_changes_nothing(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    member = await make_member()
    cases = [
        ('renameOrganisation(input: {name: "   "})', "REQUIRED", "input.name"),
        (f'renameOrganisation(input: {{name: "{"x" * 201}"}})', "TOO_LONG", "input.name"),
        (
            'addUser(input: {email: "not-an-email", name: "N", role: STAFF})',
            "INVALID",
            "input.email",
        ),
        (
            f'addUser(input: {{email: "{member.email}", name: "N", role: STAFF}})',
            "ALREADY_EXISTS",
            "input.email",
        ),
        (
            'createApiToken(input: {name: "t", expiresAt: "2001-01-01T00:00:00+00:00"})',
            "INVALID",
            "input.expiresAt",
        ),
        ('revokeApiToken(input: {id: "abc"})', "BAD_USER_INPUT", "input.id"),
        ('revokeApiToken(input: {id: "99999999999999999999999"})', "BAD_USER_INPUT", "input.id"),
        (
            'revokeApiToken(input: {id: "gid://supplygraph/Order/1"})',
            "BAD_USER_INPUT",
            "input.id",
        ),
        (
            'revokeApiToken(input: {id: "gid://supplygraph/ApiToken/999999"})',
            "NOT_FOUND",
            "input.id",
        ),
    ]
    for call, code, field in cases:
        data = await client.data(
            f"mutation {{ {call} {{ userErrors {{ code field message }} }} }}", token=member.token
        )
        [error] = next(iter(data.values()))["userErrors"]
        assert (error["code"], error["field"]) == (code, field), call
        assert error["message"]
    me = await client.data(
        "{ me { organisation { name } } users { nodes { email } } apiTokens { nodes { id } } }",
        token=member.token,
    )
    assert me["me"]["organisation"]["name"] == f"Org {member.email}"
    assert len(me["users"]["nodes"]) == 1 and len(me["apiTokens"]["nodes"]) == 1


async def test_wrong_types_are_validation_errors(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    member = await make_member()
    body = await client.post(
        "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }",
        {"n": 42},
        token=member.token,
    )
    assert body["errors"][0]["extensions"]["code"] in {
        "BAD_USER_INPUT",
        "GRAPHQL_VALIDATION_FAILED",
    }
    body = await client.post("{ nosuchfield }", token=member.token)
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_unexpected_errors_are_masked_and_logged(
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from domain.organisations import queries as organisation_queries

    member = await make_member()

    async def broken(**kwargs: object) -> None:
        raise RuntimeError("SELECT secret FROM internals -- stack detail")

    monkeypatch.setattr(organisation_queries, "list_users", broken)
    with caplog.at_level(logging.ERROR, logger="supplygraph.graphql"):
        response = await client.http.post(
            "/graphql",
            json={"query": "{ users { nodes { id } } }"},
            headers={"authorization": f"Bearer {member.token}", "x-request-id": "req-123"},
        )
    [error] = response.json()["errors"]
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-123"}
    assert "SELECT" not in response.text and "Traceback" not in response.text
    [record] = [r for r in caplog.records if r.name == "supplygraph.graphql"]
    assert record.request_id == "req-123" and "internals" in str(record.exc_info[1])


async def test_limits_are_refused_with_clear_errors(make_server, make_member: MakeMember) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = await make_server(
        max_query_depth=2, max_aliases=2, max_query_tokens=60, max_body_bytes=2000
    )
    member = await make_member()
    client = GraphQLHttp(server.url)
    try:
        deep = await client.post("{ me { user { id } } }", token=member.token)
        assert "errors" not in deep
        too_deep = await client.post(
            "{ events { edges { node { id } } pageInfo { hasNextPage } } }", token=member.token
        )
        assert too_deep["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert "depth" in too_deep["errors"][0]["message"]

        aliases = await client.post(
            "{ a: me { tokenId } b: me { tokenId } c: me { tokenId } }", token=member.token
        )
        assert aliases["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert "aliases" in aliases["errors"][0]["message"]

        tokens = await client.post("{ " + "me { tokenId } " * 15 + "}", token=member.token)
        assert tokens["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert "tokens" in tokens["errors"][0]["message"]

        big = await client.http.post(
            "/graphql",
            content=b'{"query": "' + b"x" * 5000 + b'"}',
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413
        assert big.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b" " * 500

        chunked = await client.http.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
    finally:
        await client.close()
