"""What the demo world is made of, part by part (``service.demo`` runs the parts in order).

Each ``ensure_*`` function looks for its part first and makes it only when it is missing,
through the domain layer as the API would: the organisations, catalogue, partnership, store and
warehouses by their names; the orders of a part by what the part leaves last and usage never
undoes (an order of the seller shipped more than ten days ago, a stocking order, a withdraw of
the distributor's that the warehouse refused): a part interrupted half-way is made again whole.
What it makes or puts right is noted in ``World.made``, the orders it places in
``World.orders``. The parts that call the store or the warehouse go through the served
instance (``World.url``): its simulators' control endpoints (``/_demo/.../_sim/...``), and its
workers, whose outcomes ``World.until`` waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from domain.access import Viewer
from domain.after_sales import commands as after_sales
from domain.catalogue import commands as catalogue
from domain.catalogue import links as product_links
from domain.catalogue.models import LogisticsMethod, Sku
from domain.distribution import partnerships, pushes, withdrawals
from domain.distribution.models import (
    DistributionWarehouse,
    Partnership,
    PartnershipStatus,
    PushStatus,
    ThirdPartyWarehouse,
    WarehouseOrder,
    Withdrawal,
    WithdrawalStatus,
)
from domain.errors import DomainError, ErrorCode
from domain.orders import fulfilment
from domain.orders import intake as order_intake
from domain.orders.models import DeputeOutcome, DeputeType, Order, OrderLine, OrderStatus
from domain.organisations import commands as organisations
from domain.organisations import queries as organisation_queries
from domain.organisations.models import Organisation, OrganisationKind, User
from domain.payments import commands as payments
from domain.stock import commands as stock
from domain.stock.models import CloudWarehouse
from domain.stores import commands as stores
from domain.stores.models import ProductLink, Store, StorePlatform, StoreProduct, StoreVariant
from integrations.stores.sync import sync_store
from service.demo_simulators import (
    STORE_PATH,
    STORE_PRODUCTS,
    WAREHOUSE_PATH,
    credentials,
)

T = TypeVar("T")

# -- the organisations and what they hold -------------------------------------------------------


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
THIRD_PARTY_WAREHOUSE_NAME = "Demo warehouse (simulator)"
THIRD_PARTY_PROVIDER = "SimWMS"
STORE_NAME = "Demo Seller shop"
CLOUD_WAREHOUSE_NAME = "Demo cloud warehouse — Felixstowe"
CLOUD_WAREHOUSE_ADDRESS = {
    "name": "Demo cloud warehouse",
    "address1": "1 Dock Road",
    "city": "Felixstowe",
    "zip": "IP11 3SY",
    "country_code": "GB",
}
STOCK = (("DEMO-TEE-BLK-M", 12), ("DEMO-TEE-WHT-M", 8))  # (SKU, units) stocked in
TOP_UP = Decimal("1000.00")
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
STORE_CUSTOMERS = (  # (customer, shipping address) of the orders placed in the store
    (
        {"first_name": "Katherine", "last_name": "Johnson"},
        {**ADDRESSES[1], "name": "Katherine Johnson"},
    ),
    ({"first_name": "Alan", "last_name": "Turing"}, {**ADDRESSES[0], "name": "Alan Turing"}),
)
LATE_PAID_AGE = timedelta(days=3)  # past PAID_NOT_SHIPPED's 48 h
LATE_SHIPPED_AGE = timedelta(days=11)  # past SHIPPED_NOT_DELIVERED's 10 days
SHIPPED_LONG_AGO = timedelta(days=10)  # what marks the seller's orders as made
LATE_PAID = "paid three days ago: PAID_NOT_SHIPPED at the next service-level sweep"
LATE_SHIPPED = "shipped eleven days ago: SHIPPED_NOT_DELIVERED at the next sweep"
HELD = "held by the supplier: ABNORMAL"
REFUNDED = "arrived damaged, refunded in full after a depute: REFUNDED"
STORE_RECOGNISED = "from the store, its tee connected: to pay"
STORE_UNRECOGNISED = "from the store, its mug connected to nothing: UNRECOGNIZED"
STOCKED = "stocking order, received into the cloud warehouse"
WITHDRAWN = "withdrawn before any push: WITHDRAWN (order cancelled, refunded)"
RETURNED = "delivered, one item returned: after-sales order REQUESTED"
PUSHED = "pushed to the demo warehouse: RECEIVED there"
REFUSED = "pushed and picked; the warehouse refused its withdraw: WITHDRAW_FAILED"
WAIT_SECONDS = 120.0  # for an outcome of the served instance's worker (30 s sweeps on SQLite)
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class DemoCatalogue:
    product_id: int
    sku_ids: tuple[int, ...]
    method_id: int

    def sku(self, code: str) -> int:
        return self.sku_ids[SKU_CODES.index(code)]


@dataclass(frozen=True)
class SeededOrder:
    buyer: DemoOrganisation
    order_id: int
    number: str
    status: OrderStatus
    note: str = ""


def viewer_of(user: User, kind: OrganisationKind) -> Viewer:
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


async def owner(org: DemoOrganisation, *, create: bool) -> User:
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


async def viewers() -> tuple[Viewer, Viewer, Viewer]:
    users = [await owner(org, create=False) for org in ORGANISATIONS]
    supplier, seller, distributor = (
        viewer_of(user, org.kind) for user, org in zip(users, ORGANISATIONS, strict=True)
    )
    return supplier, seller, distributor


# -- the parts ---------------------------------------------------------------------------------


class World:
    """One run: the owners, the served instance (``url``) and its simulators' control endpoints
    (``http``), what the run made (``made``) and the orders it placed."""

    def __init__(
        self, *, url: str, now: datetime, http: httpx.AsyncClient, viewers: tuple[Viewer, ...]
    ) -> None:
        self.url = url
        self.now = now
        self.http = http
        self.supplier, self.seller, self.distributor = viewers
        self.made: list[str] = []
        self.orders: list[SeededOrder] = []
        self._simulators_checked = False

    def note(self, org: DemoOrganisation, order: Order, status: OrderStatus, note: str) -> None:
        """Record an order the run placed (again, when it moved on)."""
        seeded = SeededOrder(org, order.id, order.number, status, note)
        for i, known in enumerate(self.orders):
            if known.order_id == order.id:
                self.orders[i] = seeded
                return
        self.orders.append(seeded)

    async def control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to a simulator's control endpoint (``/_demo/.../_sim/...``); its answer."""
        await self._check_simulators()
        response = await self.http.post(path, json=body)
        if response.status_code >= 300:
            raise DomainError(
                ErrorCode.UPSTREAM_FAILED,
                f"The demo's simulator answered {path} with {response.status_code}: "
                f"{response.text[:300]}",
            )
        answer: dict[str, Any] = response.json()
        return answer

    async def _check_simulators(self) -> None:
        if self._simulators_checked:
            return
        response = await self.http.get(f"{WAREHOUSE_PATH}/_sim/effects")
        if response.status_code != 200:
            raise DomainError(
                ErrorCode.UPSTREAM_FAILED,
                f"The server at {self.url} does not serve the demo's simulators "
                f"({WAREHOUSE_PATH} answers {response.status_code}): restart it with DEMO=true "
                "(`make run` does), or stop it and seed again.",
            )
        self._simulators_checked = True

    async def until(
        self, read: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, what: str
    ) -> T:
        """Poll ``read`` until ``done`` holds for its value: an outcome of the served
        instance's worker."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while True:
            value = await read()
            if done(value):
                return value
            if loop.time() > deadline:
                raise DomainError(
                    ErrorCode.UPSTREAM_FAILED,
                    f"{what} did not happen within {WAIT_SECONDS:g} s: is the server at "
                    f"{self.url} running, with its warehouse worker?",
                )
            await asyncio.sleep(POLL_SECONDS)


async def ensure_catalogue(world: World) -> DemoCatalogue:
    """The demo product and logistics method, created once."""
    supplier = world.supplier

    async def skus() -> dict[str, Sku]:
        found = Sku.filter(supplier_id=supplier.organisation_id, code__in=SKU_CODES)
        return {s.code: s for s in await found}

    made = await skus()
    if not made:
        await catalogue.create_product(
            viewer=supplier, title=PRODUCT_TITLE, description=PRODUCT_DESCRIPTION, skus=list(SKUS)
        )
        made = await skus()
        world.made.append("the catalogue")
    method = await LogisticsMethod.get_or_none(
        supplier_id=supplier.organisation_id, name=METHOD_NAME
    )
    if method is None:
        method = await catalogue.create_logistics_method(
            viewer=supplier, name=METHOD_NAME, min_days=4, max_days=9, rules=list(FREIGHT_RULES)
        )
        world.made.append("the logistics method")
    ordered = [made[code] for code in SKU_CODES if code in made]
    return DemoCatalogue(
        product_id=ordered[0].product_id,
        sku_ids=tuple(s.id for s in ordered),
        method_id=method.id,
    )


async def ensure_partnership(world: World) -> Partnership:
    """The distributor's partnership with the supplier, ACCEPTED, with a second warehouse."""
    supplier, distributor = world.supplier, world.distributor
    found = await Partnership.get_or_none(
        supplier_id=supplier.organisation_id, distributor_id=distributor.organisation_id
    )
    if found is None or found.status is PartnershipStatus.REJECTED:
        found = await partnerships.apply_for_partnership(
            viewer=distributor,
            supplier_id=supplier.organisation_id,
            message="We distribute organic apparel in the UK and the EU.",
        )
        world.made.append("the partnership")
    if found.status is PartnershipStatus.PENDING:
        found = await partnerships.decide_partnership(
            viewer=supplier, partnership_id=found.id, accept=True, note="Welcome aboard."
        )
        world.made.append("the partnership's acceptance")
    if not await DistributionWarehouse.exists(partnership_id=found.id, name=WAREHOUSE_NAME):
        await partnerships.add_distribution_warehouse(
            viewer=distributor,
            partnership_id=found.id,
            name=WAREHOUSE_NAME,
            address=WAREHOUSE_ADDRESS,
        )
        world.made.append("the distribution warehouse")
    return found


