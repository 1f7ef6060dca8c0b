"""The demo world (``seed-demo``, ``service/demo.py``) with its simulators served by the app
under ``/_demo`` (``DEMO``, ``service/demo_simulators.py``), and the traffic simulation
(``simulate``, ``service/simulate.py``) against a served instance.

The demo organisations have fixed e-mails and the session shares one database, so the world
may exist already (another test made it, against a server since stopped): what is checked is
that it is complete after a run, and that a second run changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.after_sales.models import AfterSalesOrder
from domain.catalogue.models import LogisticsMethod, Product, Sku
from domain.distribution.models import (
    DistributionWarehouse,
    Partnership,
    PartnershipStatus,
    ThirdPartyWarehouse,
    WarehouseOrder,
    Withdrawal,
)
from domain.orders.models import Order, OrderKind, OrderStatus
from domain.organisations.models import ApiToken
from domain.sla import commands as sla
from domain.stock.models import CloudWarehouse, StockItem
from domain.stores.models import ProductLink, Store, StoreProduct
from integrations.stores.protocol import API_PREFIX as STORE_API
from integrations.stores.protocol import HEADER_ACCESS_TOKEN
from integrations.warehouses.protocol import HEADER_API_KEY, PATH_OUTBOUND_ORDERS
from schema.global_ids import gid
from service import demo, simulate
from service.demo_simulators import (
    STORE_PATH,
    STORE_PRODUCTS,
    WAREHOUSE_PATH,
    DemoSimulators,
    credentials,
)
from tests.conftest import ServerFactory
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer

EVERY_STATUS = {status.value for status in OrderStatus}
NODES = """query($ids: [ID!]!) { nodes(ids: $ids) {
  ... on Order { id status paidAt shippedAt }
  ... on Withdrawal { id withdrawalStatus: status failure } } }"""
BREACHES = """query { slaBreaches(filter: {open: true, rules: [PAID_NOT_SHIPPED]}, first: 100) {
  nodes { rule orderId } } }"""
COUNTS = "{ orderCounts { status count } }"
INVENTORY = "{ inventory { nodes { onHand sku { code } } } }"
WITHDRAWALS = "{ withdrawals(first: 100) { nodes { status failure } } }"


@pytest.fixture
async def demo_server(make_server: ServerFactory) -> RunningServer:
    """A server with the demo's simulators mounted (``DEMO`` on)."""
    return await make_server(demo=True)


@pytest.fixture
async def demo_client(demo_server: RunningServer) -> Any:
    http = GraphQLHttp(demo_server.url)
    yield http
    await http.close()


async def nodes(client: GraphQLHttp, ids: list[str], token: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), 100):
        data = await client.data(NODES, {"ids": ids[start : start + 100]}, token=token)
        found += data["nodes"]
    return found


def near(moment: str, expected: datetime) -> bool:
    return abs(datetime.fromisoformat(moment) - expected) < timedelta(minutes=5)


async def world_rows(seeded: demo.Seeded) -> dict[str, int]:
    """How many rows of each kind the demo organisations have."""
    owners = [await demo.owner_of(org) for org in demo.ORGANISATIONS]
    supplier, seller, distributor = (owner.organisation_id for owner in owners if owner)
    partnership = seeded.partnership_id
    on_hand = await StockItem.filter(buyer_id=seller).values_list("on_hand", flat=True)
    return {
        "products": await Product.filter(supplier_id=supplier).count(),
        "skus": await Sku.filter(supplier_id=supplier).count(),
        "methods": await LogisticsMethod.filter(supplier_id=supplier).count(),
        "partnerships": await Partnership.filter(supplier_id=supplier).count(),
        "distribution warehouses": await DistributionWarehouse.filter(
            partnership_id=partnership
        ).count(),
        "third-party warehouses": await ThirdPartyWarehouse.filter(supplier_id=supplier).count(),
        "cloud warehouses": await CloudWarehouse.filter(supplier_id=supplier).count(),
        "stores": await Store.filter(buyer_id=seller).count(),
        "store products": await StoreProduct.filter(store__buyer_id=seller).count(),
        "product links": await ProductLink.filter(buyer_id=seller).count(),
        "seller orders": await Order.filter(buyer_id=seller).count(),
        "distributor orders": await Order.filter(buyer_id=distributor).count(),
        "warehouse orders": await WarehouseOrder.filter(supplier_id=supplier).count(),
        "withdrawals": await Withdrawal.filter(distributor_id=distributor).count(),
        "returns": await AfterSalesOrder.filter(distributor_id=distributor).count(),
        "units in stock": sum(on_hand),
        "active demo tokens": await ApiToken.filter(
            name=demo.TOKEN_NAME,
            revoked_at__isnull=True,
            organisation_id__in=[supplier, seller, distributor],
        ).count(),
    }


