"""A store platform in memory, speaking ``protocol``: for tests and the demo.

The store API (``/admin/api/2024-01/...``) checks the access token. Control endpoints, no auth:

* ``POST /_sim/products`` ``{"title", "options": ["Color", "Size"], "variants": [{"sku",
  "price", "option1", "option2"}]}`` creates a product and returns it as the API shows it.
* ``POST /_sim/orders`` ``{"line_items": [{"variant_id", "quantity"}], "currency"?, "customer"?,
  "shipping_address"?, "created_at"?, "deliver_to"?: url, "bad_signature"?: bool}`` creates an
  order (ids increase, names "#1001", ...) and, with ``deliver_to``, POSTs the signed
  ``orders/create`` webhook there. Returns ``{"order", "webhook_status"}``.
* ``POST /_sim/redeliver/{order_id}`` re-sends an order's last webhook, same event id.
* ``GET /_sim/fulfillments`` lists the fulfillments received, with their idempotency keys, and
  (``posts``) the idempotency key of every fulfillment request, repeats included.
* ``POST /_sim/faults`` ``{"fail_next": n, "status": 503}`` fails the next n API requests,
  ``{"delay": seconds}`` delays every API response, ``{"reset": true}`` clears both.

Run alone: ``python -m integrations.stores.simulator --port 8100 --token T --secret S``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integrations.stores.protocol import (
    API_PREFIX,
    HEADER_ACCESS_TOKEN,
    HEADER_EVENT_ID,
    HEADER_HMAC,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_SHOP_DOMAIN,
    HEADER_TOPIC,
    HEADER_TRIGGERED_AT,
    MAX_PAGE_SIZE,
    TOPIC_ORDERS_CREATE,
    sign,
)

__all__ = ["create_store_simulator"]

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

DEFAULT_ADDRESS = {
    "name": "Ada Lovelace",
    "address1": "12 St James's Square",
    "address2": None,
    "city": "London",
    "province": "England",
    "zip": "SW1Y 4JH",
    "country_code": "GB",
    "phone": "+44 20 7946 0000",
}


class SimError(Exception):
    """A refused request: answered with ``status`` and ``{"errors": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Webhook:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class SimState:
    """Everything the store knows; ids come from one counter, as in Shopify."""

    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    fulfillments: list[dict[str, Any]] = field(default_factory=list)
    # every fulfilment POST that got this far, repeats of an idempotency key included
    fulfillment_posts: list[str | None] = field(default_factory=list)
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[int, Webhook] = field(default_factory=dict)
    fail_next: int = 0
    fail_status: int = 503
    delay: float = 0.0

    def variant(self, variant_id: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        for product in self.products.values():
            for variant in product["variants"]:
                if str(variant["id"]) == str(variant_id):
                    return product, variant
        raise SimError(422, f"no variant {variant_id}")


def _money(value: Any) -> str:
    try:
        return f"{Decimal(str(value)):.2f}"
    except InvalidOperation:
        raise SimError(422, f"bad price {value!r}") from None


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise SimError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise SimError(400, "the body must be a JSON object")
    return body


def _page(items: dict[int, dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    try:
        since_id = int(request.query_params.get("since_id", 0))
        limit = int(request.query_params.get("limit", 50))
    except ValueError:
        raise SimError(400, "since_id and limit must be integers") from None
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise SimError(400, f"limit must be between 1 and {MAX_PAGE_SIZE}")
    return [items[i] for i in sorted(items) if i > since_id][:limit]


def create_store_simulator(
    *, access_token: str, webhook_secret: str, shop_domain: str = "sim.myshopify.test"
) -> Starlette:
    """A Starlette app simulating one store; its state lives in ``app.state.sim``."""
    state = SimState()

    def api(handler: Handler) -> Handler:
        """Apply injected faults, then check the access token."""

        async def wrapped(request: Request) -> Response:
            if state.delay:
                await asyncio.sleep(state.delay)
            if state.fail_next > 0:
                state.fail_next -= 1
                return JSONResponse({"errors": "simulated failure"}, state.fail_status)
            token = request.headers.get(HEADER_ACCESS_TOKEN, "")
            if not hmac.compare_digest(token.encode(), access_token.encode()):
                return JSONResponse({"errors": "[API] Invalid API key or access token"}, 401)
            return await handler(request)

        return wrapped

    async def list_orders(request: Request) -> Response:
        return JSONResponse({"orders": _page(state.orders, request)})

    async def list_products(request: Request) -> Response:
        return JSONResponse({"products": _page(state.products, request)})

    async def create_fulfillment(request: Request) -> Response:
        order_id = int(request.path_params["order_id"])
        if order_id not in state.orders:
            raise SimError(404, "Not Found")
        data = (await _json_body(request)).get("fulfillment") or {}
        params = {k: data.get(k) for k in ("tracking_company", "tracking_number")}
        if not all(isinstance(v, str) and v for v in params.values()):
            raise SimError(422, "tracking_company and tracking_number are required")
        key = request.headers.get(HEADER_IDEMPOTENCY_KEY)
        state.fulfillment_posts.append(key)
        if key and key in state.by_key:
            first = state.by_key[key]
            if first["order_id"] != order_id or any(first[k] != v for k, v in params.items()):
                raise SimError(422, "Idempotency-Key reused with different parameters")
            return JSONResponse({"fulfillment": _public(first)}, 201)
        fulfillment = {
            "id": next(state.ids),
            "order_id": order_id,
            **params,
            "notify_customer": bool(data.get("notify_customer", False)),
            "status": "success",
            "created_at": datetime.now(UTC).isoformat(),
            "idempotency_key": key,
        }
        state.fulfillments.append(fulfillment)
        if key:
            state.by_key[key] = fulfillment
        return JSONResponse({"fulfillment": _public(fulfillment)}, 201)

    async def sim_products(request: Request) -> Response:
        body = await _json_body(request)
        options = [str(name) for name in body.get("options") or []]
        product_id = next(state.ids)
        variants = []
        for raw in body.get("variants") or [{"price": "0.00"}]:
            values = [raw.get(f"option{i}") for i in range(1, len(options) + 1)]
            variants.append(
                {
                    "id": next(state.ids),
                    "title": raw.get("title") or " / ".join(map(str, values)) or "Default Title",
                    "sku": raw.get("sku"),
                    "price": _money(raw.get("price", "0")),
                    **{f"option{i}": raw.get(f"option{i}") for i in range(1, 4)},
                }
            )
        product = {
            "id": product_id,
            "title": body.get("title") or "Product",
            "options": [{"name": name} for name in options],
            "variants": variants,
        }
        state.products[product["id"]] = product
        return JSONResponse(product, 201)

    async def sim_orders(request: Request) -> Response:
        body = await _json_body(request)
        lines = []
        for raw in body.get("line_items") or []:
            product, variant = state.variant(raw.get("variant_id"))
            lines.append(
                {
                    "id": next(state.ids),
                    "product_id": product["id"],
                    "variant_id": variant["id"],
                    "title": f"{product['title']} - {variant['title']}",
                    "quantity": raw.get("quantity", 1),
                    "price": _money(raw.get("price", variant["price"])),
                }
            )
        if not lines:
            raise SimError(422, "an order needs line_items")
        number = next(state.numbers)
        order = {
            "id": next(state.ids),
            "name": f"#{number}",
            "currency": body.get("currency", "USD"),
            "created_at": body.get("created_at") or datetime.now(UTC).isoformat(),
            "customer": body.get("customer", {"first_name": "Ada", "last_name": "Lovelace"}),
            "shipping_address": body.get("shipping_address", DEFAULT_ADDRESS),
            "line_items": lines,
        }
        state.orders[order["id"]] = order
        status = None
        if body.get("deliver_to"):
            payload = json.dumps(order).encode()
            secret = "not-" + webhook_secret if body.get("bad_signature") else webhook_secret
            webhook = Webhook(
                url=str(body["deliver_to"]),
                body=payload,
                headers={
                    "Content-Type": "application/json",
                    HEADER_HMAC: sign(payload, secret),
                    HEADER_EVENT_ID: str(uuid.uuid4()),
                    HEADER_TRIGGERED_AT: datetime.now(UTC).isoformat(),
                    HEADER_TOPIC: TOPIC_ORDERS_CREATE,
                    HEADER_SHOP_DOMAIN: shop_domain,
                },
            )
            state.webhooks[order["id"]] = webhook
            status = await _deliver(webhook)
        return JSONResponse({"order": order, "webhook_status": status}, 201)

    async def sim_redeliver(request: Request) -> Response:
        webhook = state.webhooks.get(int(request.path_params["order_id"]))
        if webhook is None:
            raise SimError(404, "no webhook was sent for this order")
        return JSONResponse({"webhook_status": await _deliver(webhook)})

    async def sim_fulfillments(request: Request) -> Response:
        return JSONResponse({"fulfillments": state.fulfillments, "posts": state.fulfillment_posts})

    async def sim_faults(request: Request) -> Response:
        body = await _json_body(request)
        if body.get("reset"):
            state.fail_next, state.fail_status, state.delay = 0, 503, 0.0
        if "fail_next" in body:
            state.fail_next = int(body["fail_next"])
            state.fail_status = int(body.get("status", 503))
        if "delay" in body:
            state.delay = float(body["delay"])
        faults = {"fail_next": state.fail_next, "status": state.fail_status, "delay": state.delay}
        return JSONResponse(faults)

    async def sim_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SimError)
        return JSONResponse({"errors": str(exc)}, exc.status)

    routes = [
        Route(f"{API_PREFIX}/orders.json", api(list_orders), methods=["GET"]),
        Route(f"{API_PREFIX}/products.json", api(list_products), methods=["GET"]),
        Route(
            f"{API_PREFIX}/orders/{{order_id:int}}/fulfillments.json",
            api(create_fulfillment),
            methods=["POST"],
        ),
        Route("/_sim/products", sim_products, methods=["POST"]),
        Route("/_sim/orders", sim_orders, methods=["POST"]),
        Route("/_sim/redeliver/{order_id:int}", sim_redeliver, methods=["POST"]),
        Route("/_sim/fulfillments", sim_fulfillments, methods=["GET"]),
        Route("/_sim/faults", sim_faults, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={SimError: sim_error})
    app.state.sim = state
    return app


def _public(fulfillment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fulfillment.items() if k != "idempotency_key"}


async def _deliver(webhook: Webhook) -> int | None:
    """POST a webhook; its response status, or None if the receiver could not be reached."""
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            response = await http.post(webhook.url, content=webhook.body, headers=webhook.headers)
    except httpx.HTTPError as exc:
        logger.warning("webhook to %s failed: %s", webhook.url, exc)
        return None
    return response.status_code


def main(argv: list[str] | None = None) -> None:
    """``python -m integrations.stores.simulator --help``: serve a simulated store platform."""
    import typer
    import uvicorn

    def serve(
        token: str = typer.Option(..., help="The API access token clients must send."),
        secret: str = typer.Option(..., help="The secret webhooks are signed with."),
        host: str = typer.Option("127.0.0.1", help="Address to bind."),
        port: int = typer.Option(8100, min=1, max=65535, help="Port to listen on."),
        shop_domain: str = typer.Option("sim.myshopify.test", help="The shop's domain."),
    ) -> None:
        app = create_store_simulator(
            access_token=token, webhook_secret=secret, shop_domain=shop_domain
        )
        uvicorn.run(app, host=host, port=port)

    cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    cli.command(help="Run a simulated store platform.")(serve)
    cli(args=argv)


if __name__ == "__main__":
    main()