class _Orders:
    """Places and moves one buyer's demo orders, noting them in ``world.orders``."""

    def __init__(
        self, world: World, *, buyer: Viewer, org: DemoOrganisation, shop: DemoCatalogue
    ) -> None:
        self.world = world
        self.supplier = world.supplier
        self.buyer = buyer
        self.org = org
        self.shop = shop
        self.placed = 0

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

    async def pay(self, order: Order) -> None:
        """Pay from the wallet, topping it up first when it is short (usage spent it)."""
        try:
            await payments.pay_orders(
                viewer=self.buyer, order_ids=[order.id], logistics_method_id=self.shop.method_id
            )
        except DomainError as error:
            if error.code is not ErrorCode.INSUFFICIENT_FUNDS:
                raise
            await self.top_up()
            await payments.pay_orders(
                viewer=self.buyer, order_ids=[order.id], logistics_method_id=self.shop.method_id
            )

    def note(self, order: Order, status: OrderStatus, note: str = "") -> None:
        self.world.note(self.org, order, status, note)

    async def place(self, *, note: str = "") -> Order:
        n = self.placed
        self.placed += 1
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
        self.note(order, OrderStatus.AWAITING_PAYMENT, note)
        return order

    async def paid(self, *, note: str = "") -> Order:
        order = await self.place(note=note)
        await self.pay(order)
        self.note(order, OrderStatus.AWAITING_SHIPPING, note)
        return order

    async def shipped(self, *, note: str = "") -> Order:
        order = await self.paid(note=note)
        await fulfilment.ship_order(
            viewer=self.supplier,
            order_id=order.id,
            carrier="Royal Mail",
            tracking_number=f"RM{order.id:09d}GB",
        )
        self.note(order, OrderStatus.SHIPPED, note)
        return order

    async def delivered(self, *, note: str = "") -> Order:
        order = await self.shipped(note=note)
        await fulfilment.mark_delivered(viewer=self.supplier, order_id=order.id)
        self.note(order, OrderStatus.FULFILLED, note)
        return order

    async def cancelled(self) -> Order:
        order = await self.place()
        await fulfilment.cancel_orders(
            viewer=self.buyer, order_ids=[order.id], reason="the customer changed their mind"
        )
        self.note(order, OrderStatus.CANCELLED)
        return order

    async def held(self) -> Order:
        order = await self.paid(note=HELD)
        await fulfilment.hold_abnormal(
            viewer=self.supplier,
            order_id=order.id,
            reason="the carrier could not verify the address",
        )
        self.note(order, OrderStatus.ABNORMAL, HELD)
        return order

    async def refunded(self) -> Order:
        order = await self.shipped(note=REFUNDED)
        depute = await fulfilment.open_depute(
            viewer=self.buyer,
            order_id=order.id,
            request=fulfilment.DeputeRequest(
                type=DeputeType.DAMAGED,
                reason="arrived damaged",
                description="The parcel was torn open and the tee stained.",
                evidence=[],
                expected_outcome=DeputeOutcome.REFUND,
            ),
        )
        paid = (await Order.get(id=order.id)).paid_amount
        await fulfilment.refund_depute(
            viewer=self.supplier, depute_id=depute.id, amount=paid, note="refunded in full"
        )
        self.note(order, OrderStatus.REFUNDED, REFUNDED)
        return order


