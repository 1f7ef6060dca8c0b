"""The demo data of ``python main.py seed-demo`` (``make seed``), written through the domain layer.

Three organisations, each with its owner: "Demo Supplier" (SUPPLIER), "Demo Seller" and "Demo
Distributor" (BUYER). ``seed_demo`` makes sure they exist, with

- the supplier's catalogue: one product with four SKUs (colours and sizes, one with a quantity
  tier) and one logistics method with a freight rule for every country (``*``);
- the distributor's partnership with the supplier, accepted, and a second distribution warehouse;
- both buyers' wallets topped up (the seller's once its first order is placed: a supplier tops
  up only buyers it trades with, ``domain.trading``);

and, on every run, adds orders: the seller's in every usual state (AWAITING_PAYMENT,
AWAITING_SHIPPING, SHIPPED, FULFILLED, CANCELLED), one paid three days ago and one shipped eleven
days ago (backdated with a queryset update, as a migration of old data would write them, so the
first service-level sweep opens PAID_NOT_SHIPPED and SHIPPED_NOT_DELIVERED breaches); the
distributor's paid orders, one of them withdrawn (the served instance's worker makes it WITHDRAWN)
and a shipped one with an after-sales return requested.

Catalogue, partnership and warehouse are created once: running it again adds orders and money
only. Tortoise must be initialised by the caller (the CLI opens the database; tests run a server).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.access import Viewer
from domain.after_sales import commands as after_sales
from domain.catalogue import commands as catalogue
from domain.catalogue.models import LogisticsMethod, Sku
from domain.distribution import partnerships, withdrawals
from domain.distribution.models import DistributionWarehouse, Partnership, PartnershipStatus
from domain.errors import DomainError, ErrorCode
from domain.orders import fulfilment
from domain.orders import intake as order_intake
from domain.orders.models import Order, OrderLine, OrderStatus
from domain.organisations import commands as organisations
from domain.organisations import queries as organisation_queries
from domain.organisations import tokens
from domain.organisations.models import ApiToken, Organisation, OrganisationKind, User
from domain.payments import commands as payments


@dataclass(frozen=True)
class DemoOrganisation:
    name: str
    kind: OrganisationKind
    email: str


SUPPLIER = DemoOrganisation("Demo Supplier", OrganisationKind.SUPPLIER, "owner@supplier.demo")
SELLER = DemoOrganisation("Demo Seller", OrganisationKind.BUYER, "owner@seller.demo")
DISTRIBUTOR = DemoOrganisation("Demo Distributor", OrganisationKind.BUYER, "owner@distributor.demo")
ORGANISATIONS = (SUPPLIER, SELLER, DISTRIBUTOR)

PRODUCT_TITLE = "Demo organic cotton tee"
PRODUCT_DESCRIPTION = "Heavyweight organic cotton T-shirt, printed on demand."
SKUS = (
    catalogue.SkuSpec(
        code="DEMO-TEE-BLK-S",
        attributes={"colour": "Black", "size": "S"},
        weight_grams=180,
        unit_price=Decimal("6.50"),
    ),
    catalogue.SkuSpec(
        code="DEMO-TEE-BLK-M",
        attributes={"colour": "Black", "size": "M"},
        weight_grams=200,
        unit_price=Decimal("6.50"),
        tiers=[catalogue.TierSpec(min_quantity=10, unit_price=Decimal("5.90"))],
    ),
    catalogue.SkuSpec(
        code="DEMO-TEE-WHT-M",
        attributes={"colour": "White", "size": "M"},
        weight_grams=200,
        unit_price=Decimal("6.20"),
    ),
    catalogue.SkuSpec(
        code="DEMO-TEE-WHT-L",
        attributes={"colour": "White", "size": "L"},
        weight_grams=230,
        unit_price=Decimal("6.80"),
    ),
)
SKU_CODES = tuple(spec.code for spec in SKUS)
METHOD_NAME = "Demo tracked air mail"
FREIGHT_RULES = (
    catalogue.FreightRuleSpec(
        country_code="*",
        first_weight_grams=500,
        first_price=Decimal("4.00"),
        step_grams=500,
        step_price=Decimal("1.50"),
    ),
)
WAREHOUSE_NAME = "Demo Distributor — Leeds"
WAREHOUSE_ADDRESS = {
    "name": "Demo Distributor Ltd",
    "address1": "Unit 4, Aire Valley Park",
    "city": "Leeds",
    "zip": "LS9 0PS",
    "country_code": "GB",
}
TOP_UP = Decimal("500.00")
ADDRESSES = (
    {
        "name": "Ada Lovelace",
        "address1": "12 St James's Square",
        "city": "London",
        "zip": "SW1Y 4JH",
        "country_code": "GB",
        "phone": "+44 20 7946 0000",
    },
    {
        "name": "Grace Hopper",
        "address1": "350 Fifth Avenue",
        "city": "New York",
        "province": "NY",
        "zip": "10118",
        "country_code": "US",
    },
    {
        "name": "Emmy Noether",
        "address1": "Bunsenstraße 3",
        "city": "Göttingen",
        "zip": "37073",
        "country_code": "DE",
    },
    {
        "name": "Marie Curie",
        "address1": "11 rue Pierre et Marie Curie",
        "city": "Paris",
        "zip": "75005",
        "country_code": "FR",
    },
)
LATE_PAID_AGE = timedelta(days=3)  # past PAID_NOT_SHIPPED's 48 h
LATE_SHIPPED_AGE = timedelta(days=11)  # past SHIPPED_NOT_DELIVERED's 10 days
LATE_PAID = "paid three days ago: PAID_NOT_SHIPPED at the next service-level sweep"
LATE_SHIPPED = "shipped eleven days ago: SHIPPED_NOT_DELIVERED at the next sweep"
WITHDRAWN = "withdrawn: WITHDRAWN once the server's worker has run"
RETURNED = "shipped, one item returned: after-sales order REQUESTED"


@dataclass(frozen=True)
class DemoToken:
    """A token issued for a demo organisation's owner (``secret`` is shown once)."""

    organisation: DemoOrganisation
    token_id: int
    secret: str

    def line(self) -> str:
        org = self.organisation
        return f"{org.name:<18} {org.kind.value:<9} {org.email:<24} token: {self.secret}"


