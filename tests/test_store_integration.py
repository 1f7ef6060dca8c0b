"""Store-platform integration: protocol parsing and signing, StoreClient, store simulator.

The simulator and a webhook receiver run as real uvicorn servers in the test's event loop;
``httpx.MockTransport`` injects the faults that are simpler to script than to provoke.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.stores.data import StoreOrderData, StoreOrderLineData, StoreVariantData
from integrations.stores import StoreApiError, StoreClient, StorePayloadError
from integrations.stores.protocol import (
    HEADER_ACCESS_TOKEN,
    HEADER_EVENT_ID,
    HEADER_HMAC,
    HEADER_SHOP_DOMAIN,
    HEADER_TOPIC,
    HEADER_TRIGGERED_AT,
    parse_order,
    parse_product,
    sign,
    verify,
)
from integrations.stores.simulator import create_store_simulator
from tests.support.server import IDLE_SAFE, CountingTransport, free_port, serve

TOKEN = "shpat_test_token_0123456789"
SECRET = "whsec_test_secret"
SHOP = "demo-store.myshopify.test"


# --- harness ---------------------------------------------------------------------------------

Counting = CountingTransport


@dataclass
class Sim:
    """A running store simulator and a control client for its ``/_sim/`` endpoints."""

    url: str
    control: httpx.AsyncClient

    async def product(self, title: str = "Tee", **body: Any) -> dict[str, Any]:
        body.setdefault("options", ["Color", "Size"])
        body.setdefault(
            "variants",
            [
                {"sku": "TEE-R-M", "price": "9.90", "option1": "Red", "option2": "M"},
                {"sku": "TEE-B-L", "price": "11.00", "option1": "Blue", "option2": "L"},
            ],
        )
        response = await self.control.post("/_sim/products", json={"title": title, **body})
        assert response.status_code == 201, response.text
        return response.json()

    async def order(self, variant_id: int, **body: Any) -> dict[str, Any]:
        body.setdefault("line_items", [{"variant_id": variant_id, "quantity": 1}])
        response = await self.control.post("/_sim/orders", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def faults(self, **body: Any) -> None:
        response = await self.control.post("/_sim/faults", json=body)
        assert response.status_code == 200, response.text

    async def fulfillments(self) -> list[dict[str, Any]]:
        return (await self.control.get("/_sim/fulfillments")).json()["fulfillments"]

    async def fulfillment_posts(self) -> list[str | None]:
        """The idempotency key of every fulfillment request the store received."""
        return (await self.control.get("/_sim/fulfillments")).json()["posts"]


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    app = create_store_simulator(access_token=TOKEN, webhook_secret=SECRET, shop_domain=SHOP)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10, limits=IDLE_SAFE) as control,
    ):
        yield Sim(url, control)


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
async def store(sim: Sim, counting: Counting) -> AsyncIterator[StoreClient]:
    async with StoreClient(
        base_url=sim.url, access_token=TOKEN, timeout=2, retries=2, backoff=0.01, transport=counting
    ) as client:
        yield client


def mock_store(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> tuple[StoreClient, list[httpx.Request]]:
    """A StoreClient answered by ``handler``; the list collects the requests it sent."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    kwargs = {"timeout": 1, "retries": 2, "backoff": 0.01, **kwargs}
    client = StoreClient(
        base_url="http://store.test",
        access_token=TOKEN,
        transport=httpx.MockTransport(record),
        **kwargs,
    )
    return client, seen


def replies(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering with ``responses`` in turn, then repeating the last one."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler


def order_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": 450789469,
        "name": "#1001",
        "currency": "EUR",
        "created_at": "2024-03-01T10:00:00+02:00",
        "customer": {"first_name": "Ada", "last_name": "Lovelace"},
        "shipping_address": {
            "name": "Ada Lovelace",
            "address1": "12 St James's Square",
            "address2": None,
            "city": "London",
            "province": "England",
            "zip": "SW1Y 4JH",
            "country_code": "gb",
            "phone": "+44 20 7946 0000",
        },
        "line_items": [
            {
                "id": "866550311766439020",
                "product_id": 632910392,
                "variant_id": "808950810",
                "title": "Tee - Red / M",
                "quantity": 2,
                "price": "12.50",
            },
            {
                "id": 2,
                "product_id": 3,
                "variant_id": 4,
                "title": "Mug",
                "quantity": 1,
                "price": "0.99",
            },
        ],
    }
    payload.update(changes)
    return payload