async def backdate(*, order_id: int, paid_at: datetime, shipped_at: datetime | None = None) -> None:
    """Move an order's creation, payment (and shipment) back in time, as a migration of old
    data would write them: one queryset update, no event (the next sweep sees it late)."""
    changes: dict[str, datetime] = {"created_at": paid_at - timedelta(hours=1), "paid_at": paid_at}
    if shipped_at is not None:
        changes["shipped_at"] = shipped_at
    await Order.filter(id=order_id).update(**changes)


async def ensure_seller_orders(world: World, shop: DemoCatalogue) -> None:
    """The seller's own orders in every usual status, made once (an order shipped long ago is
    what the part leaves last). Its wallet is topped up after its first order, which makes it
    a trading party of the supplier."""
    seller = world.seller.organisation_id
    if await Order.exists(buyer_id=seller, shipped_at__lte=world.now - SHIPPED_LONG_AGO):
        return
    orders = _Orders(world, buyer=world.seller, org=SELLER, shop=shop)
    await orders.place()
    await orders.top_up()
    await orders.paid()
    await orders.shipped()
    await orders.delivered()
    await orders.cancelled()
    await orders.held()
    await orders.refunded()
    late_paid = await orders.paid(note=LATE_PAID)
    await backdate(order_id=late_paid.id, paid_at=world.now - LATE_PAID_AGE)
    late_shipped = await orders.shipped(note=LATE_SHIPPED)
    await backdate(
        order_id=late_shipped.id,
        paid_at=world.now - LATE_SHIPPED_AGE - timedelta(days=1),
        shipped_at=world.now - LATE_SHIPPED_AGE,
    )
    world.made.append("the seller's orders")