@dataclass(frozen=True)
class DemoTokens:
    supplier: DemoToken
    seller: DemoToken
    distributor: DemoToken

    def all(self) -> tuple[DemoToken, DemoToken, DemoToken]:
        return (self.supplier, self.seller, self.distributor)


@dataclass(frozen=True)
class DemoCatalogue:
    product_id: int
    sku_ids: tuple[int, ...]
    method_id: int


@dataclass(frozen=True)
class SeededOrder:
    buyer: DemoOrganisation
    order_id: int
    number: str
    status: OrderStatus
    note: str = ""


@dataclass(frozen=True)
class Seeded:
    """What one ``seed_demo`` run made or found."""

    tokens: DemoTokens
    catalogue: DemoCatalogue
    partnership_id: int
    orders: tuple[SeededOrder, ...]
    late_paid_order_id: int
    late_shipped_order_id: int

    def summary(self) -> list[str]:
        """Lines describing the run, for the command line."""
        lines = [
            f'catalogue: "{PRODUCT_TITLE}" ({len(self.catalogue.sku_ids)} SKUs), '
            f'logistics method "{METHOD_NAME}" (every country)',
            f"partnership: {SUPPLIER.name} - {DISTRIBUTOR.name} ACCEPTED",
        ]
        for buyer in (SELLER, DISTRIBUTOR):
            counts = Counter(o.status for o in self.orders if o.buyer == buyer)
            shown = ", ".join(f"{s.value} {counts[s]}" for s in OrderStatus if counts[s])
            lines.append(f"orders added for {buyer.name}: {shown}")
        lines += [f"  {o.number} {o.note}" for o in self.orders if o.note]
        return lines


def _viewer(user: User, kind: OrganisationKind) -> Viewer:
    return Viewer(
        user_id=user.id,
        organisation_id=user.organisation_id,
        organisation_kind=kind,
        role=user.role,
        token_id=0,
    )


async def owner_of(org: DemoOrganisation) -> User | None:
    """The demo organisation's owner: the user who founded an organisation of its kind with its
    e-mail. An e-mail is unique within an organisation only, so a tenant's user may have a demo
    address too; it is never taken for the demo's owner (whose tokens ``seed-demo`` prints)."""
    return await organisation_queries.founder(org.email, org.kind)


async def _owner(org: DemoOrganisation, *, create: bool) -> User:
    """The owner of a demo organisation (created with it when missing and ``create``)."""
    user = await owner_of(org)
    if user is not None:
        return user
    if not create:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"{org.name} ({org.email}) does not exist yet: run `make seed` (seed-demo) first.",
        )
    _, user = await organisations.create_organisation(
        name=org.name, kind=org.kind, owner_email=org.email, owner_name=f"{org.name} owner"
    )
    return user


async def issue_tokens(*, name: str, create: bool = False) -> DemoTokens:
    """A new token for each demo owner; without ``create`` the organisations must exist
    (NOT_FOUND otherwise), with it they are created when missing. Earlier tokens of that name
    beyond the newest few are revoked first (through the domain: every instance hears it), so
    seeding again and again never meets ``MAX_ACTIVE_TOKENS_PER_USER``."""
    issued = []
    for org in ORGANISATIONS:
        user = await _owner(org, create=create)
        await _make_room(user, org.kind, name=name)
        token, secret = await tokens.issue_token(user=user, name=name)
        issued.append(DemoToken(organisation=org, token_id=token.id, secret=secret))
    supplier, seller, distributor = issued
    return DemoTokens(supplier=supplier, seller=seller, distributor=distributor)


