"""The live operations dashboard (``/dashboard``, ``service/dashboard.py``) in real headless
Chromium, with the internet cut off (every request off this machine is aborted): it must work
from what this server serves, through the public API alone.

What the user sees is asserted with Playwright's waits, never after a fixed sleep: a status
change reaching the tabs and the feed within a second of the mutation's answer, a withdraw the
warehouse refuses and its retry from the page, an SLA breach opening and clearing, a server
restart with changes made while the page was cut off (each shown once, in order, after it
reconnects), another organisation's page seeing none of it, and the layout at desktop and phone
widths (screenshots in ``tests/artifacts/``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.sla import commands as sla
from service import dashboard
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.browser import keep_offline
from tests.support.distribution import (
    FAST_WAREHOUSE,
    Distribution,
    WarehouseSim,
    eventually,
    manual_order,
    paid_order,
    partnered,
    warehouse_simulator,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer, start_server
from tests.test_distribution_faults import both_sides, pushed_order, withdraw, withdrawal_is
from tests.test_order_flow import ok

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
STREAMS = 4  # the subscriptions of a signed-in page: orders, withdrawals, returns, breaches
LIVE_TYPES = [
    "ORDER_STATUS_CHANGED",
    "WITHDRAWAL_STATUS_CHANGED",
    "RETURN_STATUS_CHANGED",
    "SLA_BREACH_OPENED",
    "SLA_BREACH_CLEARED",
]

SHIP = """mutation($o: ID!) { shipOrder(orderId: $o, carrier: "DHL", trackingNumber: "TRK-1")
  { order { id status } userErrors { code field message } } }"""
DELIVER = """mutation($o: ID!) { markDelivered(orderId: $o)
  { order { id status } userErrors { code field message } } }"""
CANCEL = """mutation($o: ID!) { cancelOrders(orderIds: [$o], reason: "not wanted")
  { orders { id status } userErrors { code field message } } }"""
CLOSE = """mutation($w: ID!, $n: String!) { closeWithdrawal(withdrawalId: $w, note: $n)
  { withdrawal { id } userErrors { code field message } } }"""
RETRY = """mutation($w: ID!) { retryWithdrawal(withdrawalId: $w)
  { withdrawal { id status } userErrors { code field message } } }"""
EVENTS = """query($after: String, $types: [EventType!]) {
  events(first: 200, after: $after, types: $types) {
    edges { cursor node { id type subjectId } } pageInfo { hasNextPage endCursor } } }"""
NUMBER = "query($o: ID!) { order(id: $o) { number } }"
RETURNS = "{ afterSalesOrders(first: 5) { edges { node { id number status } } } }"

# Notes, in the page, when a CSS selector first matches an element whose text contains the
# given text (``window.__seen[name]``, epoch milliseconds): the moment the DOM changed.
WATCH = """([name, selector, text]) => {
  window.__seen = window.__seen || {};
  const check = () => {
    if (name in window.__seen) return;
    for (const el of document.querySelectorAll(selector)) {
      if (text === null || el.textContent.includes(text)) {
        window.__seen[name] = Date.now();
        return;
      }
    }
  };
  new MutationObserver(check).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
}"""


def expect(target: Any) -> Any:
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


@dataclass
class Dashboard:
    """One signed-in dashboard page, with what its console reported and the addresses off
    this machine it asked for (none, or the test fails)."""

    page: Any
    context: Any
    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def connection(self) -> Any:
        return self.page.locator("#connection")

    def tab_count(self, status: str) -> Any:
        return self.page.locator(f"#tab-{status} .count")

    def order_row(self, order_id: str) -> Any:
        return self.page.locator(f'#orders > li[data-order-id="{order_id}"]')

    def withdrawal(self, withdrawal_id: str) -> Any:
        return self.page.locator(f'#withdrawals > li[data-withdrawal-id="{withdrawal_id}"]')

    def withdrawals_of(self, order_id: str) -> Any:
        return self.page.locator(f'#withdrawals > li[data-order-id="{order_id}"]')

    def breaches_of(self, order_id: str) -> Any:
        return self.page.locator(f'#breaches > li[data-order-id="{order_id}"]')

    @property
    def feed(self) -> Any:
        return self.page.locator("#feed > li")

    async def feed_event_ids(self) -> list[str]:
        """The feed's event ids, oldest first (the page shows the newest on top)."""
        ids = await self.feed.evaluate_all("items => items.map((li) => li.dataset.eventId)")
        return list(reversed(ids))

    async def watch(self, name: str, selector: str, text: str | None = None) -> None:
        assert (
            await self.page.evaluate(
                "([s, t]) => [...document.querySelectorAll(s)].some("
                "(el) => t === null || el.textContent.includes(t))",
                [selector, text],
            )
            is False
        ), f"{selector} already shows {text!r}"
        await self.page.evaluate(WATCH, [name, selector, text])

    async def seen_at(self, name: str) -> float:
        """When (epoch seconds) the watched change appeared in the DOM."""
        await self.page.wait_for_function(
            "name => window.__seen && name in window.__seen", arg=name, timeout=TIMEOUT_MS
        )
        return await self.page.evaluate("name => window.__seen[name]", name) / 1000