async def ensure_stock(world: World, shop: DemoCatalogue) -> CloudWarehouse:
    """The supplier's cloud warehouse and the seller's stock in it: a stocking order paid,
    shipped and received, made once."""
    supplier = world.supplier
    warehouse = await CloudWarehouse.get_or_none(
        supplier_id=supplier.organisation_id, name=CLOUD_WAREHOUSE_NAME, is_active=True
    )
    if warehouse is None:
        warehouse, _ = await stock.create_cloud_warehouse(
            viewer=supplier, name=CLOUD_WAREHOUSE_NAME, address=CLOUD_WAREHOUSE_ADDRESS
        )
        world.made.append("the cloud warehouse")
    stocked = Order.filter(buyer_id=world.seller.organisation_id, cloud_warehouse_id=warehouse.id)
    if await stocked.exists():
        return warehouse
    orders = _Orders(world, buyer=world.seller, org=SELLER, shop=shop)
    order = await stock.create_stocking_order(
        viewer=world.seller,
        warehouse_id=warehouse.id,
        lines=[order_intake.ManualLine(sku_id=shop.sku(code), quantity=n) for code, n in STOCK],
        logistics_method_id=shop.method_id,
    )
    await orders.pay(order)
    await fulfilment.ship_order(
        viewer=supplier,
        order_id=order.id,
        carrier="DHL Freight",
        tracking_number=f"JD{order.id:010d}",
    )
    await stock.receive_stock(viewer=supplier, order_id=order.id)
    orders.note(order, OrderStatus.FULFILLED, STOCKED)
    world.made.append("the seller's cloud stock")
    return warehouse