async def _make_room(user: User, kind: OrganisationKind, *, name: str) -> None:
    keep = tokens.MAX_ACTIVE_TOKENS_PER_USER // 2 - 1
    earlier = await ApiToken.filter(user_id=user.id, name=name, revoked_at__isnull=True).order_by(
        "-id"
    )
    for old in earlier[keep:]:  # revoked as through the API: its event tells every instance
        await tokens.revoke_token(viewer=_viewer(user, kind), token_id=old.id)


async def _viewers() -> tuple[Viewer, Viewer, Viewer]:
    users = [await _owner(org, create=False) for org in ORGANISATIONS]
    supplier, seller, distributor = (
        _viewer(user, org.kind) for user, org in zip(users, ORGANISATIONS, strict=True)
    )
    return supplier, seller, distributor


async def ensure_catalogue(*, supplier: Viewer) -> DemoCatalogue:
    """The demo product and logistics method, created once."""
    skus = {
        s.code: s
        for s in await Sku.filter(supplier_id=supplier.organisation_id, code__in=SKU_CODES)
    }
    if not skus:
        await catalogue.create_product(
            viewer=supplier, title=PRODUCT_TITLE, description=PRODUCT_DESCRIPTION, skus=list(SKUS)
        )
        skus = {
            s.code: s
            for s in await Sku.filter(supplier_id=supplier.organisation_id, code__in=SKU_CODES)
        }
    method = await LogisticsMethod.get_or_none(
        supplier_id=supplier.organisation_id, name=METHOD_NAME
    )
    if method is None:
        method = await catalogue.create_logistics_method(
            viewer=supplier, name=METHOD_NAME, min_days=4, max_days=9, rules=list(FREIGHT_RULES)
        )
    ordered = [skus[code] for code in SKU_CODES if code in skus]
    return DemoCatalogue(
        product_id=ordered[0].product_id,
        sku_ids=tuple(s.id for s in ordered),
        method_id=method.id,
    )


async def ensure_partnership(*, supplier: Viewer, distributor: Viewer) -> Partnership:
    """The distributor's partnership with the supplier, ACCEPTED, with a second warehouse."""
    found = await Partnership.get_or_none(
        supplier_id=supplier.organisation_id, distributor_id=distributor.organisation_id
    )
    if found is None or found.status is PartnershipStatus.REJECTED:
        found = await partnerships.apply_for_partnership(
            viewer=distributor,
            supplier_id=supplier.organisation_id,
            message="We distribute organic apparel in the UK and the EU.",
        )
    if found.status is PartnershipStatus.PENDING:
        found = await partnerships.decide_partnership(
            viewer=supplier, partnership_id=found.id, accept=True, note="Welcome aboard."
        )
    if not await DistributionWarehouse.exists(partnership_id=found.id, name=WAREHOUSE_NAME):
        await partnerships.add_distribution_warehouse(
            viewer=distributor,
            partnership_id=found.id,
            name=WAREHOUSE_NAME,
            address=WAREHOUSE_ADDRESS,
        )
    return found


class _Orders:
    """Places and moves one buyer's demo orders; ``made`` collects them."""

    def __init__(
        self, *, supplier: Viewer, buyer: Viewer, org: DemoOrganisation, shop: DemoCatalogue
    ) -> None:
        self.supplier = supplier
        self.buyer = buyer
        self.org = org
        self.shop = shop
        self.made: list[SeededOrder] = []

    async def top_up(self) -> None:
        """Money into the buyer's wallet with the supplier (the two must trade already)."""
        currency = (await Organisation.get(id=self.supplier.organisation_id)).currency
        await payments.top_up(
            viewer=self.supplier,
            buyer_id=self.buyer.organisation_id,
            amount=TOP_UP,
            currency=currency,
            note="demo top-up",
        )

    async def place(self, *, note: str = "") -> Order:
        n = len(self.made)
        skus = self.shop.sku_ids
        lines = [order_intake.ManualLine(sku_id=skus[n % len(skus)], quantity=1 + n % 3)]
        if n % 2:
            lines.append(order_intake.ManualLine(sku_id=skus[(n + 1) % len(skus)], quantity=1))
        order = await order_intake.create_manual_order(
            viewer=self.buyer,
            lines=lines,
            shipping_address=ADDRESSES[n % len(ADDRESSES)],
            logistics_method_id=self.shop.method_id,
        )
        made = SeededOrder(self.org, order.id, order.number, OrderStatus.AWAITING_PAYMENT, note)
        self.made.append(made)
        return order

    def _now_at(self, order: Order, status: OrderStatus) -> None:
        self.made = [
            dataclasses.replace(o, status=status) if o.order_id == order.id else o
            for o in self.made
        ]

    async def paid(self, *, note: str = "") -> Order:
        order = await self.place(note=note)
        await payments.pay_orders(
            viewer=self.buyer, order_ids=[order.id], logistics_method_id=self.shop.method_id
        )
        self._now_at(order, OrderStatus.AWAITING_SHIPPING)
        return order

    async def shipped(self, *, note: str = "") -> Order:
        order = await self.paid(note=note)
        await fulfilment.ship_order(
            viewer=self.supplier,
            order_id=order.id,
            carrier="Royal Mail",
            tracking_number=f"RM{order.id:09d}GB",
        )
        self._now_at(order, OrderStatus.SHIPPED)
        return order

    async def delivered(self) -> Order:
        order = await self.shipped()
        await fulfilment.mark_delivered(viewer=self.supplier, order_id=order.id)
        self._now_at(order, OrderStatus.FULFILLED)
        return order

    async def cancelled(self) -> Order:
        order = await self.place()
        await fulfilment.cancel_orders(
            viewer=self.buyer, order_ids=[order.id], reason="the customer changed their mind"
        )
        self._now_at(order, OrderStatus.CANCELLED)
        return order


