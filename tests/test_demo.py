"""The demo data (``seed-demo``, ``service/demo.py``) and the traffic simulation (``simulate``,
``service/simulate.py``) against a served instance.

The demo organisations have fixed e-mails and the session shares one database, so they may
exist already (another test, or this one run twice): what is checked is what each run adds, and
that the catalogue, partnership and warehouses are never doubled.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.catalogue.models import LogisticsMethod, Product, Sku
from domain.distribution.models import DistributionWarehouse, Partnership, PartnershipStatus
from domain.orders.models import Order, OrderStatus
from domain.sla import commands as sla
from schema.global_ids import gid
from service import demo, simulate
from tests.support.distribution import eventually
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer

SELLER_STATES = {"AWAITING_PAYMENT", "AWAITING_SHIPPING", "SHIPPED", "FULFILLED", "CANCELLED"}
NODES = """query($ids: [ID!]!) { nodes(ids: $ids) {
  ... on Order { id status paidAt shippedAt }
  ... on Withdrawal { id withdrawalStatus: status failure } } }"""
BREACHES = """query { slaBreaches(filter: {open: true, rules: [PAID_NOT_SHIPPED]}, first: 100) {
  nodes { rule orderId } } }"""


async def nodes(client: GraphQLHttp, ids: list[str], token: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), 100):
        data = await client.data(NODES, {"ids": ids[start : start + 100]}, token=token)
        found += data["nodes"]
    return found


def near(moment: str, expected: datetime) -> bool:
    return abs(datetime.fromisoformat(moment) - expected) < timedelta(minutes=5)


async def test_seed_demo_twice_keeps_one_catalogue_and_adds_orders_in_every_state(
    server: RunningServer, client: GraphQLHttp
) -> None:
    first = await demo.seed_demo()
    second = await demo.seed_demo()
    now = datetime.now(UTC)

    supplier_owner, distributor_owner = (
        await demo.owner_of(demo.SUPPLIER),
        await demo.owner_of(demo.DISTRIBUTOR),
    )
    assert supplier_owner is not None and distributor_owner is not None
    supplier, distributor = supplier_owner.organisation_id, distributor_owner.organisation_id
    assert first.catalogue == second.catalogue
    assert await Product.filter(supplier_id=supplier).count() == 1
    assert await Sku.filter(supplier_id=supplier).count() == len(demo.SKUS)
    assert await LogisticsMethod.filter(supplier_id=supplier).count() == 1
    [partnership] = await Partnership.filter(supplier_id=supplier, distributor_id=distributor)
    assert partnership.status is PartnershipStatus.ACCEPTED
    assert await DistributionWarehouse.filter(partnership_id=partnership.id).count() == 2

    for seeded in (first, second):
        seller = [gid("Order", o.order_id) for o in seeded.orders if o.buyer == demo.SELLER]
        shown = await nodes(client, seller, second.tokens.seller.secret)
        assert {n["status"] for n in shown} == SELLER_STATES
        late_paid, late_shipped = (
            next(n for n in shown if n["id"] == gid("Order", key))
            for key in (seeded.late_paid_order_id, seeded.late_shipped_order_id)
        )
        assert late_paid["status"] == "AWAITING_SHIPPING"
        assert near(late_paid["paidAt"], now - timedelta(days=3))
        assert late_shipped["status"] == "SHIPPED"
        assert near(late_shipped["shippedAt"], now - timedelta(days=11))

    # the distributor's: paid ones, and the withdrawn one WITHDRAWN by the served worker
    mine = [o for o in second.orders if o.buyer == demo.DISTRIBUTOR]
    assert sum(o.status is OrderStatus.AWAITING_SHIPPING for o in mine) >= 2
    [withdrawn] = [o.order_id for o in mine if o.note == demo.WITHDRAWN]

    async def withdrawn_status() -> OrderStatus:
        return (await Order.get(id=withdrawn)).status

    await eventually(withdrawn_status, lambda s: s is OrderStatus.CANCELLED)

    # every token printed works
    for token in second.tokens.all():
        me = await client.data("{ me { organisation { name } } }", token=token.secret)
        assert me["me"]["organisation"]["name"] == token.organisation.name


async def test_simulate_drives_orders_withdrawals_and_breaches_through_the_api(
    server: RunningServer, client: GraphQLHttp
) -> None:
    seeded = await demo.seed_demo()
    tokens = await demo.issue_tokens(name="simulate")
    lines: list[str] = []
    report = await simulate.run(
        url=server.url, tokens=tokens, interval=0, steps=40, seed=7, out=lines.append
    )
    print("\n".join(lines))
    assert report.steps == 40 and report.failures == 0, lines

    as_supplier = seeded.tokens.supplier.secret
    assert len(report.orders) >= 10, lines
    orders = await nodes(client, list(report.touched), as_supplier)
    assert len({o["status"] for o in orders}) >= 4, orders
    withdrawals = await nodes(client, list(report.withdrawals), as_supplier)
    outcomes = {w["withdrawalStatus"] for w in withdrawals}
    assert {"WITHDRAWN", "WITHDRAW_FAILED"} <= outcomes, withdrawals
    assert all(
        "refused" in (w["failure"] or "")
        for w in withdrawals
        if w["withdrawalStatus"] == "WITHDRAW_FAILED"
    )

    # the simulation's tokens and warehouse are gone; the demo deadlines are back
    refused = await client.post("{ me { user { id } } }", token=tokens.supplier.secret)
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    data = await client.data(
        "{ thirdPartyWarehouses(first: 100) { nodes { isActive } } slaRules { rule minutes } }",
        token=as_supplier,
    )
    assert not any(w["isActive"] for w in data["thirdPartyWarehouses"]["nodes"])
    rules = {r["rule"]: r["minutes"] for r in data["slaRules"]}
    assert rules["PAID_NOT_SHIPPED"] == 48 * 60

    # the first sweep opens the breach of the order seeded as paid three days ago
    await sla.sweep(now=datetime.now(UTC))
    breaches = (await client.data(BREACHES, token=as_supplier))["slaBreaches"]["nodes"]
    assert gid("Order", seeded.late_paid_order_id) in {b["orderId"] for b in breaches}