@asynccontextmanager
async def opened(
    browser: Any,
    server: RunningServer,
    member: Member,
    *,
    viewport: dict[str, int] = DESKTOP,
    mobile: bool = False,
    tolerated: tuple[str, ...] = (),
) -> AsyncIterator[Dashboard]:
    """The dashboard signed in with ``member``'s token as a person would (typed into the form),
    connected. On leaving: no request left this machine, and the console had no error (but
    ``tolerated`` ones, such as a socket refused while the server is down)."""
    context = await browser.new_context(
        viewport=viewport,
        is_mobile=mobile,
        has_touch=mobile,
        device_scale_factor=2 if mobile else 1,
    )
    page = await context.new_page()
    board = Dashboard(page, context)
    board.refused = await keep_offline(page)
    page.on("pageerror", lambda error: board.errors.append(f"pageerror: {error}"))
    page.on("console", lambda m: m.type == "error" and board.errors.append(m.text))
    try:
        await page.goto(f"{server.url}/dashboard")
        await expect(board.connection).to_have_attribute("data-state", "signed-out")
        await page.get_by_label("API token").fill(member.token)
        await page.get_by_role("button", name="Sign in").click()
        await expect(board.connection).to_have_attribute(
            "data-state", "connected", timeout=TIMEOUT_MS
        )
        yield board
        assert board.refused == []
        unexpected = [e for e in board.errors if not any(t in e for t in tolerated)]
        assert unexpected == [], unexpected
    finally:
        await context.close()


async def number_of(client: GraphQLHttp, member: Member, order_id: str) -> str:
    return (await client.data(NUMBER, {"o": order_id}, token=member.token))["order"]["number"]


async def events_after(
    client: GraphQLHttp, member: Member, after: str | None = None
) -> list[dict[str, Any]]:
    """The organisation's events of the dashboard's types after the cursor, oldest first."""
    found: list[dict[str, Any]] = []
    while True:
        page = (
            await client.data(EVENTS, {"after": after, "types": LIVE_TYPES}, token=member.token)
        )["events"]
        found += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def cursor_of(event_id: str) -> str:
    """The ``events`` cursor of an event: the key of its id (``schema.event_ids``)."""
    return event_id.rsplit("/", 1)[1]


@pytest.fixture
async def sim() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[GraphQLHttp]:
    client = GraphQLHttp(server.url)
    yield client
    await client.close()


# --- the page and its assets, over HTTP ----------------------------------------------------------