def product_payload() -> dict[str, Any]:
    return {
        "id": "632910392",
        "title": "Tee",
        "options": [{"name": "Color"}, {"name": "Size"}],
        "variants": [
            {
                "id": 808950810,
                "title": "Red / M",
                "sku": "TEE-R-M",
                "price": "9.90",
                "option1": "Red",
                "option2": "M",
                "option3": None,
            },
            {
                "id": 808950811,
                "title": "Blue / L",
                "sku": "",
                "price": "11",
                "option1": "Blue",
                "option2": "L",
            },
        ],
    }


# --- protocol: parsing -----------------------------------------------------------------------


def test_parse_order_reads_every_field() -> None:
    order = parse_order(order_payload())

    assert order.external_id == "450789469"
    assert order.number == "#1001"
    assert order.currency == "EUR"
    assert order.created_at == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    assert order.created_at.utcoffset() == timedelta(0)
    assert order.customer_name == "Ada Lovelace"
    assert order.shipping_address == {
        "name": "Ada Lovelace",
        "address1": "12 St James's Square",
        "address2": "",
        "city": "London",
        "province": "England",
        "zip": "SW1Y 4JH",
        "country_code": "GB",
        "phone": "+44 20 7946 0000",
    }
    assert order.lines == (
        StoreOrderLineData(
            "866550311766439020", "632910392", "808950810", "Tee - Red / M", 2, Decimal("12.50")
        ),
        StoreOrderLineData("2", "3", "4", "Mug", 1, Decimal("0.99")),
    )
    assert all(type(line.unit_price) is Decimal for line in order.lines)
    assert str(order.lines[0].unit_price) == "12.50"


def test_parse_order_accepts_a_guest_without_customer_and_utc_z() -> None:
    order = parse_order(order_payload(customer=None, created_at="2024-03-01T10:00:00Z"))
    assert order.customer_name == "Ada Lovelace"  # from the shipping address
    assert order.created_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def _parent(payload: dict[str, Any], path: str) -> tuple[Any, str]:
    """The container of the dotted ``path`` ("line_items.0.price") and the last key."""
    *parents, last = path.split(".")
    target: Any = payload
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    return target, last


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        target, key = _parent(payload, path)
        del target[key]

    return mutate


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        target, key = _parent(payload, path)
        target[key] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (_without("id"), "missing key 'id'"),
        (_set("id", "abc"), "numeric id"),
        (_set("id", True), "numeric id"),
        (_without("currency"), "missing key 'currency'"),
        (_set("currency", "US"), "ISO 4217"),
        (_set("currency", "USDX"), "ISO 4217"),
        (_set("currency", 840), "ISO 4217"),
        (_set("name", ""), "name: must not be blank"),
        (_set("created_at", "2024-03-01T10:00:00"), "without a UTC offset"),
        (_set("created_at", "yesterday"), "not an ISO 8601"),
        (_without("shipping_address"), "missing key 'shipping_address'"),
        (_set("shipping_address", "London"), "expected a JSON object"),
        (_without("shipping_address.address1"), "address1: is required"),
        (_set("shipping_address.country_code", "GBR"), "alpha-2"),
        (_without("line_items"), "missing key 'line_items'"),
        (_set("line_items", []), "non-empty list"),
        (_without("line_items.0.variant_id"), r"line_items\[0\]: missing key 'variant_id'"),
        (_set("line_items.1.quantity", 0), r"line_items\[1\]\.quantity: must be positive"),
        (_set("line_items.1.quantity", -3), "must be positive"),
        (_set("line_items.1.quantity", "2"), "expected an integer"),
        (_set("line_items.1.quantity", 1.0), "expected an integer"),
        (_set("line_items.1.quantity", True), "expected an integer"),
        (_set("line_items.0.price", 12.5), "not the float 12.5"),
        (_set("line_items.0.price", "abc"), "amount"),
        (_set("line_items.0.price", "-1.00"), "non-negative amount"),
        (_set("line_items.0.price", "1e3"), "amount"),
        (_set("line_items.0.price", "NaN"), "amount"),
        (_set("line_items.0.price", None), "amount"),
        (_set("line_items.0.title", 7), "expected a string"),
    ],
)
def test_parse_order_refuses_malformed_payloads(
    mutate: Callable[[dict[str, Any]], None], match: str
) -> None:
    payload = order_payload()
    mutate(payload)
    with pytest.raises(StorePayloadError, match=match):
        parse_order(payload)