@contextlib.contextmanager
def _served_here(api_url: str) -> Iterator[None]:
    """A simulator's address refused by the outbound policy: say which setting allows it."""
    try:
        yield
    except DomainError as error:
        if error.code is not ErrorCode.BAD_USER_INPUT or error.field != "apiUrl":
            raise
        raise DomainError(
            error.code,
            f"{error.message} (the demo's simulators are served at {api_url}: list its host in "
            "OUTBOUND_ALLOWED_HOSTS, as `make run` does)",
            field=error.field,
        ) from None


async def _sync(world: World, store: Store) -> None:
    await sync_store(viewer=world.seller, store_id=store.id)


async def ensure_store(world: World, shop: DemoCatalogue) -> Store:
    """The seller's store at the served store simulator: connected, its products synced, its
    tee connected to the supplier's SKUs, and an order of each product synced in."""
    seller = world.seller
    api_url = world.url + STORE_PATH
    store = await Store.get_or_none(buyer_id=seller.organisation_id, name=STORE_NAME)
    if store is None:
        given = credentials()
        with _served_here(api_url):
            store, _ = await stores.connect_store(
                viewer=seller,
                name=STORE_NAME,
                platform=StorePlatform.SHOPIFY,
                api_url=api_url,
                access_token=given.store_access_token,
                webhook_secret=given.store_webhook_secret,
            )
        world.made.append("the connected store")
    elif store.api_url != api_url:  # the service moved: the store is where it is served now
        await Store.filter(id=store.id).update(api_url=api_url)
        store.api_url = api_url
        world.made.append(f"the store's address ({api_url})")
    if not await StoreProduct.exists(store_id=store.id):
        for product in STORE_PRODUCTS:
            await world.control(f"{STORE_PATH}/_sim/products", product)
        await _sync(world, store)
        world.made.append("the store's products")
    tee = await StoreProduct.get_or_none(store_id=store.id, title=STORE_PRODUCTS[0]["title"])
    if tee is not None and not await ProductLink.exists(store_product_id=tee.id):
        await product_links.connect_product(
            viewer=seller,
            store_product_id=tee.id,
            product_id=shop.product_id,
            logistics_method_id=shop.method_id,
            links=[
                product_links.VariantLink(store_variant_id=v.id, sku_id=shop.sku(v.sku_code))
                for v in await StoreVariant.filter(product_id=tee.id).order_by("id")
                if v.sku_code in SKU_CODES
            ],
        )
        world.made.append("the store's product connection")
    if not await Order.exists(store_id=store.id):
        await _store_orders(world, store)
        world.made.append("the store's orders")
    return store


