"""The third-party warehouse wire format: the spec a real provider's adapter is written against.

We push fulfilment (outbound) orders and after-sales returns (inbound stock-in) to a warehouse
and learn their progress from signed status callbacks. Everything is JSON over HTTPS.

Connection
    Each connection has a base URL, an API key and a callback secret. Every request carries
    ``X-Warehouse-Key: <api key>``; a missing or wrong key is answered 401 ``UNAUTHORIZED``.

Errors
    Every error is ``{"error": {"code": "<CODE>", "message": "<text for people>"}}``:

    * 400 ``INVALID``: the body or a header does not follow this spec (the message says which).
    * 401 ``UNAUTHORIZED``: missing or wrong ``X-Warehouse-Key``.
    * 404 ``NOT_FOUND``: no order or return with that reference (or no such path).
    * 409 ``CANCEL_REFUSED`` (or another code): the warehouse refuses, e.g. picking has started.
    * 422 ``IDEMPOTENCY_KEY_REUSED``: an ``Idempotency-Key`` repeated with another request.
    * 429 and 5xx (any code): transient; try again later with the same idempotency key.

    Anything else in 4xx is a permanent failure of that request.

Idempotency
    Every POST carries ``Idempotency-Key: <opaque string, 1-255 printable ASCII>`` (missing →
    400). The warehouse stores the successful (2xx) response of a key and answers a repeat of
    the same request (same method, path and JSON body) with it, adding the header
    ``Idempotent-Replayed: true``, instead of acting twice. The same key with another request
    is answered 422. An error is not stored: the request may be retried with the same key.
    Creations are also idempotent by ``reference`` (below), so even a retry under a new key
    never makes a second order.

References
    Orders and returns are keyed by OUR ``reference`` (our order id), unique per connection:
    1-100 characters of ``A-Z a-z 0-9 . _ : -``, starting with a letter or digit, so it is safe
    in a URL path.

Values
    Times are ISO 8601 with a UTC offset, e.g. ``2024-03-01T10:00:00Z`` or ``...+00:00``; we
    read any offset and convert to UTC. Quantities are JSON integers (never floats), 1 to
    1,000,000 (``received_quantity`` from 0). Strings are at most 255 characters; a request has
    at most 500 items. Unknown keys are ignored, so a provider may send more.

Endpoints::

    GET  /v1/ping                                  -> 200 {"ok": true, "warehouse": "<name>"}
    POST /v1/outbound-orders                       -> 201 <order>   (200 <order> if it exists)
    GET  /v1/outbound-orders/{reference}           -> 200 <order>   | 404
    POST /v1/outbound-orders/{reference}/cancel    -> 200 <order>   | 404 | 409 CANCEL_REFUSED
    POST /v1/outbound-orders/cancellations         -> 200 {"results": [...]}   (optional, below)
    POST /v1/inbound-returns                       -> 201 <return>  (200 <return> if it exists)
    GET  /v1/inbound-returns/{reference}           -> 200 <return>  | 404
    POST /v1/inbound-returns/{reference}/cancel    -> 200 <return>  | 404 | 409 CANCEL_REFUSED

Response bodies are the bare ``<order>`` or ``<return>`` object (not wrapped).

Outbound orders (fulfilment: the warehouse picks, packs and ships to the recipient)
    Request body::

        {"reference": "1042",
         "recipient": {"name", "address1", "address2"?, "city", "province"?,
                       "country": "GB" (ISO 3166 alpha-2), "zip" ("" where there is none),
                       "phone"?},
         "items": [{"sku": "TEE-R-M", "quantity": 2, "name"?: "Tee red M"}],   # non-empty,
                                                                    # each sku at most once
         "callback_url"?: "https://us.example/hooks/warehouse/7"}

    A reference that already exists is answered 200 with the existing order, whatever the body
    (like ShipBob's ``reference_id``): never a second order. An order::

        {"id": "WO-1", "reference": "1042", "status": "RECEIVED",
         "carrier": null, "tracking_number": null, "reason": null,
         "items": [{"sku": "TEE-R-M", "quantity": 2, "name": "Tee red M"}],
         "created_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-01T10:00:00Z"}

    Statuses move forward: ``RECEIVED → PICKING → PACKED → SHIPPED`` (steps may be skipped).
    ``SHIPPED`` always has ``carrier`` and ``tracking_number``. ``EXCEPTION`` (from any status
    before SHIPPED) always has a ``reason``; it may later resolve to a following status or be
    cancelled. ``CANCELLED`` is final. Cancel is accepted in RECEIVED and EXCEPTION, repeated
    on a CANCELLED order it answers 200 again, and in PICKING, PACKED or SHIPPED it is refused:
    409 ``{"error": {"code": "CANCEL_REFUSED", "message": "order is PICKING"}}``.

Cancelling many outbound orders in one request (optional)
    Request body (1 to 100 references, each at most once)::

        {"cancellations": [{"reference": "1042"}, {"reference": "1043"}]}

    Answered 200 with one result per reference, in the order asked: what the per-order cancel
    would have answered, as its HTTP status with the order or the error body::

        {"results": [{"reference": "1042", "status": 200, "order": <order>},
                     {"reference": "1043", "status": 409,
                      "error": {"code": "CANCEL_REFUSED", "message": "order is PICKING"}}]}

    Each cancellation stands alone (one refused or unknown reference does not stop the
    others) and is idempotent as a per-order cancel is. A warehouse that does not offer this
    endpoint answers 404 (or 405): the shipper then cancels order by order. The shipper uses it
    for cancels that come together; a lone cancel goes to the per-order endpoint.

Inbound returns (after-sales stock-in)
    Request body::

        {"reference": "R-1042-1", "original_reference"?: "1042",
         "items": [{"sku": "TEE-R-M", "quantity": 1, "reason"?: "damaged"}],
         "callback_url"?: "https://..."}

    An existing reference is answered 200 with the existing return. A return::

        {"id": "WR-1", "reference": "R-1042-1", "status": "AWAITING_ARRIVAL", "reason": null,
         "items": [{"sku": "TEE-R-M", "quantity": 1, "received_quantity": 0}],
         "created_at": "...", "updated_at": "..."}

    Statuses: ``AWAITING_ARRIVAL → RECEIVED`` (stocked in; ``received_quantity`` says how many
    of each SKU, which may differ from ``quantity``), ``EXCEPTION`` (with a ``reason``) and the
    final ``CANCELLED``. Cancel is refused (409 ``CANCEL_REFUSED``) once RECEIVED.

Status callbacks (the warehouse calls us)
    On every change the warehouse makes on its own (not on a cancel we asked for: its response
    is the confirmation), it POSTs to the ``callback_url`` of the order or return::

        {"event_id": "5f0c...-uuid", "type": "outbound.status" | "return.status",
         "reference": "1042", "status": "SHIPPED",
         "carrier"?: "DHL", "tracking_number"?: "JD0001", "reason"?: null,
         "items"?: [{"sku", "quantity", "received_quantity"}],      # returns
         "occurred_at": "2024-03-01T12:00:00Z"}

    with the headers ``X-Warehouse-Event-Id`` (the body's ``event_id``),
    ``X-Warehouse-Timestamp`` (unix seconds, an integer) and
    ``X-Warehouse-Signature: v1=<hex HMAC-SHA256>`` of ``f"{timestamp}.".encode() + raw body``
    keyed with the connection's callback secret (see ``sign_callback``). A receiver verifies the
    signature on the raw body (``verify_callback``), rejects a timestamp more than 300 s (its
    tolerance) away from its clock, and deduplicates on the event id: a redelivery reuses the
    event id. Test vector: secret ``whsec_test``, timestamp ``1700000000``, body
    ``{"event_id":"e1"}`` → ``v1=8a9b910184f1d9ed3590e106c991e230a182f3b9356c7c1ed91c013d17ed0775``.
    Any 2xx answer acknowledges. Callbacks may come late, twice or out of order; a
    receiver that needs certainty GETs the order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

__all__ = [
    "API_PREFIX",
    "DEFAULT_TOLERANCE_SECONDS",
    "ERROR_CANCEL_REFUSED",
    "ERROR_IDEMPOTENCY_KEY_REUSED",
    "ERROR_INVALID",
    "ERROR_NOT_FOUND",
    "ERROR_UNAUTHORIZED",
    "HEADER_API_KEY",
    "HEADER_EVENT_ID",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_IDEMPOTENT_REPLAYED",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_CANCELLATIONS",
    "PATH_INBOUND_RETURNS",
    "PATH_OUTBOUND_CANCELLATIONS",
    "PATH_OUTBOUND_ORDERS",
    "PATH_PING",
    "SIGNATURE_VERSION",
    "CallbackSignatureError",
    "CallbackType",
    "CancellationResult",
    "OutboundItem",
    "OutboundOrderRequest",
    "OutboundStatus",
    "Recipient",
    "ReturnItem",
    "ReturnLine",
    "ReturnRequest",
    "ReturnStatus",
    "SignatureFailure",
    "WarehouseCallback",
    "WarehouseOrder",
    "WarehousePayloadError",
    "WarehouseReturn",
    "cancellations_body",
    "check_idempotency_key",
    "check_reference",
    "error_body",
    "format_time",
    "parse_callback",
    "parse_cancellations",
    "parse_cancellations_request",
    "parse_error",
    "parse_order",
    "parse_outbound_order_request",
    "parse_return",
    "parse_return_request",
    "sign_callback",
    "verify_callback",
]

API_PREFIX = "/v1"
PATH_PING = f"{API_PREFIX}/ping"
PATH_OUTBOUND_ORDERS = f"{API_PREFIX}/outbound-orders"
PATH_INBOUND_RETURNS = f"{API_PREFIX}/inbound-returns"
PATH_OUTBOUND_CANCELLATIONS = f"{PATH_OUTBOUND_ORDERS}/cancellations"

HEADER_API_KEY = "X-Warehouse-Key"
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
HEADER_IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
HEADER_EVENT_ID = "X-Warehouse-Event-Id"
HEADER_TIMESTAMP = "X-Warehouse-Timestamp"
HEADER_SIGNATURE = "X-Warehouse-Signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300

ERROR_INVALID = "INVALID"
ERROR_UNAUTHORIZED = "UNAUTHORIZED"
ERROR_NOT_FOUND = "NOT_FOUND"
ERROR_CANCEL_REFUSED = "CANCEL_REFUSED"
ERROR_IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"

MAX_TEXT = 255
MAX_QUANTITY = 1_000_000
MAX_ITEMS = 500
MAX_CANCELLATIONS = 100

_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(rf"{SIGNATURE_VERSION}=([0-9a-fA-F]{{64}})")

_T = TypeVar("_T")
_S = TypeVar("_S", bound=StrEnum)

SignatureFailure = Literal["missing", "malformed", "expired", "future", "mismatch"]


class OutboundStatus(StrEnum):
    RECEIVED = "RECEIVED"
    PICKING = "PICKING"
    PACKED = "PACKED"
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"
    EXCEPTION = "EXCEPTION"


class ReturnStatus(StrEnum):
    AWAITING_ARRIVAL = "AWAITING_ARRIVAL"
    RECEIVED = "RECEIVED"
    CANCELLED = "CANCELLED"
    EXCEPTION = "EXCEPTION"


class CallbackType(StrEnum):
    OUTBOUND_STATUS = "outbound.status"
    RETURN_STATUS = "return.status"


class WarehousePayloadError(ValueError):
    """A warehouse payload (request, response, callback) that does not follow the protocol."""


class CallbackSignatureError(Exception):
    """A status callback whose signature headers do not prove it came from the warehouse.

    ``reason`` is one of ``missing``, ``malformed``, ``expired``, ``future``, ``mismatch``.
    """

    def __init__(self, reason: SignatureFailure, detail: str = "") -> None:
        super().__init__(f"callback signature {reason}" + (f": {detail}" if detail else ""))
        self.reason: SignatureFailure = reason


# --- field checks (shared by the dataclasses and the parsers) ---------------------------------


def _fail(where: str, message: str) -> WarehousePayloadError:
    return WarehousePayloadError(f"{where}: {message}" if where else message)


def _text(value: Any, where: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise _fail(where, f"expected a string, got {type(value).__name__}")
    if not optional and not value.strip():
        raise _fail(where, "must not be blank")
    if len(value) > MAX_TEXT:
        raise _fail(where, f"longer than {MAX_TEXT} characters")


def _quantity(value: Any, where: str, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {value!r}")
    if not minimum <= value <= MAX_QUANTITY:
        raise _fail(where, f"must be between {minimum} and {MAX_QUANTITY}, got {value}")


def _utc(value: Any, where: str) -> None:
    if not isinstance(value, datetime) or value.utcoffset() != timedelta(0):
        raise _fail(where, f"expected a tz-aware UTC datetime, got {value!r}")


def _items(value: Any, kind: type, where: str) -> None:
    if not isinstance(value, tuple) or not value:
        raise _fail(where, "expected a non-empty tuple")
    if len(value) > MAX_ITEMS:
        raise _fail(where, f"more than {MAX_ITEMS} items")
    if not all(isinstance(item, kind) for item in value):
        raise _fail(where, f"expected {kind.__name__} items")
    skus = [item.sku for item in value]
    if len(set(skus)) != len(skus):
        raise _fail(where, "each sku may appear only once")


def _freeze_items(obj: Any) -> None:
    """Store a list given for ``items`` of a frozen dataclass as a tuple."""
    if isinstance(obj.items, list):
        object.__setattr__(obj, "items", tuple(obj.items))


def check_reference(value: Any, where: str = "reference") -> str:
    """``value`` if it is a valid reference (see the module docstring), else raise."""
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
        raise _fail(where, f"expected 1-100 of A-Z a-z 0-9 . _ : - (no leading symbol), {value!r}")
    return value


def check_idempotency_key(value: Any) -> str:
    """``value`` if it is a valid ``Idempotency-Key`` (1-255 printable ASCII), else raise."""
    if not isinstance(value, str) or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise _fail("Idempotency-Key", "expected 1-255 printable ASCII characters")
    return value


def _callback_url(value: Any, where: str) -> None:
    if value is None:
        return
    _text(value, where)
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise _fail(where, f"expected an absolute http(s) URL, got {value!r}")


def format_time(moment: datetime) -> str:
    """A tz-aware datetime as the protocol writes it: ISO 8601 in UTC with ``Z``."""
    if moment.utcoffset() is None:
        raise ValueError(f"a tz-aware datetime is required, not {moment!r}")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- what we send -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who receives an outbound order. ``country`` is ISO 3166 alpha-2 (upper-cased here)."""

    name: str
    address1: str
    city: str
    country: str
    zip: str
    address2: str | None = None
    province: str | None = None
    phone: str | None = None

    def __post_init__(self) -> None:
        for key in ("name", "address1", "city"):
            _text(getattr(self, key), key)
        for key in ("zip", "address2", "province", "phone"):
            _text(getattr(self, key), key, optional=True)
        if self.zip is None:
            raise _fail("zip", 'is required ("" where the country has none)')
        country = self.country.upper() if isinstance(self.country, str) else self.country
        if not isinstance(country, str) or not _COUNTRY.fullmatch(country):
            raise _fail("country", f"expected ISO 3166 alpha-2 such as 'GB', got {self.country!r}")
        object.__setattr__(self, "country", country)

    @classmethod
    def from_shipping_address(cls, address: Mapping[str, str | None]) -> Recipient:
        """From our shipping-address mapping (``country_code``; "" for an absent value)."""
        return cls(
            name=address.get("name") or "",
            address1=address.get("address1") or "",
            city=address.get("city") or "",
            country=address.get("country_code") or address.get("country") or "",
            zip=address.get("zip") or "",
            address2=address.get("address2") or None,
            province=address.get("province") or None,
            phone=address.get("phone") or None,
        )

    def to_json(self) -> dict[str, str]:
        data = {"name": self.name, "address1": self.address1, "city": self.city}
        data |= {"country": self.country, "zip": self.zip}
        optional = {"address2": self.address2, "province": self.province, "phone": self.phone}
        return data | {key: value for key, value in optional.items() if value is not None}


