"""The demo world's store and warehouse, served by the app itself under ``/_demo/`` when
``DEMO`` is on (``make run``), so that the demo needs no process beside the server.

- ``/_demo/store``: the store simulator (``integrations/stores/simulator.py``), the demo
  seller's connected store;
- ``/_demo/warehouse``: the warehouse simulator (``integrations/warehouses/simulator.py``), the
  third-party warehouse that runs the demo distributor's distribution warehouse.

Each speaks its protocol and answers its control endpoints (``/_sim/...``, listed in its
module) as when it runs alone: ``POST /_demo/warehouse/_sim/outbound/{reference}/advance``
moves a pushed order on, ``POST /_demo/store/_sim/orders`` places a store order.

**Credentials.** ``credentials()`` derives the store's access token and webhook secret and the
warehouse's API key from the secrets key (``domain.secrets.derived_key``): the mount and
``service.demo``, which stores them with the demo's store and warehouse, compute the same
values in any process keyed alike, so nothing else is shared. The warehouse's callback secret
is the one the API issued when the demo warehouse was authorised (shown once): the seeding
hands it to the simulator (``/_sim/config``), as a provider's settings page would take it, and
the mount reads it back from the database when it starts.

**Memory.** A simulator keeps its state in memory; a restarted server would have forgotten the
store's products and the warehouse's orders its database refers to. So the mount is built at
its first request (after the lifespan has opened the database and configured the key) from what
the database says: the products and variants of the stores connected at this instance's
``/_demo/store`` (with their ids; new ids come after the highest the store ever gave), and the
orders pushed to the warehouse at its ``/_demo/warehouse`` (with their warehouse ids and
statuses). Returns at the warehouse are not restored.

**Calls back.** The simulators call this service back (store webhooks, warehouse callbacks) at
the addresses they are given, which are this process: their handlers are async, so a control
request that sends a callback awaits this process's answer while the loop serves it.

One process: with several uvicorn workers each would have simulators of its own; the demo is
served by one (``WORKERS=1``, the default).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

from domain.distribution.models import (
    PushStatus,
    ThirdPartyWarehouse,
    WarehouseOrder,
    WithdrawalStatus,
)
from domain.distribution.pushes import outbound_request
from domain.orders.models import Order
from domain.secrets import derived_key
from domain.stores.models import Store, StoreProduct, StoreVariant
from integrations.stores.simulator import SimState as StoreState
from integrations.stores.simulator import create_store_simulator
from integrations.warehouses.protocol import OutboundItem, format_time
from integrations.warehouses.simulator import Record, WarehouseSimulator, create_warehouse_simulator
from integrations.warehouses.worker import callback_url

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = [
    "DEMO_PATH",
    "STORE_PATH",
    "STORE_PRODUCTS",
    "WAREHOUSE_PATH",
    "DemoCredentials",
    "DemoSimulators",
    "credentials",
    "demo_routes",
    "served_url",
]

DEMO_PATH = "/_demo"
STORE_PATH = f"{DEMO_PATH}/store"
WAREHOUSE_PATH = f"{DEMO_PATH}/warehouse"
SHOP_DOMAIN = "demo-seller.myshopify.test"
WAREHOUSE_NAME = "Demo warehouse"
FIRST_STORE_NUMBER = 1001  # the store simulator's first order name, "#1001"
WILDCARD_HOSTS = ("", "0.0.0.0", "::")

# What the demo seller's store sells, as its simulator takes a product (``POST /_sim/products``):
# the supplier's tee under the same SKU codes (connected to them by ``service.demo``), and a mug
# no supplier makes, whose orders stay UNRECOGNIZED. Prices are the store's retail prices.
STORE_PRODUCTS: tuple[dict[str, Any], ...] = (
    {
        "title": "Organic cotton tee",
        "options": ["Colour", "Size"],
        "variants": [
            {"sku": "DEMO-TEE-BLK-S", "price": "24.00", "option1": "Black", "option2": "S"},
            {"sku": "DEMO-TEE-BLK-M", "price": "24.00", "option1": "Black", "option2": "M"},
            {"sku": "DEMO-TEE-WHT-M", "price": "24.00", "option1": "White", "option2": "M"},
            {"sku": "DEMO-TEE-WHT-L", "price": "26.00", "option1": "White", "option2": "L"},
        ],
    },
    {
        "title": "Enamel camping mug",
        "options": ["Colour"],
        "variants": [{"sku": "MUG-ENAMEL-WHT", "price": "12.00", "option1": "White"}],
    },
)
RETAIL_PRICES = {v["sku"]: v["price"] for p in STORE_PRODUCTS for v in p["variants"]}


@dataclass(frozen=True)
class DemoCredentials:
    """What the demo's store and warehouse check on every API call."""

    store_access_token: str
    store_webhook_secret: str
    warehouse_api_key: str


def _derived(purpose: str) -> str:
    return base64.urlsafe_b64encode(derived_key(f"demo-simulators/{purpose}")).decode().rstrip("=")


def credentials() -> DemoCredentials:
    """The demo simulators' credentials, derived from the secrets key (configured first)."""
    return DemoCredentials(
        store_access_token="shpat_" + _derived("store-access-token"),
        store_webhook_secret=_derived("store-webhook-secret"),
        warehouse_api_key=_derived("warehouse-api-key"),
    )