async def backdate(*, order_id: int, paid_at: datetime, shipped_at: datetime | None = None) -> None:
    """Move an order's creation, payment (and shipment) back in time, as a migration of old
    data would write them: one queryset update, no event (the next sweep sees it late)."""
    changes: dict[str, datetime] = {"created_at": paid_at - timedelta(hours=1), "paid_at": paid_at}
    if shipped_at is not None:
        changes["shipped_at"] = shipped_at
    await Order.filter(id=order_id).update(**changes)


async def _seller_orders(orders: _Orders, now: datetime) -> tuple[int, int]:
    """The seller's orders in every usual state; returns (late paid, late shipped) ids. Its
    wallet is topped up after its first order, which makes it a trading party of the supplier."""
    await orders.place()
    await orders.top_up()
    await orders.paid()
    await orders.paid()
    await orders.shipped()
    await orders.delivered()
    await orders.cancelled()
    late_paid = await orders.paid(note=LATE_PAID)
    await backdate(order_id=late_paid.id, paid_at=now - LATE_PAID_AGE)
    late_shipped = await orders.shipped(note=LATE_SHIPPED)
    await backdate(
        order_id=late_shipped.id,
        paid_at=now - LATE_SHIPPED_AGE - timedelta(days=1),
        shipped_at=now - LATE_SHIPPED_AGE,
    )
    return late_paid.id, late_shipped.id


async def _distributor_orders(orders: _Orders) -> None:
    """Paid orders, one withdrawn (its outcome is the served instance's worker's), and a
    shipped one whose customer returns an item. Partnered, it trades with the supplier before
    any order: its wallet is topped up first."""
    await orders.top_up()
    await orders.paid()
    await orders.paid()
    withdrawn = await orders.paid(note=WITHDRAWN)
    await withdrawals.withdraw_order(
        viewer=orders.buyer, order_id=withdrawn.id, reason="the customer cancelled"
    )
    returned = await orders.shipped(note=RETURNED)
    line = await OrderLine.filter(order_id=returned.id).order_by("id").first()
    assert line is not None
    await after_sales.create_after_sales_order(
        viewer=orders.buyer,
        order_id=returned.id,
        items=[after_sales.ReturnItem(line_id=line.id, quantity=1, reason="wrong size")],
        reason="the customer sent it back",
    )


async def seed_demo(*, now: datetime | None = None) -> Seeded:
    """Make sure the demo organisations, catalogue and partnership exist; add orders in every
    state, topping up the buyers' wallets. Returns what it made, with a new token per owner."""
    now = now or datetime.now(UTC)
    issued = await issue_tokens(name="demo", create=True)
    supplier, seller, distributor = await _viewers()
    shop = await ensure_catalogue(supplier=supplier)
    partnership = await ensure_partnership(supplier=supplier, distributor=distributor)
    seller_orders = _Orders(supplier=supplier, buyer=seller, org=SELLER, shop=shop)
    late_paid, late_shipped = await _seller_orders(seller_orders, now)
    distributor_orders = _Orders(supplier=supplier, buyer=distributor, org=DISTRIBUTOR, shop=shop)
    await _distributor_orders(distributor_orders)
    return Seeded(
        tokens=issued,
        catalogue=shop,
        partnership_id=partnership.id,
        orders=tuple(seller_orders.made + distributor_orders.made),
        late_paid_order_id=late_paid,
        late_shipped_order_id=late_shipped,
    )