@dataclass(frozen=True, slots=True)
class OutboundItem:
    """A line of an outbound order: ``quantity`` units of ``sku``."""

    sku: str
    quantity: int
    name: str | None = None

    def __post_init__(self) -> None:
        _text(self.sku, "sku")
        _quantity(self.quantity, "quantity")
        _text(self.name, "name", optional=True)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sku": self.sku, "quantity": self.quantity}
        return data | ({"name": self.name} if self.name is not None else {})


@dataclass(frozen=True, slots=True)
class ReturnItem:
    """A line of a return we announce: ``quantity`` units of ``sku`` coming back."""

    sku: str
    quantity: int
    reason: str | None = None

    def __post_init__(self) -> None:
        _text(self.sku, "sku")
        _quantity(self.quantity, "quantity")
        _text(self.reason, "reason", optional=True)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sku": self.sku, "quantity": self.quantity}
        return data | ({"reason": self.reason} if self.reason is not None else {})


@dataclass(frozen=True, slots=True)
class OutboundOrderRequest:
    """The body of ``POST /v1/outbound-orders``."""

    reference: str
    recipient: Recipient
    items: tuple[OutboundItem, ...]
    callback_url: str | None = None

    def __post_init__(self) -> None:
        check_reference(self.reference)
        if not isinstance(self.recipient, Recipient):
            raise _fail("recipient", "expected a Recipient")
        _freeze_items(self)
        _items(self.items, OutboundItem, "items")
        _callback_url(self.callback_url, "callback_url")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "reference": self.reference,
            "recipient": self.recipient.to_json(),
            "items": [item.to_json() for item in self.items],
        }
        return data | ({"callback_url": self.callback_url} if self.callback_url else {})


