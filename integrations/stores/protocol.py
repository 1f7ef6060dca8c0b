"""The store wire format: Shopify Admin REST conventions, so a real store can be adapted.

Store API (we call the store; every request carries ``X-Shopify-Access-Token: <token>``)::

    GET  /admin/api/2024-01/orders.json?since_id=<id>&limit=<n>     -> 200 {"orders": [...]}
    GET  /admin/api/2024-01/products.json?since_id=<id>&limit=<n>   -> 200 {"products": [...]}
    POST /admin/api/2024-01/orders/<order_id>/fulfillments.json     -> 201 {"fulfillment": {...}}
         body {"fulfillment": {"tracking_company": str, "tracking_number": str,
                               "notify_customer": true}}
         header ``Idempotency-Key: <key>``: the same key again returns the first fulfillment.

Lists hold at most ``limit`` items with ``id > since_id``, by id ascending; a page shorter than
``limit`` is the last one. Ids are numeric (JSON ints or digit strings) and compare numerically;
we carry them as canonical decimal strings.

An order::

    {"id": 1001, "name": "#1001", "currency": "USD",
     "created_at": "2024-03-01T10:00:00+02:00",               # ISO 8601 with an offset
     "customer": {"first_name": "Ada", "last_name": "Lovelace"},   # null for some guests
     "shipping_address": {"name", "address1", "address2", "city", "province", "zip",
                          "country_code", "phone"},           # values str or null
     "line_items": [{"id", "product_id", "variant_id", "title", "quantity": 2,
                     "price": "12.50"}]}

A product (``options`` name the variants' ``option1``..``option3``; attribute keys are the
option names lower-cased, e.g. ``{"color": "Red", "size": "M"}``)::

    {"id": 7, "title": "T-shirt", "options": [{"name": "Color"}, {"name": "Size"}],
     "variants": [{"id", "title", "sku", "price": "9.90", "option1", "option2", "option3"}]}

Money is always a JSON string ("12.50"); a JSON float is refused, never rounded.

Webhooks (the store calls us): ``POST <our url>`` with the raw JSON order as the body and the
headers ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the raw body, keyed with the store's
webhook secret; see ``sign``/``verify``), ``X-Shopify-Event-Id`` (one per event: redeliveries of
the same event reuse it, so it is the deduplication key), ``X-Shopify-Triggered-At`` (ISO 8601
UTC), ``X-Shopify-Topic: orders/create`` and ``X-Shopify-Shop-Domain``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from domain.limits import MAX_ORDER_LINES, MAX_VARIANTS_PER_STORE_PRODUCT
from domain.stores.data import (
    SHIPPING_ADDRESS_KEYS,
    StoreOrderData,
    StoreOrderLineData,
    StoreProductData,
    StoreVariantData,
)

__all__ = [
    "API_PREFIX",
    "HEADER_ACCESS_TOKEN",
    "HEADER_EVENT_ID",
    "HEADER_HMAC",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_SHOP_DOMAIN",
    "HEADER_TOPIC",
    "HEADER_TRIGGERED_AT",
    "MAX_PAGE_SIZE",
    "TOPIC_ORDERS_CREATE",
    "StorePayloadError",
    "parse_id",
    "parse_money",
    "parse_order",
    "parse_product",
    "sign",
    "verify",
]

API_PREFIX = "/admin/api/2024-01"
MAX_PAGE_SIZE = 250

HEADER_ACCESS_TOKEN = "X-Shopify-Access-Token"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
HEADER_HMAC = "X-Shopify-Hmac-Sha256"
HEADER_EVENT_ID = "X-Shopify-Event-Id"
HEADER_TRIGGERED_AT = "X-Shopify-Triggered-At"
HEADER_TOPIC = "X-Shopify-Topic"
HEADER_SHOP_DOMAIN = "X-Shopify-Shop-Domain"
TOPIC_ORDERS_CREATE = "orders/create"

_MONEY = re.compile(r"[0-9]{1,15}(\.[0-9]{1,4})?")
_DIGITS = re.compile(r"[0-9]{1,30}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_OPTIONS = 3


class StorePayloadError(ValueError):
    """A store payload (order, product, API response) that does not follow the protocol."""


def _fail(where: str, message: str) -> StorePayloadError:
    return StorePayloadError(f"{where}: {message}" if where else message)


def _require(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise _fail(where, f"missing key {key!r}")
    return obj[key]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"expected a JSON object, got {type(value).__name__}")
    return value


def _text(value: Any, where: str, *, required: bool = True) -> str:
    """A string; null is "" unless ``required`` (then blank is refused too)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _fail(where, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise _fail(where, "must not be blank")
    return value.strip()


def parse_id(value: Any, where: str = "id") -> str:
    """A numeric id (JSON int or digit string) as a canonical decimal string."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return str(int(value))
    raise _fail(where, f"expected a numeric id, got {value!r}")


def parse_money(value: Any, where: str = "price") -> Decimal:
    """Money given as a string ("12.50") or an int; floats and anything inexact are refused."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Decimal(value)
    if isinstance(value, str) and _MONEY.fullmatch(value.strip()):
        return Decimal(value.strip())
    if isinstance(value, float):
        raise _fail(where, f'money must be a string such as "12.50", not the float {value!r}')
    raise _fail(where, f'expected a non-negative amount such as "12.50", got {value!r}')


def _parse_time(value: Any, where: str) -> datetime:
    text = _text(value, where)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(where, f"not an ISO 8601 timestamp: {text!r}") from None
    if moment.utcoffset() is None:
        raise _fail(where, f"timestamp without a UTC offset: {text!r}")
    return moment.astimezone(UTC)


def _parse_line(payload: Any, where: str) -> StoreOrderLineData:
    line = _object(payload, where)
    quantity = _require(line, "quantity", where)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise _fail(f"{where}.quantity", f"expected an integer, got {quantity!r}")
    if quantity <= 0:
        raise _fail(f"{where}.quantity", f"must be positive, got {quantity}")
    return StoreOrderLineData(
        external_id=parse_id(_require(line, "id", where), f"{where}.id"),
        external_product_id=parse_id(_require(line, "product_id", where), f"{where}.product_id"),
        external_variant_id=parse_id(_require(line, "variant_id", where), f"{where}.variant_id"),
        title=_text(_require(line, "title", where), f"{where}.title"),
        quantity=quantity,
        unit_price=parse_money(_require(line, "price", where), f"{where}.price"),
    )


def _parse_address(payload: Any, where: str) -> dict[str, str]:
    raw = _object(payload, where)
    address = {
        key: _text(raw.get(key), f"{where}.{key}", required=False) for key in SHIPPING_ADDRESS_KEYS
    }
    for key in ("name", "address1", "city", "country_code"):
        if not address[key]:
            raise _fail(f"{where}.{key}", "is required to ship the order")
    address["country_code"] = address["country_code"].upper()
    if not re.fullmatch(r"[A-Z]{2}", address["country_code"]):
        raise _fail(
            f"{where}.country_code", f"expected ISO 3166 alpha-2, got {raw['country_code']!r}"
        )
    return address


def parse_order(payload: dict[str, Any]) -> StoreOrderData:
    """An order from the store API or an ``orders/create`` webhook.

    Raises ``StorePayloadError`` naming the offending field.
    """
    order = _object(payload, "order")
    external_id = parse_id(_require(order, "id", "order"), "order.id")
    where = f"order {external_id}"
    currency = _require(order, "currency", where)
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency.strip().upper()):
        raise _fail(
            f"{where}.currency", f"expected an ISO 4217 code such as 'USD', got {currency!r}"
        )
    customer = _object(order.get("customer") or {}, f"{where}.customer")  # guests have none
    first = _text(customer.get("first_name"), f"{where}.customer.first_name", required=False)
    last = _text(customer.get("last_name"), f"{where}.customer.last_name", required=False)
    address = _parse_address(
        _require(order, "shipping_address", where), f"{where}.shipping_address"
    )
    items = _require(order, "line_items", where)
    if not isinstance(items, list) or not items:
        raise _fail(f"{where}.line_items", "expected a non-empty list")
    if len(items) > MAX_ORDER_LINES:
        raise _fail(f"{where}.line_items", f"more than {MAX_ORDER_LINES} lines")
    return StoreOrderData(
        external_id=external_id,
        number=_text(_require(order, "name", where), f"{where}.name"),
        currency=currency.strip().upper(),
        created_at=_parse_time(_require(order, "created_at", where), f"{where}.created_at"),
        customer_name=" ".join(part for part in (first, last) if part) or address["name"],
        shipping_address=address,
        lines=tuple(_parse_line(item, f"{where}.line_items[{i}]") for i, item in enumerate(items)),
    )


