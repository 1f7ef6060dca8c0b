"""The demo world of ``python main.py seed-demo`` (``make run``, ``make seed``), made through the
domain layer as the API would make it: this module runs it (``seed_demo``) and issues the demo
tokens; its parts are ``service/demo_world.py``.

**What it holds.** Three organisations, each with its owner: "Demo Supplier" (SUPPLIER), "Demo
Seller" and "Demo Distributor" (BUYER), and

- the supplier's catalogue: one product with four SKUs (colours and sizes, one with a quantity
  tier) and one logistics method with a freight rule for every country (``*``);
- the distributor's partnership with the supplier, accepted, with a second distribution
  warehouse ("Leeds") that the supplier has a third-party warehouse run: the warehouse simulator
  this service serves at ``/_demo/warehouse`` (``service/demo_simulators.py``);
- the seller's store, connected: the store simulator served at ``/_demo/store``, its tee
  connected to the supplier's SKUs and its mug to nothing, and two orders synced in from it: one
  of the tee (AWAITING_PAYMENT), one of the mug (UNRECOGNIZED);
- the seller's own orders in every other status: AWAITING_PAYMENT, AWAITING_SHIPPING, SHIPPED,
  FULFILLED, CANCELLED, ABNORMAL (held by the supplier), REFUNDED (a depute refunded), and one
  paid three days ago and one shipped eleven days ago (backdated with a queryset update, as a
  migration of old data would write them, so the first service-level sweep opens
  PAID_NOT_SHIPPED and SHIPPED_NOT_DELIVERED breaches);
- the seller's stock in the supplier's cloud warehouse: a stocking order paid, shipped and
  received;
- the distributor's orders: one paid, one withdrawn before any push (WITHDRAWN: the order
  CANCELLED and refunded), one delivered with an item's return requested, one pushed to the
  warehouse (RECEIVED there), and one pushed and picked there, whose withdraw the warehouse
  refused (WITHDRAW_FAILED, with its reason);
- both buyers' wallets topped up.

**How it reaches the simulators.** The steps that call a simulator (the store's products and
orders, the pushes and withdraws) need the served instance: its simulators, and its warehouse
worker, which makes the calls and applies their outcomes; the seeding waits for each outcome,
so the world is complete when ``seed_demo`` returns. It works with the instance that answers at
the service's address (``PUBLIC_URL``, else ``HOST:PORT``): the one ``make run`` serves when
``make seed`` runs beside it, or a test's server. When none answers, as when ``make run`` seeds
before it serves, it serves the app itself at that address, with ``DEMO`` on, while it seeds,
and stops it: the server started next serves the same world (its simulators start from the
database). One command, then, and no step left to a server that may not come.

**Idempotent.** Each part of the world is looked for first and made only when missing: the
organisations, catalogue, partnership, store, warehouses by their names; the orders of a part by
what the part leaves last and usage never undoes (an order shipped more than ten days ago for
the seller's orders, a stocking order for the stock, a withdraw the warehouse refused for the
distributor's orders). A second run changes nothing and says so (``Seeded.made`` is empty);
orders that usage moved on (``make simulate``) stay where they are, and a part interrupted
half-way is made again whole. What the demo needs to keep working is put right: the store and
warehouse follow the served address when it moved (another ``PORT`` or ``PUBLIC_URL``), and the
demo warehouse runs the distributor's warehouse again after ``make simulate`` had its own
(revoked at its exit) run it.

**Tokens.** Every run issues a new token per owner and revokes the earlier ones of that name
(through the domain: every instance hears it), so they never pile up.

Tortoise must be initialised by the caller (the CLI opens the database; tests run a server).
"""

from __future__ import annotations

import contextlib
import socket
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from domain.distribution.models import Withdrawal, WithdrawalStatus
from domain.errors import DomainError, ErrorCode
from domain.orders.models import Order, OrderStatus
from domain.organisations import tokens
from domain.organisations.models import ApiToken, OrganisationKind, User
from domain.stock.models import StockItem
from service import embedded_server
from service.demo_simulators import STORE_PATH, WAREHOUSE_PATH, served_url
from service.demo_world import (
    ADDRESSES,
    CLOUD_WAREHOUSE_NAME,
    DISTRIBUTOR,
    METHOD_NAME,
    ORGANISATIONS,
    PRODUCT_TITLE,
    SELLER,
    SKU_CODES,
    SKUS,
    STOCK,
    STORE_NAME,
    SUPPLIER,
    THIRD_PARTY_WAREHOUSE_NAME,
    WAREHOUSE_NAME,
    DemoCatalogue,
    DemoOrganisation,
    SeededOrder,
    World,
    ensure_catalogue,
    ensure_distributor_orders,
    ensure_partnership,
    ensure_seller_orders,
    ensure_stock,
    ensure_store,
    ensure_third_party_warehouse,
    late_orders,
    owner,
    owner_of,
    viewer_of,
    viewers,
)
from service.settings import Settings