@dataclass(frozen=True, slots=True)
class ReturnRequest:
    """The body of ``POST /v1/inbound-returns``."""

    reference: str
    items: tuple[ReturnItem, ...]
    original_reference: str | None = None
    callback_url: str | None = None

    def __post_init__(self) -> None:
        check_reference(self.reference)
        if self.original_reference is not None:
            check_reference(self.original_reference, "original_reference")
        _freeze_items(self)
        _items(self.items, ReturnItem, "items")
        _callback_url(self.callback_url, "callback_url")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reference": self.reference}
        if self.original_reference is not None:
            data["original_reference"] = self.original_reference
        data["items"] = [item.to_json() for item in self.items]
        return data | ({"callback_url": self.callback_url} if self.callback_url else {})


# --- what the warehouse answers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """A line of a return as the warehouse reports it, with what actually arrived."""

    sku: str
    quantity: int
    received_quantity: int

    def __post_init__(self) -> None:
        _text(self.sku, "sku")
        _quantity(self.quantity, "quantity")
        _quantity(self.received_quantity, "received_quantity", minimum=0)


def _check_outbound_details(
    status: OutboundStatus, carrier: str | None, tracking: str | None, reason: str | None
) -> None:
    _text(carrier, "carrier", optional=True)
    _text(tracking, "tracking_number", optional=True)
    _text(reason, "reason", optional=True)
    if status is OutboundStatus.SHIPPED and not (carrier and tracking):
        raise _fail("status", "SHIPPED needs a carrier and a tracking_number")
    if status is OutboundStatus.EXCEPTION and not reason:
        raise _fail("status", "EXCEPTION needs a reason")