async def test_seed_demo_makes_the_whole_world_once(
    demo_server: RunningServer, demo_client: GraphQLHttp
) -> None:
    first = await demo.seed_demo(url=demo_server.url)
    made = await world_rows(first)
    second = await demo.seed_demo(url=demo_server.url)
    now = datetime.now(UTC)

    # the second run finds everything and changes nothing (but the tokens: new ones, one each)
    assert second.made == () and second.orders == (), second.made
    assert await world_rows(second) == made
    assert made["active demo tokens"] == 3
    assert "nothing was changed" in second.summary()[0]
    assert (first.catalogue, first.store_id, first.third_party_warehouse_id) == (
        second.catalogue,
        second.store_id,
        second.third_party_warehouse_id,
    )
    assert made["products"] == 1 and made["skus"] == len(demo.SKUS) and made["methods"] == 1
    assert made["partnerships"] == 1 and made["distribution warehouses"] == 2
    [partnership] = await Partnership.filter(id=second.partnership_id)
    assert partnership.status is PartnershipStatus.ACCEPTED

    tokens = second.tokens
    # every printed token works; the earlier run's are revoked
    for token in tokens.all():
        me = await demo_client.data("{ me { organisation { name } } }", token=token.secret)
        assert me["me"]["organisation"]["name"] == token.organisation.name
    refused = await demo_client.post("{ me { user { id } } }", token=first.tokens.seller.secret)
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # the seller's orders: every status there is, the store's among them
    counts = (await demo_client.data(COUNTS, token=tokens.seller.secret))["orderCounts"]
    assert {c["status"] for c in counts if c["count"]} == EVERY_STATUS
    store = await Store.get(id=second.store_id)
    assert store.api_url == demo_server.url + STORE_PATH
    from_store = await Order.filter(store_id=store.id)
    assert {o.status for o in from_store} >= {
        OrderStatus.AWAITING_PAYMENT,
        OrderStatus.UNRECOGNIZED,
    }
    assert all(o.kind is OrderKind.STORE for o in from_store)
    late_paid, late_shipped = await nodes(
        demo_client,
        [gid("Order", second.late_paid_order_id), gid("Order", second.late_shipped_order_id)],
        tokens.seller.secret,
    )
    assert late_paid["status"] == "AWAITING_SHIPPING"
    assert near(late_paid["paidAt"], now - timedelta(days=3))
    assert late_shipped["status"] == "SHIPPED"
    assert near(late_shipped["shippedAt"], now - timedelta(days=11))

    # the seller's stock in the cloud warehouse
    stock = (await demo_client.data(INVENTORY, token=tokens.seller.secret))["inventory"]["nodes"]
    assert sum(item["onHand"] for item in stock) >= sum(n for _, n in demo.STOCK)
    assert second.stock_units >= sum(n for _, n in demo.STOCK)

    # the distributor's: a withdraw done, one the warehouse refused, orders at the warehouse
    shown = await demo_client.data(WITHDRAWALS, token=tokens.distributor.secret)
    outcomes = {w["status"]: w["failure"] for w in shown["withdrawals"]["nodes"]}
    assert "WITHDRAWN" in outcomes
    assert "refused" in outcomes["WITHDRAW_FAILED"]
    connection = await ThirdPartyWarehouse.get(id=second.third_party_warehouse_id)
    assert connection.is_active and connection.api_url == demo_server.url + WAREHOUSE_PATH
    leeds = await DistributionWarehouse.get(partnership_id=partnership.id, name=demo.WAREHOUSE_NAME)
    assert partnership.warehouse_id == leeds.id
    assert leeds.third_party_warehouse_id == connection.id
    async with httpx.AsyncClient(base_url=demo_server.url) as http:
        state = (await http.get(f"{WAREHOUSE_PATH}/_sim/state")).json()
    at_warehouse = {o["status"] for o in state["outbound"]}
    assert {"RECEIVED", "PICKING"} <= at_warehouse, state


