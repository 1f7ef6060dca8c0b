"""GraphiQL in a real browser with no internet: every request off this machine is aborted.

The page must load, run a query with the token from its Headers tab, and stream a
subscription over its WebSocket, all from assets this server serves.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from tests.conftest import MakeMember, ServerFactory
from tests.support.browser import keep_offline
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer

SUBSCRIPTION = "subscription Renamed { events(types: [ORGANISATION_UPDATED]) { type payload } }"
RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
RESULT = ".graphiql-response"
TIMEOUT_MS = 30_000


async def open_graphiql(
    browser: Any, server: RunningServer, query: str | None = None, token: str | None = None
) -> Any:
    """A GraphiQL page loaded with the internet cut off, with ``query`` in its editor and the
    token in its Headers tab when given (the page reads both from its address); returns (page,
    refused addresses, page errors)."""
    context = await browser.new_context()
    page = await context.new_page()
    refused = await keep_offline(page)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    given = {"q": query, "headers": token and json.dumps({"Authorization": f"Bearer {token}"})}
    # the page reads them with decodeURIComponent: spaces as %20, not +
    parameters = urlencode({k: v for k, v in given.items() if v}, quote_via=quote)
    await page.goto(f"{server.url}/graphql?{parameters}")
    await page.locator(".graphiql-execute-button").wait_for(timeout=TIMEOUT_MS)
    return page, refused, errors


async def test_graphiql_runs_its_first_query_offline(
    browser: Any, make_server: ServerFactory, make_member: MakeMember
) -> None:
    """As the README says: type the header into the Headers tab, run the page's query."""
    server = await make_server(debug=True)
    member = await make_member("SUPPLIER")
    page, refused, errors = await open_graphiql(browser, server)
    try:
        assert await page.evaluate("typeof GraphiQL.createFetcher") == "function"
        await page.get_by_text("Headers", exact=True).click()
        await page.locator(".graphiql-editor-tool .graphiql-editor").last.click()
        # typed as a person would (the editor closes brackets and quotes as they are typed)
        await page.keyboard.type(json.dumps({"Authorization": f"Bearer {member.token}"}))
        await page.locator(".graphiql-execute-button").click()
        result = page.locator(RESULT)
        await result.get_by_text(f"Org {member.email}").wait_for(timeout=TIMEOUT_MS)
        text = await result.inner_text()
        assert '"kind": "SUPPLIER"' in text and '"role": "OWNER"' in text, text
        assert refused == []  # nothing was even asked of another host
        assert errors == []
    finally:
        await page.context.close()


async def test_graphiql_streams_a_subscription_offline(
    browser: Any, make_server: ServerFactory, make_member: MakeMember
) -> None:
    server = await make_server(debug=True)
    member = await make_member("SUPPLIER")
    page, refused, errors = await open_graphiql(browser, server, SUBSCRIPTION, member.token)
    client = GraphQLHttp(server.url)
    try:
        await page.locator(".graphiql-execute-button").click()
        # the Headers tab's token went as the socket's connection_init payload
        await server.wait_for_subscribers(1)
        renamed = await client.data(RENAME, {"n": "Renamed in GraphiQL"}, token=member.token)
        assert renamed["renameOrganisation"]["userErrors"] == []
        result = page.locator(RESULT)
        await result.get_by_text("Renamed in GraphiQL").wait_for(timeout=TIMEOUT_MS)
        assert "ORGANISATION_UPDATED" in await result.inner_text()
        assert refused == []
        assert errors == []
    finally:
        await client.close()
        await page.context.close()