@dataclass(frozen=True, slots=True)
class WarehouseOrder:
    """An outbound order as the warehouse has it."""

    id: str
    reference: str
    status: OutboundStatus
    carrier: str | None
    tracking_number: str | None
    reason: str | None
    items: tuple[OutboundItem, ...]
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        _text(self.id, "id")
        check_reference(self.reference)
        if not isinstance(self.status, OutboundStatus):
            raise _fail("status", f"expected an OutboundStatus, got {self.status!r}")
        _check_outbound_details(self.status, self.carrier, self.tracking_number, self.reason)
        _freeze_items(self)
        _items(self.items, OutboundItem, "items")
        _utc(self.created_at, "created_at")
        _utc(self.updated_at, "updated_at")


@dataclass(frozen=True, slots=True)
class WarehouseReturn:
    """An inbound return as the warehouse has it."""

    id: str
    reference: str
    status: ReturnStatus
    reason: str | None
    items: tuple[ReturnLine, ...]
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        _text(self.id, "id")
        check_reference(self.reference)
        if not isinstance(self.status, ReturnStatus):
            raise _fail("status", f"expected a ReturnStatus, got {self.status!r}")
        _text(self.reason, "reason", optional=True)
        if self.status is ReturnStatus.EXCEPTION and not self.reason:
            raise _fail("status", "EXCEPTION needs a reason")
        _freeze_items(self)
        _items(self.items, ReturnLine, "items")
        _utc(self.created_at, "created_at")
        _utc(self.updated_at, "updated_at")