async def test_a_restarted_server_s_simulators_start_from_the_database(
    demo_server: RunningServer,
) -> None:
    """The simulators remember nothing across a restart: new ones, as the next server builds
    them, know the store's products and the orders at the warehouse, and sign with its secret."""
    seeded = await demo.seed_demo(url=demo_server.url)
    restarted = DemoSimulators(demo_server.settings)
    given = credentials()
    transport = httpx.ASGITransport(app=restarted)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as http:
        store = (
            await http.get(
                f"/store{STORE_API}/products.json",
                headers={HEADER_ACCESS_TOKEN: given.store_access_token},
            )
        ).json()
        stored = await StoreProduct.filter(store_id=seeded.store_id)
        assert {(p["id"], p["title"]) for p in store["products"]} == {
            (int(p.external_id), p.title) for p in stored
        }
        assert {v["sku"] for p in store["products"] for v in p["variants"]} == {
            v["sku"] for p in STORE_PRODUCTS for v in p["variants"]
        }
        # a new store order gets an id after every one the store gave before
        [tee] = [p for p in store["products"] if p["title"] == STORE_PRODUCTS[0]["title"]]
        placed = await http.post(
            "/store/_sim/orders",
            json={"line_items": [{"variant_id": tee["variants"][0]["id"], "quantity": 1}]},
        )
        known = await Order.filter(store_id=seeded.store_id).values_list(
            "store_order_id", flat=True
        )
        assert placed.json()["order"]["id"] > max(int(k) for k in known if k)

        failed = await Withdrawal.get(id=seeded.failed_withdrawal_id)
        record = await WarehouseOrder.get(order_id=failed.order_id)
        answer = await http.get(
            f"/warehouse{PATH_OUTBOUND_ORDERS}/{record.reference}",
            headers={HEADER_API_KEY: given.warehouse_api_key},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == record.warehouse_order_id
        assert answer.json()["status"] == "PICKING"
    connection = await ThirdPartyWarehouse.get(id=seeded.third_party_warehouse_id)
    assert restarted.warehouse is not None
    assert restarted.warehouse.state.simulator.secret == connection.callback_secret


async def test_simulate_drives_orders_withdrawals_and_breaches_through_the_api(
    demo_server: RunningServer, demo_client: GraphQLHttp
) -> None:
    seeded = await demo.seed_demo(url=demo_server.url)
    tokens = await demo.issue_tokens(name="simulate")
    lines: list[str] = []
    report = await simulate.run(
        url=demo_server.url, tokens=tokens, interval=0, steps=40, seed=7, out=lines.append
    )
    print("\n".join(lines))
    assert report.steps == 40 and report.failures == 0, lines

    as_supplier = seeded.tokens.supplier.secret
    assert len(report.orders) >= 10, lines
    orders = await nodes(demo_client, list(report.touched), as_supplier)
    assert len({o["status"] for o in orders}) >= 4, orders
    withdrawals = await nodes(demo_client, list(report.withdrawals), as_supplier)
    outcomes = {w["withdrawalStatus"] for w in withdrawals}
    assert {"WITHDRAWN", "WITHDRAW_FAILED"} <= outcomes, withdrawals
    assert all(
        "refused" in (w["failure"] or "")
        for w in withdrawals
        if w["withdrawalStatus"] == "WITHDRAW_FAILED"
    )

    # the simulation's tokens and warehouse are gone, the demo's warehouse stays; the demo
    # deadlines are back
    refused = await demo_client.post("{ me { user { id } } }", token=tokens.supplier.secret)
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    data = await demo_client.data(
        "{ thirdPartyWarehouses(first: 100) { nodes { name isActive } } "
        "slaRules { rule minutes } }",
        token=as_supplier,
    )
    active = {w["name"] for w in data["thirdPartyWarehouses"]["nodes"] if w["isActive"]}
    assert active == {demo.THIRD_PARTY_WAREHOUSE_NAME}
    rules = {r["rule"]: r["minutes"] for r in data["slaRules"]}
    assert rules["PAID_NOT_SHIPPED"] == 48 * 60

    # the first sweep opens the breach of the order seeded as paid three days ago
    await sla.sweep(now=datetime.now(UTC))
    breaches = (await demo_client.data(BREACHES, token=as_supplier))["slaBreaches"]["nodes"]
    assert gid("Order", seeded.late_paid_order_id) in {b["orderId"] for b in breaches}

    # the simulation had its own warehouse run the distributor's: seeding again puts the demo's
    # back, and makes nothing else
    again = await demo.seed_demo(url=demo_server.url)
    assert again.made == (f'"{demo.WAREHOUSE_NAME}" run by the third-party warehouse',)
    leeds = await DistributionWarehouse.get(
        partnership_id=seeded.partnership_id, name=demo.WAREHOUSE_NAME
    )
    assert leeds.third_party_warehouse_id == seeded.third_party_warehouse_id