__all__ = [  # the entry points, and what the simulation and the tests know of the world
    "ADDRESSES",
    "DISTRIBUTOR",
    "FIRST_QUERY",
    "METHOD_NAME",
    "ORGANISATIONS",
    "PRODUCT_TITLE",
    "SELLER",
    "SKUS",
    "SKU_CODES",
    "STOCK",
    "SUPPLIER",
    "THIRD_PARTY_WAREHOUSE_NAME",
    "TOKEN_NAME",
    "WAREHOUSE_NAME",
    "DemoToken",
    "DemoTokens",
    "Seeded",
    "issue_tokens",
    "owner_of",
    "seed_demo",
    "serving",
]

# ``progress(description, done, total)``: the step under way, and how many of ``total`` are done
Progress = Callable[[str, int, int], None]
TOKEN_NAME = "demo"
# the README's first query, as the seller
FIRST_QUERY = "{ me { organisation { name } } orderCounts { status count } }"
PARTS = (  # the steps of a run, as its progress names them
    "the served instance",
    "organisations and tokens",
    "catalogue",
    "partnership",
    "seller's orders",
    "cloud-warehouse stock",
    "connected store",
    "third-party warehouse",
    "distributor's orders",
)


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
class Seeded:
    """What one ``seed_demo`` run found or made: ``made`` names what it made or put right
    (empty: the world existed and nothing changed; ``fresh``: everything, the demo
    organisations were missing), ``orders`` the orders it placed, and
    ``statuses`` how many orders each demo buyer has in each status now."""

    url: str
    tokens: DemoTokens
    catalogue: DemoCatalogue
    partnership_id: int
    store_id: int
    third_party_warehouse_id: int
    cloud_warehouse_id: int
    stock_units: int
    fresh: bool  # the run made the whole world (the demo organisations were missing)
    made: tuple[str, ...]
    orders: tuple[SeededOrder, ...]
    statuses: dict[str, dict[OrderStatus, int]]
    late_paid_order_id: int | None
    late_shipped_order_id: int | None
    failed_withdrawal_id: int | None

    def summary(self) -> list[str]:
        """Lines describing the world, for the command line (the tokens are printed after)."""
        if self.fresh:
            lines = [f"The demo world was made, at {self.url}:"]
        elif self.made:
            made = "; ".join(self.made)
            lines = [f"The demo world at {self.url}, made or put right:"]
            lines += [f"    {line}" for line in textwrap.wrap(made + ".", width=92)]
        else:
            lines = [f"The demo world exists already at {self.url}: nothing was changed."]
        lines += [
            f'  catalogue: "{PRODUCT_TITLE}" ({len(self.catalogue.sku_ids)} SKUs), '
            f'"{METHOD_NAME}" (every country)',
            f"  partnership: {SUPPLIER.name} - {DISTRIBUTOR.name}, ACCEPTED; "
            f'"{WAREHOUSE_NAME}" run by',
            f"    the warehouse simulator at {self.url}{WAREHOUSE_PATH}",
            f'  store: "{STORE_NAME}" of {SELLER.name}, the store simulator at '
            f"{self.url}{STORE_PATH}",
            f'  cloud stock: {self.stock_units} units of {SELLER.name} in "{CLOUD_WAREHOUSE_NAME}"',
        ]
        for buyer in (SELLER, DISTRIBUTOR):
            counts = self.statuses.get(buyer.name, {})
            shown = ", ".join(f"{s.value} {counts[s]}" for s in OrderStatus if counts.get(s))
            lines.append(f"  orders of {buyer.name}: {shown or 'none'}")
        lines += [f"    {o.number} {o.note}" for o in self.orders if o.note]
        lines += [
            f"First query, as {SELLER.name} (its token below), at {self.url}/graphql:",
            f"  {FIRST_QUERY}",
            "Tokens (the earlier demo tokens are revoked):",
        ]
        return lines


# -- tokens ----------------------------------------------------------------------------------------


async def issue_tokens(*, name: str, create: bool = False) -> DemoTokens:
    """A new token for each demo owner; without ``create`` the organisations must exist
    (NOT_FOUND otherwise), with it they are created when missing. The owner's earlier tokens
    of that name are revoked first (through the domain: every instance hears it), so issuing
    again and again leaves one of them."""
    issued = []
    for org in ORGANISATIONS:
        user = await owner(org, create=create)
        await _revoke_earlier(user, org.kind, name=name)
        token, secret = await tokens.issue_token(user=user, name=name)
        issued.append(DemoToken(organisation=org, token_id=token.id, secret=secret))
    supplier, seller, distributor = issued
    return DemoTokens(supplier=supplier, seller=seller, distributor=distributor)