@dataclass(frozen=True, slots=True)
class WarehouseCallback:
    """A parsed status callback. ``items`` is empty except for returns."""

    event_id: str
    type: CallbackType
    reference: str
    status: OutboundStatus | ReturnStatus
    occurred_at: datetime
    carrier: str | None = None
    tracking_number: str | None = None
    reason: str | None = None
    items: tuple[ReturnLine, ...] = ()

    def __post_init__(self) -> None:
        _text(self.event_id, "event_id")
        check_reference(self.reference)
        expected = OutboundStatus if self.type is CallbackType.OUTBOUND_STATUS else ReturnStatus
        if not isinstance(self.type, CallbackType) or not isinstance(self.status, expected):
            raise _fail("status", f"{self.status!r} is not a status of {self.type!r}")
        if isinstance(self.status, OutboundStatus):
            _check_outbound_details(self.status, self.carrier, self.tracking_number, self.reason)
        else:
            _text(self.reason, "reason", optional=True)
        _freeze_items(self)
        if self.items:
            _items(self.items, ReturnLine, "items")
        _utc(self.occurred_at, "occurred_at")


# --- parsing ----------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"expected a JSON object, got {type(value).__name__}")
    return value


def _require(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise _fail(where, f"missing key {key!r}")
    return obj[key]


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _fail(where, "expected a non-empty list")
    return value


def _build(where: str, factory: type[_T], **fields: Any) -> _T:
    """``factory(**fields)``, its validation errors prefixed with ``where``."""
    try:
        return factory(**fields)
    except WarehousePayloadError as error:
        raise _fail(where, str(error)) from None


def _time(value: Any, where: str) -> datetime:
    _text(value, where)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _fail(where, f"not an ISO 8601 timestamp: {value!r}") from None
    if moment.utcoffset() is None:
        raise _fail(where, f"timestamp without a UTC offset: {value!r}")
    return moment.astimezone(UTC)


def _status(value: Any, enum: type[_S], where: str) -> _S:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise _fail(where, f"expected one of {allowed}, got {value!r}") from None


def _outbound_item(payload: Any, where: str) -> OutboundItem:
    item = _object(payload, where)
    sku, quantity = _require(item, "sku", where), _require(item, "quantity", where)
    return _build(where, OutboundItem, sku=sku, quantity=quantity, name=item.get("name"))


def _return_item(payload: Any, where: str) -> ReturnItem:
    item = _object(payload, where)
    sku, quantity = _require(item, "sku", where), _require(item, "quantity", where)
    return _build(where, ReturnItem, sku=sku, quantity=quantity, reason=item.get("reason"))


def _return_line(payload: Any, where: str) -> ReturnLine:
    item = _object(payload, where)
    fields = {key: _require(item, key, where) for key in ("sku", "quantity", "received_quantity")}
    return _build(where, ReturnLine, **fields)


def _recipient(payload: Any, where: str) -> Recipient:
    raw = _object(payload, where)
    required = ("name", "address1", "city", "country", "zip")
    fields = {key: _require(raw, key, where) for key in required}
    fields |= {key: raw.get(key) for key in ("address2", "province", "phone")}
    return _build(where, Recipient, **fields)


def parse_outbound_order_request(payload: Any) -> OutboundOrderRequest:
    """The body of ``POST /v1/outbound-orders`` (the warehouse's side)."""
    body = _object(payload, "body")
    items = _list(_require(body, "items", "body"), "items")
    return _build(
        "body",
        OutboundOrderRequest,
        reference=_require(body, "reference", "body"),
        recipient=_recipient(_require(body, "recipient", "body"), "recipient"),
        items=tuple(_outbound_item(item, f"items[{i}]") for i, item in enumerate(items)),
        callback_url=body.get("callback_url"),
    )


def parse_return_request(payload: Any) -> ReturnRequest:
    """The body of ``POST /v1/inbound-returns`` (the warehouse's side)."""
    body = _object(payload, "body")
    items = _list(_require(body, "items", "body"), "items")
    return _build(
        "body",
        ReturnRequest,
        reference=_require(body, "reference", "body"),
        items=tuple(_return_item(item, f"items[{i}]") for i, item in enumerate(items)),
        original_reference=body.get("original_reference"),
        callback_url=body.get("callback_url"),
    )


def parse_order(payload: Any) -> WarehouseOrder:
    """An outbound order from the warehouse API; ``WarehousePayloadError`` names the field."""
    order = _object(payload, "order")
    items = _list(_require(order, "items", "order"), "order.items")
    return _build(
        "order",
        WarehouseOrder,
        id=_require(order, "id", "order"),
        reference=_require(order, "reference", "order"),
        status=_status(_require(order, "status", "order"), OutboundStatus, "order.status"),
        carrier=order.get("carrier"),
        tracking_number=order.get("tracking_number"),
        reason=order.get("reason"),
        items=tuple(_outbound_item(item, f"order.items[{i}]") for i, item in enumerate(items)),
        created_at=_time(_require(order, "created_at", "order"), "order.created_at"),
        updated_at=_time(_require(order, "updated_at", "order"), "order.updated_at"),
    )


def parse_return(payload: Any) -> WarehouseReturn:
    """An inbound return from the warehouse API; ``WarehousePayloadError`` names the field."""
    ret = _object(payload, "return")
    items = _list(_require(ret, "items", "return"), "return.items")
    return _build(
        "return",
        WarehouseReturn,
        id=_require(ret, "id", "return"),
        reference=_require(ret, "reference", "return"),
        status=_status(_require(ret, "status", "return"), ReturnStatus, "return.status"),
        reason=ret.get("reason"),
        items=tuple(_return_line(item, f"return.items[{i}]") for i, item in enumerate(items)),
        created_at=_time(_require(ret, "created_at", "return"), "return.created_at"),
        updated_at=_time(_require(ret, "updated_at", "return"), "return.updated_at"),
    )


def parse_callback(body: bytes) -> WarehouseCallback:
    """A status callback's raw body (verify its signature first, with ``verify_callback``)."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _fail("callback", "the body is not JSON") from None
    event = _object(payload, "callback")
    kind = _status(_require(event, "type", "callback"), CallbackType, "callback.type")
    statuses = OutboundStatus if kind is CallbackType.OUTBOUND_STATUS else ReturnStatus
    raw_items = event.get("items") or []
    if not isinstance(raw_items, list):
        raise _fail("callback.items", "expected a list")
    return _build(
        "callback",
        WarehouseCallback,
        event_id=_require(event, "event_id", "callback"),
        type=kind,
        reference=_require(event, "reference", "callback"),
        status=_status(_require(event, "status", "callback"), statuses, "callback.status"),
        occurred_at=_time(_require(event, "occurred_at", "callback"), "callback.occurred_at"),
        carrier=event.get("carrier"),
        tracking_number=event.get("tracking_number"),
        reason=event.get("reason"),
        items=tuple(_return_line(item, f"callback.items[{i}]") for i, item in enumerate(raw_items)),
    )


# --- cancelling many outbound orders ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CancellationResult:
    """One reference's answer in a cancellations request: ``order`` when ``status`` is 2xx,
    else the error's ``code`` and ``message`` (as ``parse_error`` bounds them)."""

    reference: str
    status: int
    order: WarehouseOrder | None = None
    code: str | None = None
    message: str = ""


def cancellations_body(references: list[str]) -> dict[str, Any]:
    """The request body cancelling ``references`` (checked: 1 to MAX_CANCELLATIONS, valid,
    each once)."""
    _cancellation_references(references, "references")
    return {"cancellations": [{"reference": reference} for reference in references]}


def _cancellation_references(references: list[Any], where: str) -> list[str]:
    if not 1 <= len(references) <= MAX_CANCELLATIONS:
        raise _fail(where, f"expected 1 to {MAX_CANCELLATIONS} references, got {len(references)}")
    for i, reference in enumerate(references):
        check_reference(reference, f"{where}[{i}]")
    if len(set(references)) != len(references):
        raise _fail(where, "a reference is listed twice")
    return references


def parse_cancellations_request(payload: Any) -> list[str]:
    """The references of a cancellations request body (the warehouse's side)."""
    body = _object(payload, "body")
    entries = _require(body, "cancellations", "body")
    if not isinstance(entries, list):
        raise _fail("cancellations", "expected a list")
    references = [
        _require(_object(entry, f"cancellations[{i}]"), "reference", f"cancellations[{i}]")
        for i, entry in enumerate(entries)
    ]
    return _cancellation_references(references, "cancellations")


def parse_cancellations(payload: Any, references: list[str]) -> list[CancellationResult]:
    """The results of cancelling ``references``, one each in that order;
    ``WarehousePayloadError`` if the answer is not that."""
    results = _require(_object(payload, "answer"), "results", "answer")
    if not isinstance(results, list) or len(results) != len(references):
        raise _fail("results", f"expected a list of {len(references)} results")
    parsed = []
    for i, (raw, reference) in enumerate(zip(results, references, strict=True)):
        where = f"results[{i}]"
        result = _object(raw, where)
        if result.get("reference") != reference:
            raise _fail(f"{where}.reference", f"expected {reference!r}")
        status = result.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise _fail(f"{where}.status", f"expected an HTTP status, got {status!r}")
        if 200 <= status < 300:
            order = parse_order(_require(result, "order", where))
            if order.reference != reference:
                raise _fail(f"{where}.order.reference", f"expected {reference!r}")
            parsed.append(CancellationResult(reference, status, order))
        else:
            code, message = parse_error(result) or (None, "")
            parsed.append(CancellationResult(reference, status, code=code, message=message))
    return parsed


def error_body(code: str, message: str) -> dict[str, Any]:
    """The protocol's error body."""
    return {"error": {"code": code, "message": message}}


def parse_error(payload: Any) -> tuple[str, str] | None:
    """``(code, message)`` of an error body, or None if it is not one (never raises)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return None
    message = error.get("message")
    # bounded: what the API shows of a refusal is the protocol's code and a short reason
    return error["code"][:64], message[:200] if isinstance(message, str) else ""


# --- callback signatures ----------------------------------------------------------------------


def sign_callback(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Warehouse-Signature`` value: ``v1=`` + hex HMAC-SHA256 of ``"{ts}." + body``."""
    if not secret:
        raise ValueError("a callback secret is required to sign")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"timestamp must be a non-negative int of unix seconds, not {timestamp!r}")
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_callback(
    secret: str,
    *,
    signature_header: str | None,
    timestamp_header: str | None,
    body: bytes,
    now: datetime,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Check a callback's signature (constant-time) and timestamp; raise if either fails.

    ``now`` is the receiver's clock (tz-aware). The signature is checked before the age, so
    ``expired``/``future`` mean an authentic but replayed or skewed callback.
    Raises ``CallbackSignatureError`` with reason missing, malformed, mismatch, expired or
    future; ``ValueError`` for a bad ``secret`` or ``now`` (our configuration, not the call).
    """
    if not secret:
        raise ValueError("a callback secret is required to verify")
    if now.utcoffset() is None:
        raise ValueError(f"now must be tz-aware, not {now!r}")
    if not signature_header or not signature_header.strip():
        raise CallbackSignatureError("missing", f"no {HEADER_SIGNATURE} header")
    if not timestamp_header or not timestamp_header.strip():
        raise CallbackSignatureError("missing", f"no {HEADER_TIMESTAMP} header")
    if not _TIMESTAMP.fullmatch(timestamp_header.strip()):
        raise CallbackSignatureError("malformed", f"{HEADER_TIMESTAMP} is not unix seconds")
    signature = _SIGNATURE.fullmatch(signature_header.strip())
    if signature is None:
        raise CallbackSignatureError("malformed", f"{HEADER_SIGNATURE} is not v1=<64 hex>")
    timestamp = int(timestamp_header.strip())
    expected = sign_callback(secret, timestamp, body).encode()
    given = f"{SIGNATURE_VERSION}={signature.group(1).lower()}".encode()
    if not hmac.compare_digest(expected, given):
        raise CallbackSignatureError("mismatch", "the signature does not match the body")
    age = now.timestamp() - timestamp
    if age > tolerance_seconds:
        raise CallbackSignatureError("expired", f"signed {age:.0f}s ago")
    if -age > tolerance_seconds:
        raise CallbackSignatureError("future", f"signed {-age:.0f}s in the future")
