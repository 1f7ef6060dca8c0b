"""A browser app on another origin than the API's, in real Chromium.

The page (``tests/support/cross_origin_client.html``) is served on another port of 127.0.0.1,
so another origin; it queries with ``fetch`` and an ``Authorization: Bearer`` header (which
makes the browser send a preflight first) and subscribes over graphql-transport-ws. What the
browser allows follows ``CORS_ALLOWED_ORIGINS`` (HTTP) and ``WS_ALLOWED_ORIGINS`` (sockets).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer, serve

PAGE = Path(__file__).parent / "support" / "cross_origin_client.html"
ME = "{ me { organisation { name } } }"
RENAMED = "subscription { events(types: [ORGANISATION_UPDATED]) { type payload } }"
RENAME = 'mutation { renameOrganisation(input: {name: "%s"}) { userErrors { code } } }'
TIMEOUT_MS = 15_000


def client_app() -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return Starlette(routes=[Route("/", page)])


@asynccontextmanager
async def client_page(browser: Any, origin: str) -> AsyncIterator[tuple[Any, list[str]]]:
    """The client page opened at ``origin``, with the browser console's messages."""
    context = await browser.new_context()
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        await page.goto(f"{origin}/")
        assert await page.evaluate("location.origin") == origin
        yield page, console
    finally:
        await context.close()


async def query(page: Any, server: RunningServer, member: Member, document: str) -> Any:
    return await page.evaluate(
        "([api, token, document]) => query(api, token, document)",
        [server.url, member.token, document],
    )


async def subscribe(page: Any, server: RunningServer, member: Member) -> Any:
    return await page.evaluate(
        "([api, token, document]) => subscribe(api, token, document)",
        [server.url, member.token, RENAMED],
    )


async def poll(condition: Callable[[], bool], timeout: float = 5) -> bool:
    """Whether ``condition`` holds within ``timeout`` seconds (browser events arrive late)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def organisation_name(server: RunningServer, member: Member) -> str:
    client = GraphQLHttp(server.url)
    try:
        return (await client.data(ME, token=member.token))["me"]["organisation"]["name"]
    finally:
        await client.close()


async def test_a_page_on_an_allowed_origin_queries_and_subscribes(
    browser: Any, make_server: ServerFactory, make_member: MakeMember
) -> None:
    async with serve(client_app()) as origin:
        server = await make_server(cors_allowed_origins=(origin,), ws_allowed_origins=(origin,))
        member = await make_member()
        async with client_page(browser, origin) as (page, _):
            answer = await query(page, server, member, ME)
            assert answer["status"] == 200, answer
            assert answer["body"]["data"]["me"]["organisation"]["name"] == f"Org {member.email}"
            assert answer["requestId"]  # an exposed header the page can read

            assert await subscribe(page, server, member) == {"acknowledged": True}
            await server.wait_for_subscribers(1)
            client = GraphQLHttp(server.url)
            try:
                await client.data(RENAME % "Renamed from the test", token=member.token)
            finally:
                await client.close()
            await page.wait_for_function("received.length > 0", timeout=TIMEOUT_MS)
            (frame,) = await page.evaluate("received")
            assert frame["type"] == "next" and frame["id"] == "1", frame
            event = frame["payload"]["data"]["events"]
            assert event["type"] == "ORGANISATION_UPDATED"
            assert event["payload"]["name"] == "Renamed from the test"


async def test_a_page_on_another_origin_can_neither_call_nor_subscribe(
    browser: Any, make_server: ServerFactory, make_member: MakeMember
) -> None:
    async with serve(client_app()) as allowed, serve(client_app()) as stranger:
        server = await make_server(cors_allowed_origins=(allowed,), ws_allowed_origins=(allowed,))
        member = await make_member()
        async with client_page(browser, stranger) as (page, console):
            answer = await query(page, server, member, RENAME % "Renamed by a stranger")
            assert answer == {"error": "TypeError: Failed to fetch"}
            blocked = await poll(lambda: any("blocked by CORS policy" in x for x in console))
            assert blocked, console
            # the preflight was refused, so the browser never sent the mutation itself
            assert await organisation_name(server, member) == f"Org {member.email}"

            refused = await subscribe(page, server, member)
            assert refused == {"opened": False, "closed": 1006}, refused
            assert server.app.state.live.listening_subscriptions == 0


async def test_an_origin_allowed_for_cors_alone_can_call_but_not_subscribe(
    browser: Any, make_server: ServerFactory, make_member: MakeMember
) -> None:
    async with serve(client_app()) as origin:
        server = await make_server(cors_allowed_origins=(origin,))
        member = await make_member()
        async with client_page(browser, origin) as (page, _):
            answer = await query(page, server, member, ME)
            assert answer["status"] == 200, answer
            refused = await subscribe(page, server, member)
            assert refused == {"opened": False, "closed": 1006}, refused