async def _store_orders(world: World, store: Store) -> None:
    """An order of the tee and one of the mug placed in the store, then synced in."""
    variants = {v.sku_code: v.external_id for v in await StoreVariant.filter(store_id=store.id)}
    currency = (await Organisation.get(id=world.supplier.organisation_id)).currency
    wanted = (("DEMO-TEE-BLK-M", 2, STORE_RECOGNISED), ("MUG-ENAMEL-WHT", 1, STORE_UNRECOGNISED))
    placed: dict[str, str] = {}
    for (sku, quantity, note), (customer, address) in zip(wanted, STORE_CUSTOMERS, strict=True):
        made = await world.control(
            f"{STORE_PATH}/_sim/orders",
            {
                "line_items": [{"variant_id": variants[sku], "quantity": quantity}],
                "currency": currency,
                "customer": customer,
                "shipping_address": address,
            },
        )
        placed[str(made["order"]["id"])] = note
    await _sync(world, store)
    for order in await Order.filter(store_id=store.id, store_order_id__in=list(placed)):
        world.note(SELLER, order, order.status, placed[order.store_order_id or ""])


async def ensure_third_party_warehouse(world: World, partnership: Partnership) -> int:
    """The supplier's third-party warehouse at the served warehouse simulator, running the
    distributor's Leeds warehouse; its id."""
    supplier = world.supplier
    api_url = world.url + WAREHOUSE_PATH
    connection = (
        await ThirdPartyWarehouse.filter(
            supplier_id=supplier.organisation_id, name=THIRD_PARTY_WAREHOUSE_NAME, is_active=True
        )
        .order_by("-id")
        .first()
    )
    if connection is None:
        with _served_here(api_url):
            authorised = await partnerships.authorise_warehouse(
                viewer=supplier,
                provider=THIRD_PARTY_PROVIDER,
                name=THIRD_PARTY_WAREHOUSE_NAME,
                api_url=api_url,
                api_key=credentials().warehouse_api_key,
            )
        connection = authorised.third_party_warehouse
        await _hand_over_secret(world, authorised.callback_secret)
        world.made.append("the third-party warehouse")
    elif connection.api_url != api_url:  # the service moved: so did its warehouse
        await ThirdPartyWarehouse.filter(id=connection.id).update(api_url=api_url)
        await _hand_over_secret(world, connection.callback_secret)
        world.made.append(f"the third-party warehouse's address ({api_url})")
    leeds = await DistributionWarehouse.get(partnership_id=partnership.id, name=WAREHOUSE_NAME)
    if leeds.third_party_warehouse_id != connection.id or partnership.warehouse_id != leeds.id:
        await partnerships.select_distribution_warehouse(
            viewer=supplier,
            partnership_id=partnership.id,
            warehouse_id=leeds.id,
            third_party_warehouse_id=connection.id,
        )
        world.made.append(f'"{WAREHOUSE_NAME}" run by the third-party warehouse')
    return connection.id


async def _hand_over_secret(world: World, secret: str) -> None:
    """Give the warehouse the callback secret the API issued, as its provider's settings page
    would take it."""
    await world.control(f"{WAREHOUSE_PATH}/_sim/config", {"callback_secret": secret})