async def test_the_page_loads_only_what_this_server_serves_with_integrity_and_a_strict_policy(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        page = await client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        for directive in (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "require-trusted-types-for 'script'",
        ):
            assert directive in csp, csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert re.search(r"(?i)\b(https?|wss?)://", page.text) is None  # no absolute address
        assert re.search(r"<script>|<style|\sstyle=|\son\w+=", page.text) is None  # nothing inline

        loaded = re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"[^>]*>', page.text)
        assets = [url for url in loaded if not url.startswith("data:")]
        build = dashboard.app_build()
        vendored = [p for p in dashboard.vendored_files() if p.endswith(".js")]
        assert len(assets) == len(build.files) + len(vendored)
        for url in assets:
            assert url.startswith(f"{dashboard.ASSETS_PATH}/"), url
            integrity = re.search(
                rf'(?:src|href)="{re.escape(url)}" integrity="([^"]+)"', page.text
            )
            assert integrity, url
            response = await client.get(url)
            assert response.status_code == 200, url
            kind = "text/css" if url.endswith(".css") else "text/javascript"
            assert response.headers["content-type"].startswith(kind), url
            assert response.headers["cache-control"] == dashboard.IMMUTABLE, url
            assert response.headers["x-content-type-options"] == "nosniff"
            digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
            assert integrity.group(1) == f"sha384-{digest}", url
            if "/vendor/" not in url:  # the page's own code names no other place
                remote = set(re.findall(r"(?i)\b(?:https?|wss?)://[^\s\"'`]*", response.text))
                assert remote <= {"http://www.w3.org/2000/svg"}, (url, remote)

        slash = await client.get("/dashboard/")
        assert slash.status_code in (307, 308) and slash.headers["location"].endswith("/dashboard")

        # only the current build's files and the vendored ones are served: no template, no
        # directory listing, no stale build
        for path in (
            "index.html",
            "app/index.js",
            "app@0000000000000000/index.js",
            f"{build.prefix}/missing.js",
            "vendor/manifest.json",
            "vendor/",
            "../dashboard.py",
        ):
            assert (await client.get(f"{dashboard.ASSETS_PATH}/{path}")).status_code == 404, path


def test_the_vendored_client_is_pinned_with_its_licence_and_hashes() -> None:
    manifest = json.loads(dashboard.VENDOR_MANIFEST.read_text())
    (package,) = manifest["packages"]
    assert package["name"] == "graphql-ws" and re.fullmatch(r"[56]\.\d+\.\d+", package["version"])
    assert package["source"] == f"npm:graphql-ws@{package['version']}"
    assert package["integrity"].startswith("sha512-")
    for path in package["licenseFiles"]:
        assert "Permission is hereby granted" in (dashboard.VENDOR_DIR / path).read_text()
    listed = set(package["licenseFiles"])
    for file in package["files"]:
        data = (dashboard.VENDOR_DIR / file["path"]).read_bytes()
        digest = base64.b64encode(hashlib.sha384(data).digest()).decode()
        assert file["integrity"] == f"sha384-{digest}"
        listed.add(file["path"])
    on_disk = {
        str(path.relative_to(dashboard.VENDOR_DIR))
        for path in dashboard.VENDOR_DIR.rglob("*")
        if path.is_file() and path != dashboard.VENDOR_MANIFEST
    }
    assert on_disk == listed
    attributes = (ROOT / ".gitattributes").read_text()
    assert "service/static/dashboard/vendor/** -diff" in attributes


# --- live changes ---------------------------------------------------------------------------------


async def test_a_shipment_reaches_the_tabs_and_the_feed_within_a_second_of_the_answer(
    browser: Any, server: RunningServer, http: GraphQLHttp, make_member: MakeMember
) -> None:
    d = await partnered(http, make_member, None)
    order_id = await paid_order(http, d)
    number = await number_of(http, d.distributor, order_id)
    async with opened(browser, server, d.distributor) as board:
        page = board.page
        await expect(page.locator("#org-name")).to_have_text(f"Org {d.distributor.email}")
        await expect(page.locator("#org-kind")).to_have_text("Buyer")
        await expect(page.locator("#user-role")).to_have_text("OWNER")
        await expect(board.tab_count("AWAITING_SHIPPING")).to_have_text("1")
        await expect(board.order_row(order_id)).to_contain_text(number)
        await server.wait_for_subscribers(STREAMS)

        await board.watch("count", "#tab-SHIPPED .count", "1")
        await board.watch("feed", f'#feed > li[data-order-id="{order_id}"][data-status="SHIPPED"]')
        await ok(http, SHIP, {"o": order_id}, token=d.supplier.token)
        answered = time.time()
        count_after = await board.seen_at("count") - answered
        feed_after = await board.seen_at("feed") - answered
        print(
            f"\nshipOrder answered → tab count {count_after * 1000:.0f} ms, feed {feed_after * 1000:.0f} ms"
        )
        assert count_after < 1.0 and feed_after < 1.0

        await expect(board.tab_count("AWAITING_SHIPPING")).to_have_text("0")
        entry = board.feed.first
        await expect(entry).to_contain_text(number)
        await expect(entry).to_contain_text("Awaiting shipping → Shipped")
        # the tab's list followed: the order left it; the Shipped tab has it, and its timeline
        await expect(board.order_row(order_id)).to_have_count(0)
        await page.locator("#tab-SHIPPED").click()
        await board.order_row(order_id).get_by_role("button").click()
        timeline = page.locator("#timeline > li")
        await expect(page.locator("#detail-title")).to_have_text(f"Order {number}")
        await expect(timeline.last).to_have_attribute("data-to", "SHIPPED")
        statuses = await timeline.evaluate_all("items => items.map((li) => li.dataset.to)")
        assert statuses[-2:] == ["AWAITING_SHIPPING", "SHIPPED"], statuses
        # and the chart of the day counts it, shipped this hour
        hour = datetime.now(UTC).hour
        bar = page.locator(f'#chart rect.bar[data-hour="{hour}"][data-status="SHIPPED"]')
        await expect(bar).to_have_attribute("data-count", "1")


async def test_a_withdraw_the_warehouse_refuses_fails_with_its_reason_and_is_retried_from_the_page(
    browser: Any, make_server: ServerFactory, make_member: MakeMember, sim: WarehouseSim
) -> None:
    server = await make_server(**FAST_WAREHOUSE)
    client = GraphQLHttp(server.url)
    try:
        d = await partnered(client, make_member, sim)
        order_id = await pushed_order(client, d)
        number = await number_of(client, d.distributor, order_id)
        async with (
            opened(browser, server, d.distributor) as distributor,
            opened(browser, server, d.supplier) as supplier,
        ):
            await server.wait_for_subscribers(2 * STREAMS)
            await sim.faults(refuse_cancel=True)  # picking has started: 409 CANCEL_REFUSED
            first = await withdraw(client, d.distributor.token, order_id)
            failed_id = first["withdrawal"]["id"]
            state = await both_sides(client, d, order_id, withdrawal_is("WITHDRAW_FAILED"))
            reason = state["withdrawals"][0]["failure"]
            assert reason

            for board in (distributor, supplier):
                row = board.withdrawal(failed_id)
                await expect(row).to_have_attribute("data-status", "WITHDRAW_FAILED")
                await expect(row).to_contain_text(number)
                await expect(row.locator(".failure")).to_have_text(reason)
                failed = board.page.locator(
                    f'#feed > li[data-subject="{failed_id}"][data-status="WITHDRAW_FAILED"]'
                )
                await expect(failed).to_contain_text(reason)
            # the ways out each side's role may take (`Requires` in the schema): the
            # distributor's staff all three, the supplier's only closing it
            actions = "button[data-action]"
            ways = distributor.withdrawal(failed_id).locator(actions)
            await expect(ways).to_have_text(["Retry", "Convert to return…", "Close…"])
            await expect(supplier.withdrawal(failed_id).locator(actions)).to_have_text(["Close…"])

            # the supplier starts closing it; meanwhile the distributor retries from its page
            closing = supplier.withdrawal(failed_id)
            await closing.get_by_role("button", name="Close…").click()
            await closing.get_by_role("textbox", name="Note").fill("Customer called, keep it")
            await sim.faults(reset=True)
            await distributor.withdrawal(failed_id).get_by_role("button", name="Retry").click()
            for board in (distributor, supplier):
                await expect(board.withdrawals_of(order_id)).to_have_count(2, timeout=TIMEOUT_MS)
                newest = board.withdrawals_of(order_id).first
                await expect(newest).to_have_attribute(
                    "data-status", "WITHDRAWN", timeout=TIMEOUT_MS
                )
                retried = board.withdrawal(failed_id)
                await expect(retried.locator(".resolution")).to_have_text("Retried")
                await expect(retried.locator("button[data-action]")).to_have_count(0)
                entries = board.page.locator(
                    f'#feed > li[data-order-id="{order_id}"][data-kind="withdrawal"]'
                )
                # the failure, its resolution by the retry, then the new withdrawal's steps
                await expect(entries).to_have_count(5)
                steps = await entries.evaluate_all(
                    "items => items.reverse().map((li) => [li.dataset.status,"
                    " li.dataset.resolution || null])"
                )
                assert steps == [
                    ["WITHDRAWING", None],
                    ["WITHDRAW_FAILED", None],
                    ["WITHDRAW_FAILED", "RETRIED"],
                    ["WITHDRAWING", None],
                    ["WITHDRAWN", None],
                ]
                resolved = entries.and_(board.page.locator('[data-resolution="RETRIED"]'))
                await expect(resolved).to_contain_text("Withdraw failed, retried")
                await expect(board.tab_count("CANCELLED")).to_have_text("1")
                await expect(
                    board.page.locator('#chart rect[data-outcome="WITHDRAWN"]')
                ).to_have_attribute("data-count", "1")

            # the supplier's close now comes too late: the page shows the API's refusal
            refusal = (
                await client.data(CLOSE, {"w": failed_id, "n": "again"}, token=d.supplier.token)
            )["closeWithdrawal"]["userErrors"]
            assert refusal, "closing a retried withdraw must be refused"
            await closing.get_by_role("button", name="Close withdrawal").click()
            await expect(closing.locator(".row-error")).to_have_text(refusal[0]["message"])

            # another withdraw the warehouse refuses, turned into a return from the page
            converted = await failed_withdrawal(client, d, sim)
            row = distributor.withdrawal(converted)
            await row.get_by_role("button", name="Convert to return…").click()
            await row.get_by_role("textbox", name="Reason for the return").fill("Picked: return it")
            await row.get_by_role("button", name="Convert", exact=True).click()
            # the page's mutation answers after the click: wait for the return it made
            returns = await eventually(
                lambda: client.data(RETURNS, token=d.distributor.token),
                lambda data: len(data["afterSalesOrders"]["edges"]) == 1,
            )
            (made,) = [edge["node"] for edge in returns["afterSalesOrders"]["edges"]]
            for board in (distributor, supplier):
                resolution = board.withdrawal(converted).locator(".resolution")
                await expect(resolution).to_have_text(
                    f"Converted to a return: after-sales order {made['number']}"
                )
                returned = board.page.locator(f'#returns > li[data-return-id="{made["id"]}"]')
                await expect(returned).to_contain_text(made["number"])
                await expect(returned).not_to_contain_text("null")  # no missing value shown
                await expect(returned).to_have_attribute("data-status", made["status"])
                await expect(
                    board.page.locator(
                        f'#feed > li[data-kind="return"][data-subject="{made["id"]}"]'
                    )
                ).to_have_count(1)
    finally:
        await client.close()


async def test_an_sla_breach_opens_when_the_clock_passes_its_deadline_and_clears_on_shipping(
    browser: Any, server: RunningServer, http: GraphQLHttp, make_member: MakeMember
) -> None:
    d = await partnered(http, make_member, None)
    order_id = await paid_order(http, d)
    number = await number_of(http, d.supplier, order_id)
    async with opened(browser, server, d.supplier) as board:
        await server.wait_for_subscribers(STREAMS)
        await expect(board.page.locator("#breach-count")).to_have_text("0")
        # three days on, the paid order has not shipped (its deadline: 48 h)
        await sla.sweep(now=datetime.now(UTC) + timedelta(days=3))
        breach = board.breaches_of(order_id)
        await expect(breach).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(breach).to_have_attribute("data-rule", "PAID_NOT_SHIPPED")
        await expect(breach).to_contain_text(number)
        await expect(board.page.locator("#breach-count")).to_have_text("1")
        opened_entry = board.page.locator('#feed > li[data-kind="sla"][data-status="OPENED"]')
        await expect(opened_entry).to_contain_text("Paid not shipped opened")

        await ok(http, SHIP, {"o": order_id}, token=d.supplier.token)
        await expect(breach).to_have_count(0, timeout=TIMEOUT_MS)
        await expect(board.page.locator("#breach-count")).to_have_text("0")
        cleared = board.page.locator('#feed > li[data-kind="sla"][data-status="CLEARED"]')
        await expect(cleared).to_contain_text(number)


async def test_another_organisations_page_shows_none_of_it(
    browser: Any, server: RunningServer, http: GraphQLHttp, make_member: MakeMember
) -> None:
    d = await partnered(http, make_member, None)
    order_id = await paid_order(http, d)
    other_order = await paid_order(http, d)
    number = await number_of(http, d.supplier, order_id)
    stranger = await make_member("SUPPLIER")
    async with (
        opened(browser, server, d.supplier) as supplier,
        opened(browser, server, stranger) as other,
    ):
        await server.wait_for_subscribers(2 * STREAMS)
        await ok(http, SHIP, {"o": order_id}, token=d.supplier.token)
        await sla.sweep(now=datetime.now(UTC) + timedelta(days=3))
        await expect(supplier.breaches_of(other_order)).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(supplier.feed).to_have_count(2)
        # everything the supplier's page received had reached the stranger's by now, had it
        # been sent there; and a fresh read of its lists shows nothing either
        await other.page.reload()
        await expect(other.connection).to_have_attribute("data-state", "connected")
        await server.wait_for_subscribers(2 * STREAMS)
        await expect(other.page.locator("#org-name")).to_have_text(f"Org {stranger.email}")
        await expect(other.feed).to_have_count(0)
        for status in ("AWAITING_SHIPPING", "SHIPPED"):
            await expect(other.tab_count(status)).to_have_text("0")
        await expect(other.page.locator("#breaches > li")).to_have_count(0)
        await expect(other.page.locator("#withdrawals > li")).to_have_count(0)
        await expect(other.page.locator("#chart svg.orders-chart")).to_have_attribute(
            "data-total", "0"
        )
        assert number not in await other.page.locator("body").inner_text()


# --- resuming after the socket is cut and the server restarted ---------------------------------


async def test_after_a_restart_the_page_shows_every_change_made_meanwhile_once_in_order(
    browser: Any, make_server: ServerFactory, make_member: MakeMember
) -> None:
    first = await make_server()
    client = GraphQLHttp(first.url)
    d = await partnered(client, make_member, None)
    delivered = await paid_order(client, d)
    shipped = await paid_order(client, d)
    late = await paid_order(client, d)
    unpaid = await manual_order(client, d)
    restarted: RunningServer | None = None
    # while the server is down the page's reconnection attempts fail, as they would
    refusals = ("WebSocket connection to", "ERR_INTERNET_DISCONNECTED", "ERR_CONNECTION_REFUSED")
    try:
        async with opened(browser, first, d.distributor, tolerated=refusals) as board:
            await first.wait_for_subscribers(STREAMS)
            await ok(client, SHIP, {"o": delivered}, token=d.supplier.token)
            await expect(board.feed).to_have_count(1)
            before = await board.feed_event_ids()

            # the socket is cut: the server goes away, and the page is kept off the network
            # until the changes are made (so it cannot pick them up live)
            await first.stop()
            await expect(board.connection).to_have_attribute("data-state", "reconnecting")
            await board.context.set_offline(True)
            await expect(board.connection).to_have_attribute("data-state", "offline")
            restarted = await start_server(first.settings, port=first.port)
            await client.close()
            client = GraphQLHttp(restarted.url)
            await ok(client, SHIP, {"o": shipped}, token=d.supplier.token)
            await ok(client, DELIVER, {"o": delivered}, token=d.supplier.token)
            await ok(client, CANCEL, {"o": unpaid}, token=d.distributor.token)
            # two days on, the order still waiting to ship is late: a breach, on a stream
            # that had seen no event of its own before the cut
            opened_breaches, _ = await sla.sweep(now=datetime.now(UTC) + timedelta(days=3))
            assert any(b.subject_id == int(late.rsplit("/", 1)[1]) for b in opened_breaches)
            meanwhile = await events_after(client, d.distributor, cursor_of(before[-1]))
            assert [e["type"] for e in meanwhile] == [
                "ORDER_STATUS_CHANGED",  # shipped
                "ORDER_STATUS_CHANGED",  # delivered
                "ORDER_STATUS_CHANGED",  # cancelled
                "SLA_BREACH_OPENED",  # the late order, the distributor's own breach
            ], meanwhile
            # nothing reached the page: it has no subscription on the new server yet
            assert restarted.app.state.live.listening_subscriptions == 0
            assert await board.feed_event_ids() == before

            await board.context.set_offline(False)
            await expect(board.connection).to_have_attribute(
                "data-state", "connected", timeout=TIMEOUT_MS
            )
            await expect(board.feed).to_have_count(1 + len(meanwhile), timeout=TIMEOUT_MS)
            assert await board.feed_event_ids() == before + [e["id"] for e in meanwhile]
            await expect(board.tab_count("FULFILLED")).to_have_text("1")
            await expect(board.tab_count("SHIPPED")).to_have_text("1")
            await expect(board.tab_count("CANCELLED")).to_have_text("1")
            await expect(board.tab_count("AWAITING_SHIPPING")).to_have_text("1")
            await expect(board.breaches_of(late)).to_have_count(1)

            # and live again: the next change arrives once
            await ok(client, SHIP, {"o": late}, token=d.supplier.token)
            await expect(board.breaches_of(late)).to_have_count(0, timeout=TIMEOUT_MS)
            history = await events_after(client, d.distributor)
            everything = history[[e["id"] for e in history].index(before[0]) :]
            await expect(board.feed).to_have_count(len(everything))
            assert await board.feed_event_ids() == [e["id"] for e in everything]
    finally:
        await client.close()
        if restarted is not None:
            await restarted.stop()


# --- layout ---------------------------------------------------------------------------------------


async def test_the_page_fits_a_desktop_and_a_phone_screen(
    browser: Any, make_server: ServerFactory, make_member: MakeMember, sim: WarehouseSim
) -> None:
    """Screenshots of a busy dashboard at 1280x800 and 390x844, in ``tests/artifacts/``; on
    the phone nothing is wider than the screen (the status tabs scroll within their row)."""
    server = await make_server(**FAST_WAREHOUSE)
    client = GraphQLHttp(server.url)
    try:
        d = await partnered(client, make_member, sim)
        for _ in range(3):
            await paid_order(client, d)
        await ok(client, SHIP, {"o": await paid_order(client, d)}, token=d.supplier.token)
        await manual_order(client, d)
        await sla.sweep(now=datetime.now(UTC) + timedelta(days=3))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

        for name, viewport, mobile in (("desktop", DESKTOP, False), ("phone", PHONE, True)):
            failed = await failed_withdrawal(client, d, sim)
            to_ship = await paid_order(client, d)
            async with opened(
                browser, server, d.distributor, viewport=viewport, mobile=mobile
            ) as board:
                page = board.page
                await expect(board.withdrawal(failed).locator("button[data-action]")).to_have_count(
                    3
                )
                await expect(page.locator("#breaches > li").first).to_be_visible()
                await expect(page.locator("#chart rect.bar").first).to_be_visible()
                await server.wait_for_subscribers(STREAMS)
                await ok(client, SHIP, {"o": to_ship}, token=d.supplier.token)  # a live change
                shipped = f'#feed > li[data-order-id="{to_ship}"][data-status="SHIPPED"]'
                await expect(page.locator(shipped)).to_have_count(1)
                await board.order_row(to_ship).page.locator("#tab-SHIPPED").click()
                await board.order_row(to_ship).get_by_role("button").click()
                await expect(page.locator("#timeline > li").last).to_have_attribute(
                    "data-to", "SHIPPED"
                )
                await page.locator("#tab-AWAITING_SHIPPING").click()
                widths = await page.evaluate(
                    "() => [document.documentElement.scrollWidth, window.innerWidth]"
                )
                assert widths[0] <= widths[1], f"{name}: the page is {widths[0]} px wide"
                wider = await page.evaluate(
                    """() => [...document.querySelectorAll("main *, header *")]
                      .filter((el) => el.closest(".tabs") === null || el.matches(".tabs"))
                      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
                      .map((el) => el.tagName + "." + el.className)"""
                )
                assert wider == [], f"{name}: {wider}"
                path = ARTIFACTS / f"dashboard-{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                assert path.stat().st_size > 10_000
    finally:
        await client.close()


async def failed_withdrawal(client: GraphQLHttp, d: Distribution, sim: WarehouseSim) -> str:
    """A pushed order whose withdraw the warehouse refused (WITHDRAW_FAILED, unresolved)."""
    order_id = await pushed_order(client, d)
    await sim.faults(refuse_cancel=True)
    failed = (await withdraw(client, d.distributor.token, order_id))["withdrawal"]["id"]
    await both_sides(client, d, order_id, withdrawal_is("WITHDRAW_FAILED"))
    await sim.faults(reset=True)
    return failed