def parse_product(payload: dict[str, Any]) -> StoreProductData:
    """A product with its variants; options become lower-cased attribute keys.

    Shopify's placeholder option of a product without variants ("Title" = "Default Title")
    yields no attribute. Raises ``StorePayloadError`` naming the offending field.
    """
    product = _object(payload, "product")
    external_id = parse_id(_require(product, "id", "product"), "product.id")
    where = f"product {external_id}"
    raw_options = product.get("options") or []
    if not isinstance(raw_options, list) or len(raw_options) > _MAX_OPTIONS:
        raise _fail(f"{where}.options", f"expected a list of at most {_MAX_OPTIONS} options")
    names = [
        _text(_require(_object(option, f"{where}.options[{i}]"), "name", where), where).lower()
        for i, option in enumerate(raw_options)
    ]
    if len(set(names)) != len(names):
        raise _fail(f"{where}.options", f"duplicate option names {names}")
    variants = _require(product, "variants", where)
    if not isinstance(variants, list) or not variants:
        raise _fail(f"{where}.variants", "expected a non-empty list")
    if len(variants) > MAX_VARIANTS_PER_STORE_PRODUCT:
        raise _fail(f"{where}.variants", f"more than {MAX_VARIANTS_PER_STORE_PRODUCT} variants")
    return StoreProductData(
        external_id=external_id,
        title=_text(_require(product, "title", where), f"{where}.title"),
        variants=tuple(
            _parse_variant(v, names, f"{where}.variants[{i}]") for i, v in enumerate(variants)
        ),
    )


def _parse_variant(payload: Any, option_names: list[str], where: str) -> StoreVariantData:
    variant = _object(payload, where)
    attributes: dict[str, str] = {}
    for i, name in enumerate(option_names, start=1):
        value = _text(variant.get(f"option{i}"), f"{where}.option{i}", required=False)
        if value and not (name == "title" and value == "Default Title"):
            attributes[name] = value
    sku = _text(variant.get("sku"), f"{where}.sku", required=False)
    return StoreVariantData(
        external_id=parse_id(_require(variant, "id", where), f"{where}.id"),
        title=_text(_require(variant, "title", where), f"{where}.title"),
        sku=sku or None,
        attributes=attributes,
        price=parse_money(_require(variant, "price", where), f"{where}.price"),
    )


def sign(body: bytes, secret: str) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value for ``body``: base64 of its HMAC-SHA256."""
    if not secret:
        raise ValueError("a webhook secret is required to sign")
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(body: bytes, secret: str, signature: str | None) -> bool:
    """Whether ``signature`` signs ``body`` under ``secret``; constant-time, never raises."""
    try:
        if not secret or not isinstance(signature, str) or not signature:
            return False
        return hmac.compare_digest(sign(body, secret).encode(), signature.strip().encode())
    except Exception:
        return False