def test_parse_order_refuses_non_objects() -> None:
    with pytest.raises(StorePayloadError, match="expected a JSON object"):
        parse_order([])  # type: ignore[arg-type]


def test_parse_product_maps_options_to_attributes() -> None:
    product = parse_product(product_payload())

    assert product.external_id == "632910392"
    assert product.title == "Tee"
    assert product.variants == (
        StoreVariantData(
            "808950810", "Red / M", "TEE-R-M", {"color": "Red", "size": "M"}, Decimal("9.90")
        ),
        StoreVariantData(
            "808950811", "Blue / L", None, {"color": "Blue", "size": "L"}, Decimal("11")
        ),
    )


def test_parse_product_drops_shopify_default_title_option() -> None:
    payload = {
        "id": 1,
        "title": "Mug",
        "options": [{"name": "Title"}],
        "variants": [
            {"id": 2, "title": "Default Title", "price": "4.00", "option1": "Default Title"}
        ],
    }
    (variant,) = parse_product(payload).variants
    assert variant.attributes == {}
    assert variant.sku is None


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (_without("id"), "missing key 'id'"),
        (_without("variants"), "missing key 'variants'"),
        (_set("variants", []), "non-empty list"),
        (_set("variants.0.price", 9.9), "not the float"),
        (_without("variants.1.id"), r"variants\[1\]: missing key 'id'"),
        (_set("options", [{"name": n} for n in "ABCD"]), "at most 3 options"),
        (_set("options", [{"name": "Size"}, {"name": "size"}]), "duplicate option names"),
        (_set("options", [{}]), "missing key 'name'"),
    ],
)
def test_parse_product_refuses_malformed_payloads(
    mutate: Callable[[dict[str, Any]], None], match: str
) -> None:
    payload = product_payload()
    mutate(payload)
    with pytest.raises(StorePayloadError, match=match):
        parse_product(payload)


def test_store_data_refuses_floats_and_naive_times() -> None:
    with pytest.raises(ValueError, match="Decimal"):
        StoreVariantData("1", "t", None, {}, 9.9)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="UTC"):
        StoreOrderData("1", "#1", "USD", datetime(2024, 1, 1), "x", {}, ())


# --- protocol: signatures --------------------------------------------------------------------