async def ensure_distributor_orders(world: World, shop: DemoCatalogue, warehouse_id: int) -> None:
    """The distributor's orders, made once (a withdraw the warehouse refused is what the part
    leaves last): paid, withdrawn, returned, pushed, and refused a withdraw at the warehouse."""
    distributor = world.distributor
    refused = Withdrawal.filter(
        distributor_id=distributor.organisation_id, status=WithdrawalStatus.WITHDRAW_FAILED
    )
    if await refused.exists():
        return
    connection = await ThirdPartyWarehouse.get(id=warehouse_id)
    await _hand_over_secret(world, connection.callback_secret)  # it may have restarted since
    orders = _Orders(world, buyer=distributor, org=DISTRIBUTOR, shop=shop)
    await orders.top_up()  # partnered, it trades with the supplier before any order
    await orders.paid(note="paid: push it with pushOrders, or withdraw it")
    withdrawn = await orders.paid(note=WITHDRAWN)
    returned = await orders.delivered(note=RETURNED)
    line = await OrderLine.filter(order_id=returned.id).order_by("id").first()
    assert line is not None
    await after_sales.create_after_sales_order(
        viewer=distributor,
        order_id=returned.id,
        items=[after_sales.ReturnItem(line_id=line.id, quantity=1, reason="wrong size")],
        reason="the customer sent it back",
    )
    pushed = await orders.paid(note=PUSHED)
    picked = await orders.paid(note=REFUSED)
    await pushes.push_orders(viewer=world.supplier, order_ids=[pushed.id, picked.id])
    cancelled = await withdrawals.withdraw_order(
        viewer=distributor, order_id=withdrawn.id, reason="the customer cancelled"
    )
    for order in (pushed, picked):
        await _pushed(world, order)
    reference = (await WarehouseOrder.get(order_id=picked.id)).reference or str(picked.id)
    moved = await world.control(
        f"{WAREHOUSE_PATH}/_sim/outbound/{reference}/advance", {"status": "PICKING"}
    )
    if moved.get("callback_status") != 200:
        raise DomainError(
            ErrorCode.UPSTREAM_FAILED,
            f"The warehouse's PICKING callback for order {picked.number} was answered "
            f"{moved.get('callback_status')}, not 200.",
        )
    failed = await withdrawals.withdraw_order(
        viewer=distributor, order_id=picked.id, reason="the customer cancelled"
    )
    await _withdrawn(world, cancelled)
    outcome = await _withdrawn(world, failed)
    if outcome.status is not WithdrawalStatus.WITHDRAW_FAILED:
        raise DomainError(
            ErrorCode.UPSTREAM_FAILED,
            f"The withdraw of picked order {picked.number} ended {outcome.status.value}, "
            "not WITHDRAW_FAILED.",
        )
    orders.note(withdrawn, (await Order.get(id=withdrawn.id)).status, WITHDRAWN)
    world.made.append("the distributor's orders")


async def _pushed(world: World, order: Order) -> None:
    """Wait until the worker has pushed ``order``; a failed push is the run's failure."""

    async def read() -> WarehouseOrder:
        return await WarehouseOrder.get(order_id=order.id)

    record = await world.until(
        read,
        lambda r: r.push_status in (PushStatus.PUSHED, PushStatus.PUSH_FAILED),
        what=f"The push of order {order.number} to the demo warehouse",
    )
    if record.push_status is PushStatus.PUSH_FAILED:
        raise DomainError(
            ErrorCode.UPSTREAM_FAILED,
            f"The push of order {order.number} to the demo warehouse failed: {record.push_error}",
        )


async def _withdrawn(world: World, withdrawal: Withdrawal) -> Withdrawal:
    """Wait until the worker has applied the outcome of ``withdrawal``."""

    async def read() -> Withdrawal:
        return await Withdrawal.get(id=withdrawal.id)

    return await world.until(
        read,
        lambda w: w.status is not WithdrawalStatus.WITHDRAWING,
        what=f"The outcome of withdraw {withdrawal.id}",
    )


async def late_orders(world: World) -> tuple[int | None, int | None]:
    """The seller's order paid long ago and still to ship, and the one shipped long ago."""
    seller = world.seller.organisation_id
    late_paid = (
        await Order.filter(
            buyer_id=seller,
            status=OrderStatus.AWAITING_SHIPPING,
            paid_at__lte=world.now - LATE_PAID_AGE + timedelta(hours=1),
        )
        .order_by("id")
        .first()
    )
    late_shipped = (
        await Order.filter(buyer_id=seller, shipped_at__lte=world.now - SHIPPED_LONG_AGO)
        .order_by("id")
        .first()
    )
    return (late_paid and late_paid.id, late_shipped and late_shipped.id)
