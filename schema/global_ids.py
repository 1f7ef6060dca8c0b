"""Global ids: every object is named ``gid://supplygraph/<Type>/<key>`` on the API.

The form is Shopify's: opaque to clients, unique across types (so a normalised cache keyed by
id alone never confuses ``Order 1`` with ``Product 1``), and carrying its type, so ``node(id:)``
knows where to look and an argument given the id of another type is refused before any lookup.
Inside the service objects keep their integer keys; this module is the one place that turns
one into the other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import strawberry

from domain.errors import DomainError, ErrorCode
from domain.validation import is_key

PREFIX = "gid://supplygraph/"
_GID = re.compile(r"gid://supplygraph/([A-Z][A-Za-z]{0,63})/([1-9][0-9]{0,18})")


def gid(type_name: str, key: int | str) -> strawberry.ID:
    """The global id of object ``key`` of GraphQL type ``type_name``."""
    return strawberry.ID(f"{PREFIX}{type_name}/{key}")


def optional_gid(type_name: str, key: int | str | None) -> strawberry.ID | None:
    return None if key is None else gid(type_name, key)


def split(raw: object) -> tuple[str, int] | None:
    """``(type name, key)`` of a well-formed global id (a positive key below 2**63), else None."""
    match = _GID.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        return None
    key = int(match.group(2))
    return (match.group(1), key) if key < 2**63 else None


def parse(raw: object, expected: str | tuple[str, ...], *, field: str) -> int:
    """The key of a global id of one of the ``expected`` types, or a ``BAD_USER_INPUT`` error
    naming ``field``."""
    wanted = (expected,) if isinstance(expected, str) else expected
    parts = split(raw)
    if parts is None:
        raise DomainError(
            ErrorCode.BAD_USER_INPUT,
            f"Not a global id; expected one like {PREFIX}{wanted[0]}/123.",
            field=field,
        )
    type_name, key = parts
    if type_name not in wanted:
        raise DomainError(
            ErrorCode.BAD_USER_INPUT,
            f"This is the id of a {type_name}; expected the id of a {' or '.join(wanted)}.",
            field=field,
        )
    if not is_key(key):  # well formed, but beyond any row's key
        raise DomainError(ErrorCode.NOT_FOUND, f"No {type_name} has this id.", field=field)
    return key


def key_of(trusted: str) -> int:
    """The key inside a global id this service produced (an object's own field)."""
    return int(trusted.rsplit("/", 1)[1])


# Which type the ids under each event-payload key belong to. Payloads are stored with integer
# keys; ``payload_for_clients`` gives them the form every other id on the API has.
PAYLOAD_ID_TYPES: Mapping[str, str] = {
    "orderId": "Order",
    "orderIds": "Order",
    "affectedOrderIds": "Order",
    "lineId": "OrderLine",
    "skuId": "Sku",
    "productId": "Product",
    "logisticsMethodId": "LogisticsMethod",
    "partnershipId": "Partnership",
    "afterSalesId": "AfterSalesOrder",
    "afterSalesIds": "AfterSalesOrder",
    "withdrawalId": "Withdrawal",
    "warehouseId": "CloudWarehouse",
    "stockWarehouseId": "CloudWarehouse",
    "supplierId": "Organisation",
    "buyerId": "Organisation",
    "distributorId": "Organisation",
    "quoteId": "Quote",
    "deputeId": "Depute",
    "storeId": "Store",
    "stockItemId": "StockItem",
    "slaBreachId": "SlaBreach",
    "productLinkId": "ProductLink",
    "storeProductId": "StoreProduct",
    "storeVariantId": "StoreVariant",
    "walletId": "Wallet",
    "thirdPartyWarehouseId": "ThirdPartyWarehouse",
    "userId": "User",
    "organisationId": "Organisation",
}


def payload_for_clients(value: Any) -> Any:
    """``value`` with every id under a known key written as a global id (recursively)."""
    if isinstance(value, list):
        return [payload_for_clients(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        type_name = PAYLOAD_ID_TYPES.get(k)
        if type_name is None:
            out[k] = payload_for_clients(v)
        elif isinstance(v, list):
            out[k] = [_id_value(type_name, x) for x in v]
        else:
            out[k] = _id_value(type_name, v)
    return out


def _id_value(type_name: str, v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):
        return gid(type_name, v)
    return v