async def _revoke_earlier(user: User, kind: OrganisationKind, *, name: str) -> None:
    earlier = ApiToken.filter(user_id=user.id, name=name, revoked_at__isnull=True)
    for old in await earlier.order_by("id"):  # revoked as through the API: its event tells all
        await tokens.revoke_token(viewer=viewer_of(user, kind), token_id=old.id)


# -- one run -----------------------------------------------------------------------------------


async def _statuses(buyer_id: int) -> dict[OrderStatus, int]:
    return dict(Counter(await Order.filter(buyer_id=buyer_id).values_list("status", flat=True)))


async def _stock_units(buyer_id: int, warehouse_id: int) -> int:
    items = await StockItem.filter(buyer_id=buyer_id, warehouse_id=warehouse_id)
    return sum(item.on_hand for item in items)


async def _seed(*, url: str, now: datetime, progress: Progress | None) -> Seeded:
    def step(done: int) -> None:
        if progress is not None:
            progress(PARTS[done] if done < len(PARTS) else "done", done, len(PARTS))

    step(1)
    fresh = await owner_of(SUPPLIER) is None
    issued = await issue_tokens(name=TOKEN_NAME, create=True)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        world = World(url=url, now=now, http=http, viewers=await viewers())
        step(2)
        shop = await ensure_catalogue(world)
        step(3)
        partnership = await ensure_partnership(world)
        step(4)
        await ensure_seller_orders(world, shop)
        step(5)
        cloud = await ensure_stock(world, shop)
        step(6)
        store = await ensure_store(world, shop)
        step(7)
        warehouse_id = await ensure_third_party_warehouse(world, partnership)
        step(8)
        await ensure_distributor_orders(world, shop, warehouse_id)
        step(9)
    late_paid, late_shipped = await late_orders(world)
    failed = (
        await Withdrawal.filter(
            distributor_id=world.distributor.organisation_id,
            status=WithdrawalStatus.WITHDRAW_FAILED,
        )
        .order_by("id")
        .first()
    )
    return Seeded(
        url=url,
        tokens=issued,
        catalogue=shop,
        partnership_id=partnership.id,
        store_id=store.id,
        third_party_warehouse_id=warehouse_id,
        cloud_warehouse_id=cloud.id,
        stock_units=await _stock_units(world.seller.organisation_id, cloud.id),
        fresh=fresh,
        made=tuple(world.made),
        orders=tuple(world.orders),
        statuses={
            SELLER.name: await _statuses(world.seller.organisation_id),
            DISTRIBUTOR.name: await _statuses(world.distributor.organisation_id),
        },
        late_paid_order_id=late_paid,
        late_shipped_order_id=late_shipped,
        failed_withdrawal_id=failed and failed.id,
    )


async def _answers(url: str) -> bool:
    """Whether anything answers HTTP at ``url``."""
    async with httpx.AsyncClient(timeout=3) as http:
        try:
            await http.get(f"{url}/healthz")
        except httpx.TransportError:
            return False
    return True


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The app, with ``DEMO`` on, served in this event loop at ``settings``' address until the
    block ends; yields its URL. Its lifespan opens the database for this process (in the
    caller's Tortoise context, re-initialised, when the caller opened one, as the CLI does)
    and closes it at the end."""
    from service.app import create_app

    demo_settings = settings.model_copy(update={"demo": True})
    host = settings.host or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, settings.port))
    except OSError as error:
        sock.close()
        raise DomainError(
            ErrorCode.UPSTREAM_FAILED,
            f"Nothing answers at {served_url(settings)} and {host}:{settings.port} cannot be "
            f"served to seed the demo ({error.strerror}).",
        ) from None
    try:
        async with embedded_server.serving(create_app(demo_settings), sock):
            yield served_url(demo_settings)
    except embedded_server.ServerStopped as error:
        raise DomainError(
            ErrorCode.UPSTREAM_FAILED, f"The demo's server could not be served: {error}."
        ) from error


async def seed_demo(
    *,
    url: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> Seeded:
    """Make sure the demo world exists (see the module docstring) and return it, with a new
    token per owner. ``url``: the served instance to use (a test's server); without it, the one
    at the address ``settings`` (default: from the environment) name, served here for the run
    when nothing answers there. ``progress(description, done, total)`` is called as each step
    starts (and once all are done)."""
    now = now or datetime.now(UTC)
    if url is not None:
        url = url.rstrip("/")
        if not await _answers(url):
            raise DomainError(ErrorCode.UPSTREAM_FAILED, f"Nothing answers at {url}.")
        return await _seed(url=url, now=now, progress=progress)
    settings = settings or Settings.from_env()
    address = served_url(settings)
    if progress is not None:
        progress(f"looking for the server at {address}", 0, len(PARTS))
    if await _answers(address):
        return await _seed(url=address, now=now, progress=progress)
    if progress is not None:
        progress(f"serving the demo at {address} while it is made", 0, len(PARTS))
    async with serving(settings) as served:
        return await _seed(url=served, now=now, progress=progress)
