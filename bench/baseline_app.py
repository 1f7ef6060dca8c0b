"""The floor references ``make bench`` compares supplygraph with, served like ``main.py serve``.

- ``POST /graphql``: a DEFAULT-configured Strawberry schema (``strawberry.Schema(query=Query)``,
  no extensions, plain ``strawberry.asgi.GraphQL``) with the same field names and shape as the
  orders page of supplygraph (``orders(first, after)`` → edges of orders with 5 scalars, 3
  lines each with ``quantity`` and ``sku { code product { title } }``, ``store { name }``,
  ``logisticsMethod { name }`` and ``latestTransition { toStatus at }``), resolved from Python
  objects built once at start-up: no database, no authentication, no loaders. Ids and cursors
  have supplygraph's forms: ``id`` a global id (``gid://supplygraph/Order/<key>``), a cursor
  the order's key.
- ``GET|POST /json``: a bare Starlette endpoint; a POST parses its JSON body and answers a small
  JSON object, like the store webhook does without its work.
- ``GET /healthz``.

    HOST=127.0.0.1 PORT=8100 python bench/baseline_app.py
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from enum import Enum

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL

ORDERS_KEPT = 100  # the largest page supplygraph serves
ORDER_GID = "gid://supplygraph/Order/"  # supplygraph's global ids (schema/global_ids.py)


@strawberry.enum
class OrderStatus(Enum):
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    AWAITING_SHIPPING = "AWAITING_SHIPPING"
    SHIPPED = "SHIPPED"


@strawberry.type
class Product:
    title: str


@strawberry.type
class Sku:
    code: str
    product: Product


@strawberry.type
class OrderLine:
    quantity: int
    sku: Sku | None


@strawberry.type
class Store:
    name: str


@strawberry.type
class LogisticsMethod:
    name: str


@strawberry.type
class OrderTransition:
    to_status: OrderStatus
    at: datetime


@strawberry.type
class Order:
    id: strawberry.ID
    number: str
    status: OrderStatus
    carrier: str | None
    tracking_number: str | None
    lines: list[OrderLine]
    store: Store | None
    logistics_method: LogisticsMethod | None
    latest_transition: OrderTransition | None


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo


def _orders() -> list[Order]:
    product = Product(title="Bench tee")
    skus = [Sku(code=f"TEE-{size}", product=product) for size in ("S", "M", "L")]
    store, method = Store(name="Bench shop"), LogisticsMethod(name="Air")
    shipped = datetime(2025, 1, 1, tzinfo=UTC)
    return [
        Order(
            id=strawberry.ID(f"{ORDER_GID}{100_000 - i}"),
            number=f"BN{100_000 - i:010d}",
            status=OrderStatus.SHIPPED,
            carrier="UPS",
            tracking_number=f"1ZBENCH{100_000 - i:010d}",
            lines=[OrderLine(quantity=1 + n, sku=sku) for n, sku in enumerate(skus)],
            store=store,
            logistics_method=method,
            latest_transition=OrderTransition(
                to_status=OrderStatus.SHIPPED, at=shipped + timedelta(minutes=i)
            ),
        )
        for i in range(ORDERS_KEPT)
    ]


ORDERS = _orders()


def _cursor(order: Order) -> str:
    """The order's key, as supplygraph's cursors are."""
    return order.id.rsplit("/", 1)[1]


@strawberry.type
class Query:
    @strawberry.field
    def orders(self, first: int = 50, after: str | None = None) -> OrderConnection:
        start = (
            0 if after is None else next(i for i, o in enumerate(ORDERS) if _cursor(o) == after) + 1
        )
        page = ORDERS[start : start + first]
        return OrderConnection(
            edges=[OrderEdge(cursor=_cursor(o), node=o) for o in page],
            page_info=PageInfo(
                has_next_page=start + first < len(ORDERS),
                end_cursor=_cursor(page[-1]) if page else None,
            ),
        )


schema = strawberry.Schema(query=Query)


async def plain_json(request: Request) -> JSONResponse:
    if request.method == "POST":
        data = json.loads(await request.body())
        return JSONResponse({"status": "created", "orderId": str(data.get("id", ""))})
    return JSONResponse({"status": "ok"})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/graphql", GraphQL(schema), methods=["GET", "POST"]),
        Route("/json", plain_json, methods=["GET", "POST"]),
        Route("/healthz", healthz),
    ]
)


if __name__ == "__main__":
    # the same uvicorn options as ``python main.py serve`` (service/cli.py)
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8100")),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