def test_sign_matches_a_known_hmac_sha256_vector() -> None:
    digest = bytes.fromhex("f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    body = b"The quick brown fox jumps over the lazy dog"
    assert sign(body, "key") == base64.b64encode(digest).decode()


def test_verify_round_trip() -> None:
    body = json.dumps(order_payload()).encode()
    assert verify(body, SECRET, sign(body, SECRET))


@pytest.mark.parametrize(
    ("body", "secret", "signature"),
    [
        (b'{"id": 2}', SECRET, sign(b'{"id": 1}', SECRET)),  # tampered body
        (b'{"id": 1}', "other-secret", sign(b'{"id": 1}', SECRET)),  # wrong secret
        (b'{"id": 1}', SECRET, None),  # missing header
        (b'{"id": 1}', SECRET, ""),
        (b'{"id": 1}', SECRET, "not base64 at all!!"),
        (b'{"id": 1}', SECRET, "é" * 44),  # non-ASCII
        (b'{"id": 1}', SECRET, 12345),  # not even a string
        (b'{"id": 1}', "", sign(b'{"id": 1}', SECRET)),  # no secret configured
    ],
)
def test_verify_refuses_without_raising(body: bytes, secret: str, signature: Any) -> None:
    assert verify(body, secret, signature) is False


# --- client against the simulator ------------------------------------------------------------


async def test_simulator_api_requires_the_access_token(sim: Sim) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        assert (await http.get("/admin/api/2024-01/orders.json")).status_code == 401
        wrong = {HEADER_ACCESS_TOKEN: "nope"}
        assert (await http.get("/admin/api/2024-01/orders.json", headers=wrong)).status_code == 401
        ok = await http.get("/admin/api/2024-01/orders.json", headers={HEADER_ACCESS_TOKEN: TOKEN})
        assert ok.json() == {"orders": []}


async def test_orders_page_by_since_id_numerically(
    sim: Sim, store: StoreClient, counting: Counting
) -> None:
    product = await sim.product()
    variant = product["variants"][0]["id"]
    created = [(await sim.order(variant))["order"] for _ in range(7)]
    ids = [str(order["id"]) for order in created]
    assert sorted(ids) != ids, "ids should cross a digit boundary to prove numeric comparison"
    assert [o["name"] for o in created] == [f"#{n}" for n in range(1001, 1008)]

    first = await store.list_orders(limit=3)
    assert [o.external_id for o in first] == ids[:3]
    assert [o.external_id for o in await store.list_orders(since_id=ids[2], limit=3)] == ids[3:6]

    counting.requests.clear()
    every = [o.external_id async for o in store.iter_all_orders(since_id=None, limit=3)]
    assert every == ids
    assert len(counting.requests) == 3  # 3 + 3 + 1: the short page ends it
    assert [r.url.params.get("since_id") for r in counting.requests] == [None, ids[2], ids[5]]

    counting.requests.clear()
    rest = [o.external_id async for o in store.iter_all_orders(since_id=ids[0], limit=3)]
    assert rest == ids[1:]
    assert len(counting.requests) == 3  # 3 + 3 + 0: an exact multiple needs an empty page
    assert [o async for o in store.iter_all_orders(since_id=ids[-1])] == []


async def test_order_from_the_simulator_parses_every_field(sim: Sim, store: StoreClient) -> None:
    product = await sim.product()
    red, blue = product["variants"]
    address = {
        "name": "Grace Hopper",
        "address1": "1 Navy Yard",
        "address2": "Unit 3",
        "city": "Arlington",
        "province": "VA",
        "zip": "22202",
        "country_code": "US",
        "phone": None,
    }
    created = await sim.order(
        red["id"],
        currency="USD",
        created_at="2024-06-30T23:30:00-05:00",
        customer={"first_name": "Grace", "last_name": "Hopper"},
        shipping_address=address,
        line_items=[
            {"variant_id": red["id"], "quantity": 2, "price": "12.50"},
            {"variant_id": blue["id"], "quantity": 1},
        ],
    )
    (order,) = await store.list_orders()

    assert order.external_id == str(created["order"]["id"])
    assert order.number == "#1001"
    assert order.currency == "USD"
    assert order.created_at == datetime(2024, 7, 1, 4, 30, tzinfo=UTC)
    assert order.customer_name == "Grace Hopper"
    assert order.shipping_address == {**address, "phone": ""}
    assert [(ln.external_product_id, ln.external_variant_id) for ln in order.lines] == [
        (str(product["id"]), str(red["id"])),
        (str(product["id"]), str(blue["id"])),
    ]
    assert [(ln.quantity, ln.unit_price) for ln in order.lines] == [
        (2, Decimal("12.50")),
        (1, Decimal("11.00")),
    ]
    assert order.lines[0].title == "Tee - Red / M"


async def test_products_page_through_everything(
    sim: Sim, store: StoreClient, counting: Counting
) -> None:
    made = [await sim.product(f"Product {i}") for i in range(5)]
    products = await store.list_products(limit=2)

    assert [p.external_id for p in products] == [str(p["id"]) for p in made]
    assert len(counting.requests) == 3
    red = products[0].variants[0]
    assert red.external_id == str(made[0]["variants"][0]["id"])
    assert (red.title, red.sku, red.attributes, red.price) == (
        "Red / M",
        "TEE-R-M",
        {"color": "Red", "size": "M"},
        Decimal("9.90"),
    )


async def test_fulfillment_is_idempotent(sim: Sim, store: StoreClient) -> None:
    product = await sim.product()
    order = (await sim.order(product["variants"][0]["id"]))["order"]
    push = {"order_id": str(order["id"]), "carrier": "DHL", "tracking_number": "JD0146"}

    first = await store.create_fulfillment(**push, idempotency_key="ship-1")
    again = await store.create_fulfillment(**push, idempotency_key="ship-1")
    assert again == first

    (received,) = await sim.fulfillments()
    assert received["id"] == int(first)
    assert received["order_id"] == order["id"]
    assert received["tracking_company"] == "DHL"
    assert received["tracking_number"] == "JD0146"
    assert received["notify_customer"] is True
    assert received["idempotency_key"] == "ship-1"

    other = await store.create_fulfillment(**push, idempotency_key="ship-2")
    assert other != first
    assert [f["idempotency_key"] for f in await sim.fulfillments()] == ["ship-1", "ship-2"]

    with pytest.raises(StoreApiError, match="different parameters") as reused:
        await store.create_fulfillment(**{**push, "tracking_number": "X"}, idempotency_key="ship-1")
    assert (reused.value.status, reused.value.transient) == (422, False)
    with pytest.raises(StoreApiError) as missing:
        await store.create_fulfillment(**{**push, "order_id": "999999"}, idempotency_key="k")
    assert (missing.value.status, missing.value.transient) == (404, False)


class LoseFirstResponse(httpx.AsyncBaseTransport):
    """Delivers the first request, then drops its response as a read timeout would."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        response = await self.inner.handle_async_request(request)
        if self.requests == 1:
            await response.aread()
            raise httpx.ReadTimeout("response lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_fulfillment_retried_after_a_lost_response_ships_once(sim: Sim) -> None:
    product = await sim.product()
    order = (await sim.order(product["variants"][0]["id"]))["order"]
    transport = LoseFirstResponse()
    async with StoreClient(
        base_url=sim.url, access_token=TOKEN, backoff=0.01, transport=transport
    ) as store:
        fulfillment_id = await store.create_fulfillment(
            order_id=str(order["id"]), carrier="UPS", tracking_number="1Z999", idempotency_key="k1"
        )
    assert transport.requests == 2
    assert [f["id"] for f in await sim.fulfillments()] == [int(fulfillment_id)]


async def test_retries_503_then_succeeds(sim: Sim, store: StoreClient, counting: Counting) -> None:
    await sim.faults(fail_next=2, status=503)
    assert await store.list_orders() == []
    assert len(counting.requests) == 3


async def test_gives_up_after_retries_with_a_transient_error(
    sim: Sim, store: StoreClient, counting: Counting
) -> None:
    await sim.faults(fail_next=10, status=503)
    with pytest.raises(StoreApiError, match=r"HTTP 503.*after 3 attempts") as caught:
        await store.list_products()
    assert (caught.value.transient, caught.value.status) == (True, 503)
    assert len(counting.requests) == 3


async def test_refused_credentials_are_not_retried(sim: Sim, counting: Counting) -> None:
    async with StoreClient(
        base_url=sim.url, access_token="wrong-token-xyz", backoff=0.01, transport=counting
    ) as store:
        with pytest.raises(StoreApiError, match="refused the credentials") as caught:
            await store.list_orders()
    assert (caught.value.transient, caught.value.status) == (False, 401)
    assert "wrong-token-xyz" not in str(caught.value)
    assert len(counting.requests) == 1


async def test_timeout_is_transient_after_retries(sim: Sim, counting: Counting) -> None:
    await sim.faults(delay=0.6)
    started = time.monotonic()
    async with StoreClient(
        base_url=sim.url,
        access_token=TOKEN,
        timeout=0.15,
        retries=1,
        backoff=0.01,
        transport=counting,
    ) as store:
        with pytest.raises(StoreApiError, match=r"ReadTimeout.*after 2 attempts") as caught:
            await store.list_orders()
    assert (caught.value.transient, caught.value.status) == (True, None)
    assert len(counting.requests) == 2
    assert time.monotonic() - started < 1.0
    await sim.faults(reset=True)


async def test_connect_error_is_transient() -> None:
    async with StoreClient(
        base_url=f"http://127.0.0.1:{free_port()}", access_token=TOKEN, retries=1, backoff=0.01
    ) as store:
        with pytest.raises(StoreApiError, match="ConnectError") as caught:
            await store.list_orders()
    assert caught.value.transient is True


# --- client with scripted faults -------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(status: int) -> None:
    client, seen = mock_store(
        replies(httpx.Response(status, json={"errors": f"bad request with token {TOKEN}"}))
    )
    async with client:
        with pytest.raises(StoreApiError) as caught:
            await client.list_orders()
    assert len(seen) == 1
    assert (caught.value.transient, caught.value.status) == (False, status)
    assert TOKEN not in str(caught.value)
    assert ("refused the credentials" in str(caught.value)) == (status in (401, 403))


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(status: int) -> None:
    client, seen = mock_store(
        replies(httpx.Response(status), httpx.Response(200, json={"orders": []}))
    )
    async with client:
        assert await client.list_orders() == []
    assert len(seen) == 2


async def test_backoff_grows_exponentially_and_honours_retry_after() -> None:
    client, seen = mock_store(replies(httpx.Response(502)), retries=3, backoff=0.05)
    started = time.monotonic()
    async with client:
        with pytest.raises(StoreApiError, match="after 4 attempts"):
            await client.list_orders()
    assert len(seen) == 4
    assert time.monotonic() - started >= 0.05 + 0.1 + 0.2

    client, seen = mock_store(
        replies(
            httpx.Response(429, headers={"Retry-After": "0.3"}),
            httpx.Response(200, json={"orders": []}),
        ),
        backoff=0.001,
    )
    started = time.monotonic()
    async with client:
        await client.list_orders()
    assert time.monotonic() - started >= 0.3


async def test_every_request_carries_the_token_and_the_idempotency_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers[HEADER_ACCESS_TOKEN] == TOKEN
        assert request.url.path == "/admin/api/2024-01/orders/42/fulfillments.json"
        assert request.headers["Idempotency-Key"] == "key-42"
        assert json.loads(request.content) == {
            "fulfillment": {
                "tracking_company": "DHL",
                "tracking_number": "JD1",
                "notify_customer": True,
            }
        }
        return httpx.Response(201, json={"fulfillment": {"id": 7}})

    client, _ = mock_store(handler)
    async with client:
        fulfillment_id = await client.create_fulfillment(
            order_id="42", carrier="DHL", tracking_number="JD1", idempotency_key="key-42"
        )
    assert fulfillment_id == "7"


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(200, text="<html>maintenance</html>"), "not JSON"),
        (httpx.Response(200, json=[]), "not a JSON object"),
        (httpx.Response(200, json={"orders": "none"}), "expected {'orders'"),
        (httpx.Response(200, json={"orders": [order_payload(currency=None)]}), "currency"),
        (
            httpx.Response(
                200,
                content=json.dumps({"orders": [order_payload()]})
                .replace('"12.50"', "12.50")
                .encode(),
            ),
            "not the float 12.5",
        ),
    ],
)
async def test_malformed_responses_raise_payload_errors(
    response: httpx.Response, match: str
) -> None:
    client, seen = mock_store(replies(response))
    async with client:
        with pytest.raises(StorePayloadError, match=match):
            await client.list_orders()
    assert len(seen) == 1


async def test_paging_stops_when_the_store_ignores_since_id() -> None:
    page = {"orders": [order_payload(id=1), order_payload(id=2)]}
    client, seen = mock_store(replies(httpx.Response(200, json=page)))
    async with client:
        with pytest.raises(StoreApiError, match="ignored since_id"):
            _ = [o async for o in client.iter_all_orders(since_id=None, limit=2)]
    assert len(seen) == 2


async def test_arguments_are_checked_before_any_request() -> None:
    client, seen = mock_store(replies(httpx.Response(200, json={"orders": []})))
    async with client:
        with pytest.raises(ValueError, match="limit"):
            await client.list_orders(limit=0)
        with pytest.raises(ValueError, match="numeric id"):
            await client.create_fulfillment(
                order_id="../products", carrier="DHL", tracking_number="1", idempotency_key="k"
            )
        with pytest.raises(ValueError, match="required"):
            await client.create_fulfillment(
                order_id="1", carrier="DHL", tracking_number="1", idempotency_key=" "
            )
    assert seen == []


# --- webhooks --------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint of ours: verifies the signature, records every delivery."""

    deliveries: list[tuple[httpx.Headers, bytes, bool]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            valid = verify(body, SECRET, request.headers.get(HEADER_HMAC))
            self.deliveries.append((httpx.Headers(request.headers.items()), body, valid))
            return Response(status_code=200 if valid else 401)

        return Starlette(routes=[Route("/webhooks/store/1", hook, methods=["POST"])])


def _event_ids(deliveries: Iterable[tuple[httpx.Headers, bytes, bool]]) -> list[str]:
    return [headers[HEADER_EVENT_ID] for headers, _, _ in deliveries]


async def test_webhook_is_signed_and_redelivered_with_the_same_event_id(
    sim: Sim, store: StoreClient
) -> None:
    receiver = Receiver()
    async with serve(receiver.app()) as url:
        hook_url = f"{url}/webhooks/store/1"
        product = await sim.product()
        created = await sim.order(product["variants"][0]["id"], deliver_to=hook_url)
        assert created["webhook_status"] == 200

        ((headers, body, valid),) = receiver.deliveries
        assert valid
        assert headers[HEADER_TOPIC] == "orders/create"
        assert headers[HEADER_SHOP_DOMAIN] == SHOP
        assert headers["Content-Type"] == "application/json"
        triggered = datetime.fromisoformat(headers[HEADER_TRIGGERED_AT])
        assert triggered.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - triggered) < timedelta(minutes=1)
        (pulled,) = await store.list_orders()
        assert parse_order(json.loads(body)) == pulled

        redelivered = await sim.control.post(f"/_sim/redeliver/{created['order']['id']}")
        assert redelivered.json() == {"webhook_status": 200}
        assert len(receiver.deliveries) == 2
        assert receiver.deliveries[1][1] == body
        assert _event_ids(receiver.deliveries) == [headers[HEADER_EVENT_ID]] * 2

        second = await sim.order(product["variants"][0]["id"], deliver_to=hook_url)
        assert second["webhook_status"] == 200
        assert len(set(_event_ids(receiver.deliveries))) == 2

        forged = await sim.order(
            product["variants"][0]["id"], deliver_to=hook_url, bad_signature=True
        )
        assert forged["webhook_status"] == 401
        assert receiver.deliveries[-1][2] is False

    assert (await sim.control.post("/_sim/redeliver/999999")).status_code == 404
    unreachable = await sim.order(
        product["variants"][0]["id"], deliver_to=f"http://127.0.0.1:{free_port()}/hook"
    )
    assert unreachable["webhook_status"] is None


def test_verify_with_a_missing_header_as_a_receiver_sees_it() -> None:
    body = json.dumps(order_payload()).encode()
    assert verify(body, SECRET, httpx.Headers({}).get(HEADER_HMAC)) is False