def served_url(settings: Settings) -> str:
    """Where this service is reached: ``PUBLIC_URL``, else ``http://HOST:PORT`` (a wildcard
    bind address as 127.0.0.1, which reaches it from this machine)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def _callbacks_to(settings: Settings) -> str:
    """The base of the callback addresses this instance's worker gives the warehouse."""
    return settings.public_url or f"http://{settings.host}:{settings.port}"


class DemoSimulators:
    """The ASGI app mounted at ``/_demo``: both simulators, built (and restored from the
    database) at the first request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = served_url(settings)
        self.store: Starlette | None = None
        self.warehouse: Starlette | None = None
        self._app: Starlette | None = None
        self._starting = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or await self._start()
        await app(scope, receive, send)

    async def _start(self) -> Starlette:
        async with self._starting:
            if self._app is None:
                given = credentials()
                store = create_store_simulator(
                    access_token=given.store_access_token,
                    webhook_secret=given.store_webhook_secret,
                    shop_domain=SHOP_DOMAIN,
                )
                warehouse = create_warehouse_simulator(
                    api_key=given.warehouse_api_key,
                    # until the seeding (or the database, below) gives it the issued one
                    callback_secret=_derived("warehouse-unset-callback-secret"),
                    name=WAREHOUSE_NAME,
                )
                await restore_store(store.state.sim, api_url=self.url + STORE_PATH)
                await restore_warehouse(
                    warehouse.state.simulator,
                    api_url=self.url + WAREHOUSE_PATH,
                    callbacks_to=_callbacks_to(self.settings),
                )
                self.store, self.warehouse = store, warehouse
                self._app = Starlette(
                    routes=[Mount("/store", app=store), Mount("/warehouse", app=warehouse)]
                )
        return self._app


def demo_routes(settings: Settings) -> list[BaseRoute]:
    """The ``/_demo`` mount when ``DEMO`` is on, else nothing."""
    return [Mount(DEMO_PATH, app=DemoSimulators(settings))] if settings.demo else []


# -- what a restarted simulator starts from --------------------------------------------------


def _numeric(external_id: str | None) -> int:
    return int(external_id) if external_id and external_id.isdigit() else 0


async def restore_store(state: StoreState, *, api_url: str) -> None:
    """The products of the stores connected at ``api_url``, as the simulator had them; its
    next ids after every id those stores have seen, its next order name after their orders."""
    highest = orders = 0
    for store in await Store.filter(api_url=api_url).order_by("id"):
        variants = await StoreVariant.filter(store_id=store.id).order_by("id")
        for product in await StoreProduct.filter(store_id=store.id).order_by("id"):
            if not product.external_id.isdigit():
                continue
            own = [v for v in variants if v.product_id == product.id and v.external_id.isdigit()]
            names = list(own[0].attributes) if own else []
            state.products[int(product.external_id)] = {
                "id": int(product.external_id),
                "title": product.title,
                "options": [{"name": name.title()} for name in names],
                "variants": [
                    {
                        "id": int(v.external_id),
                        "title": v.title,
                        "sku": v.sku_code,
                        "price": RETAIL_PRICES.get(v.sku_code or "", "0.00"),
                        **{
                            f"option{i}": v.attributes.get(name)
                            for i, name in enumerate(names[:3], start=1)
                        },
                    }
                    for v in own
                ],
            }
            highest = max([highest, int(product.external_id), *(int(v.external_id) for v in own)])
        seen = await Order.filter(store_id=store.id).values_list("store_order_id", flat=True)
        highest = max([highest, _numeric(store.last_order_external_id), *map(_numeric, seen)])
        orders += len(seen)
    state.ids = itertools.count(highest + 1)
    state.numbers = itertools.count(FIRST_STORE_NUMBER + orders)


async def restore_warehouse(
    simulator: WarehouseSimulator, *, api_url: str, callbacks_to: str
) -> None:
    """The callback secret of the newest active third-party warehouse at ``api_url``, and the
    orders pushed to it, with their warehouse ids and statuses."""
    connection = (
        await ThirdPartyWarehouse.filter(api_url=api_url, is_active=True).order_by("-id").first()
    )
    if connection is None:
        return
    simulator.secret = connection.callback_secret
    highest = 0
    pushed = WarehouseOrder.filter(
        third_party_warehouse_id=connection.id,
        push_status=PushStatus.PUSHED,
        warehouse_order_id__isnull=False,
    )
    for record in await pushed.order_by("id"):
        wanted = await outbound_request(record.order_id)
        order = await Order.get(id=record.order_id)
        status = record.warehouse_status or "RECEIVED"
        if record.withdrawal_status is WithdrawalStatus.WITHDRAWN:
            status = "CANCELLED"
        shipped = status == "SHIPPED"
        moment = format_time(record.pushed_at or datetime.now(UTC))
        simulator.state.outbound[wanted.reference] = Record(
            {
                "id": record.warehouse_order_id,
                "reference": wanted.reference,
                "status": status,
                "carrier": order.carrier if shipped else None,
                "tracking_number": order.tracking_number if shipped else None,
                "reason": order.abnormal_reason if status == "EXCEPTION" else None,
                "items": [
                    OutboundItem(sku, quantity, title[:255] or None).to_json()
                    for sku, quantity, title in wanted.items
                ],
                "created_at": moment,
                "updated_at": format_time(record.updated_at or datetime.now(UTC)),
            },
            callback_url(callbacks_to, connection.id),
        )
        number = (record.warehouse_order_id or "").removeprefix("WO-")
        highest = max(highest, int(number) if number.isdigit() else 0)
    simulator.state.outbound_ids = itertools.count(highest + 1)
