"""A third-party warehouse in memory, speaking ``protocol``: for tests and the demo.

The API (``/v1/...``) checks ``X-Warehouse-Key`` and honours ``Idempotency-Key``. Ids are
``WO-1``, ``WO-2``... for outbound orders and ``WR-1``... for returns. Control endpoints, no auth:

* ``POST /_sim/outbound/{reference}/advance`` ``{"status": "PICKING" | "PACKED" | "SHIPPED" |
  "EXCEPTION", "carrier"?, "tracking_number"?, "reason"?, "deliver"?: true}`` moves the order
  forward (SHIPPED defaults a carrier and tracking number, EXCEPTION a reason) and, if it has a
  ``callback_url`` and ``deliver`` is not false, POSTs the signed callback. Answers
  ``{"order", "event_id", "callback_status"}``: the status our receiver answered, or null.
  With ``"deliver": false`` the callback is signed and kept, but only sent by ``redeliver``.
* ``POST /_sim/returns/{reference}/receive`` ``{"items"?: [{"sku", "received_quantity"}],
  "deliver"?}`` stocks a return in (all of it without ``items``; unlisted SKUs as 0) and calls
  back. ``POST /_sim/returns/{reference}/advance`` ``{"status": "EXCEPTION", "reason"?}`` too.
* ``POST /_sim/redeliver/{event_id}`` re-sends a callback byte for byte (same event id,
  timestamp and signature); ``{"fresh_timestamp": true}`` re-signs it with the current time.
* ``GET /_sim/state`` all orders, returns and callbacks; ``GET /_sim/requests`` the API requests
  received (``method``, ``path``, ``idempotency_key``, ``status`` (null if dropped),
  ``replayed``, ``fault``); ``GET /_sim/effects`` how many creations and cancellations were
  really applied: a retry must never add one.
* ``POST /_sim/config`` ``{"callback_secret"}`` sets the secret callbacks are signed with (the
  one ``authoriseThirdPartyWarehouse`` issued).
* ``POST /_sim/faults``, any of: ``{"fail_next": n, "status": 503}`` answers the next n API
  requests with that status without acting; ``{"fail_after_next": n}`` handles the next n, then
  drops the connection instead of answering; ``{"drop_next": n}`` drops the next n without
  acting; ``{"delay": seconds}`` delays every API request; ``{"refuse_cancel": true}`` answers
  every cancel 409 ``CANCEL_REFUSED``; ``{"bulk_cancel": false}`` answers the cancellations
  endpoint 404, as a warehouse that does not offer it; ``{"reset": true}`` clears all faults.

A dropped connection sends the response head, then closes the connection before the body:
the client sees ``httpx.RemoteProtocolError`` (uvicorn logs "ASGI callable returned without
completing response"). Callbacks are POSTed with httpx (timeout 5 s); a failed delivery is
recorded (status null), never raised.

Run alone: ``python -m integrations.warehouses.simulator --port 8200 --key K --secret S``.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hmac
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from integrations.warehouses.protocol import (
    ERROR_CANCEL_REFUSED,
    ERROR_IDEMPOTENCY_KEY_REUSED,
    ERROR_INVALID,
    ERROR_NOT_FOUND,
    ERROR_UNAUTHORIZED,
    HEADER_API_KEY,
    HEADER_EVENT_ID,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_IDEMPOTENT_REPLAYED,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    PATH_INBOUND_RETURNS,
    PATH_OUTBOUND_CANCELLATIONS,
    PATH_OUTBOUND_ORDERS,
    PATH_PING,
    CallbackType,
    OutboundStatus,
    ReturnStatus,
    WarehousePayloadError,
    check_idempotency_key,
    error_body,
    format_time,
    parse_cancellations_request,
    parse_outbound_order_request,
    parse_return_request,
    sign_callback,
)

__all__ = ["WarehouseSimulator", "create_warehouse_simulator"]

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
Answer = tuple[int, dict[str, Any]]
ApiHandler = Callable[[dict[str, Any], dict[str, Any]], Answer]
_T = TypeVar("_T")

CALLBACK_TIMEOUT = 5.0
DEFAULT_CARRIER = "SimPost"
_OUTBOUND_STEPS = [
    OutboundStatus.RECEIVED,
    OutboundStatus.PICKING,
    OutboundStatus.PACKED,
    OutboundStatus.SHIPPED,
]
_CANCEL_REFUSED_OUTBOUND = {OutboundStatus.PICKING, OutboundStatus.PACKED, OutboundStatus.SHIPPED}
_EFFECTS = ("outbound_created", "outbound_cancelled", "returns_created", "returns_cancelled")


class SimError(Exception):
    """A refused request: answered with ``status`` and the protocol's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.code, self.message), self.status)


class DroppedConnection(Response):
    """Starts a response, then returns without its body: uvicorn closes the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})


@dataclass
class Stored:
    """A successful answer kept for an idempotency key."""

    fingerprint: str
    status: int
    payload: dict[str, Any]


@dataclass
class Callback:
    """A callback as sent: the redeliveries reuse ``body`` and ``headers`` as they are."""

    event_id: str
    url: str
    body: bytes
    headers: dict[str, str]
    deliveries: list[int | None] = field(default_factory=list)


@dataclass
class Faults:
    fail_next: int = 0
    fail_status: int = 503
    fail_after_next: int = 0
    drop_next: int = 0
    delay: float = 0.0
    refuse_cancel: bool = False
    bulk_cancel: bool = True  # the optional cancellations endpoint is offered


@dataclass
class Record:
    """An outbound order or return: ``public`` is exactly what the API shows."""

    public: dict[str, Any]
    callback_url: str | None


@dataclass
class SimState:
    """Everything the warehouse knows."""

    outbound_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    return_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    outbound: dict[str, Record] = field(default_factory=dict)
    returns: dict[str, Record] = field(default_factory=dict)
    idempotency: dict[str, Stored] = field(default_factory=dict)
    callbacks: dict[str, Callback] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    effects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_EFFECTS, 0))
    faults: Faults = field(default_factory=Faults)

    def order(self, reference: str) -> Record:
        if reference not in self.outbound:
            raise SimError(404, ERROR_NOT_FOUND, f"no outbound order {reference!r}")
        return self.outbound[reference]

    def ret(self, reference: str) -> Record:
        if reference not in self.returns:
            raise SimError(404, ERROR_NOT_FOUND, f"no inbound return {reference!r}")
        return self.returns[reference]


def _now() -> str:
    return format_time(datetime.now(UTC))


def _fingerprint(request: Request, body: dict[str, Any]) -> str:
    return f"{request.method} {request.url.path} {json.dumps(body, sort_keys=True)}"


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise SimError(400, ERROR_INVALID, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise SimError(400, ERROR_INVALID, "the body must be a JSON object")
    return body


def _parsed(parse: Callable[[Any], _T], value: Any) -> _T:
    """``parse(value)``; a protocol violation is answered 400 ``INVALID``."""
    try:
        return parse(value)
    except WarehousePayloadError as error:
        raise SimError(400, ERROR_INVALID, str(error)) from None


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SimError(400, ERROR_INVALID, f"{key} must be an integer >= 0")
    return value


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise SimError(400, ERROR_INVALID, f"{key} must be a string")
    return value or None


def _update(record: Record, **changes: Any) -> None:
    record.public.update(changes, updated_at=_now())


def _check_outbound_move(current: OutboundStatus, target: OutboundStatus) -> None:
    """Forward only; EXCEPTION from any open status, and out of it to any later step."""
    if current in (OutboundStatus.SHIPPED, OutboundStatus.CANCELLED):
        raise SimError(409, "INVALID_TRANSITION", f"order is {current}")
    if target is OutboundStatus.EXCEPTION or current is OutboundStatus.EXCEPTION:
        return
    if _OUTBOUND_STEPS.index(target) <= _OUTBOUND_STEPS.index(current):
        raise SimError(409, "INVALID_TRANSITION", f"order is {current}, not before {target}")


def _received_quantities(items: list[dict[str, Any]], raw: Any) -> dict[str, int]:
    """SKU -> quantity received: everything without ``raw``, else as listed (unlisted: 0)."""
    if raw is None:
        return {item["sku"]: item["quantity"] for item in items}
    if not isinstance(raw, list):
        raise SimError(400, ERROR_INVALID, "items must be a list")
    known = {item["sku"] for item in items}
    received = dict.fromkeys(known, 0)
    for entry in raw:
        if not isinstance(entry, dict) or entry.get("sku") not in known:
            raise SimError(400, ERROR_INVALID, f"not a SKU of this return: {entry!r}")
        received[entry["sku"]] = _count(entry, "received_quantity")
    return received


async def _deliver(callback: Callback, headers: dict[str, str] | None = None) -> int | None:
    """POST a callback; the receiver's status, or None if it could not be reached."""
    try:
        async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT) as http:
            response = await http.post(
                callback.url, content=callback.body, headers=headers or callback.headers
            )
    except httpx.HTTPError as exc:
        logger.warning("callback %s to %s failed: %r", callback.event_id, callback.url, exc)
        callback.deliveries.append(None)
        return None
    callback.deliveries.append(response.status_code)
    return response.status_code


class WarehouseSimulator:
    """The request handlers over one ``SimState``; see the module docstring."""

    def __init__(self, *, api_key: str, callback_secret: str, name: str) -> None:
        if not api_key or not callback_secret:
            raise ValueError("api_key and callback_secret are required")
        self.api_key = api_key
        self.secret = callback_secret
        self.name = name
        self.state = SimState()

    # --- the API: faults, authentication, idempotency around small synchronous handlers ---

    def api(self, handler: ApiHandler, *, post: bool = False) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            entry: dict[str, Any] = {
                "method": request.method,
                "path": request.url.path,
                "idempotency_key": request.headers.get(HEADER_IDEMPOTENCY_KEY),
                "status": None,
                "replayed": False,
                "fault": None,
            }
            self.state.requests.append(entry)
            response = await self._answer(request, handler, post, entry)
            if not isinstance(response, DroppedConnection):
                entry["status"] = response.status_code
            return response

        return endpoint

    async def _answer(
        self, request: Request, handler: ApiHandler, post: bool, entry: dict[str, Any]
    ) -> Response:
        faults = self.state.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.drop_next > 0:
            faults.drop_next -= 1
            entry["fault"] = "drop"
            logger.info("simulated: dropping %s %s unanswered", request.method, request.url.path)
            return DroppedConnection()
        if faults.fail_next > 0:
            faults.fail_next -= 1
            entry["fault"] = "fail"
            body = error_body("SIMULATED_FAILURE", "simulated failure")
            return JSONResponse(body, faults.fail_status)
        try:
            response = await self._handle(request, handler, post, entry)
        except SimError as error:
            response = error.response()
        if faults.fail_after_next > 0:
            faults.fail_after_next -= 1
            entry["fault"] = "fail_after"
            entry["lost_status"] = response.status_code
            logger.info("simulated: %s %s handled, answer lost", request.method, request.url.path)
            return DroppedConnection()
        return response

    async def _handle(
        self, request: Request, handler: ApiHandler, post: bool, entry: dict[str, Any]
    ) -> Response:
        given = request.headers.get(HEADER_API_KEY, "")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise SimError(401, ERROR_UNAUTHORIZED, f"missing or wrong {HEADER_API_KEY}")
        if not post:
            status, payload = handler(dict(request.path_params), {})
            return JSONResponse(payload, status)
        key = request.headers.get(HEADER_IDEMPOTENCY_KEY)
        if key is None:
            raise SimError(400, ERROR_INVALID, f"the {HEADER_IDEMPOTENCY_KEY} header is required")
        _parsed(check_idempotency_key, key)
        body = await _json_body(request)
        fingerprint = _fingerprint(request, body)
        stored = self.state.idempotency.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                message = f"{HEADER_IDEMPOTENCY_KEY} {key!r} was used for another request"
                raise SimError(422, ERROR_IDEMPOTENCY_KEY_REUSED, message)
            entry["replayed"] = True
            headers = {HEADER_IDEMPOTENT_REPLAYED: "true"}
            return JSONResponse(stored.payload, stored.status, headers=headers)
        status, payload = handler(dict(request.path_params), body)
        self.state.idempotency[key] = Stored(fingerprint, status, copy.deepcopy(payload))
        return JSONResponse(payload, status)

    def ping(self, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        return 200, {"ok": True, "warehouse": self.name}

    def create_outbound(self, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        request = _parsed(parse_outbound_order_request, body)
        existing = self.state.outbound.get(request.reference)
        if existing is not None:
            return 200, existing.public
        now = _now()
        public = {
            "id": f"WO-{next(self.state.outbound_ids)}",
            "reference": request.reference,
            "status": OutboundStatus.RECEIVED.value,
            "carrier": None,
            "tracking_number": None,
            "reason": None,
            "items": [item.to_json() for item in request.items],
            "created_at": now,
            "updated_at": now,
        }
        self.state.outbound[request.reference] = Record(public, request.callback_url)
        self.state.effects["outbound_created"] += 1
        return 201, public

    def get_outbound(self, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        return 200, self.state.order(params["reference"]).public

    def cancel_outbound(self, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        record = self.state.order(params["reference"])
        status = OutboundStatus(record.public["status"])
        if self.state.faults.refuse_cancel:
            raise SimError(409, ERROR_CANCEL_REFUSED, "order is PICKING")
        if status in _CANCEL_REFUSED_OUTBOUND:
            raise SimError(409, ERROR_CANCEL_REFUSED, f"order is {status}")
        if status is not OutboundStatus.CANCELLED:
            _update(record, status=OutboundStatus.CANCELLED.value)
            self.state.effects["outbound_cancelled"] += 1
        return 200, record.public

    def cancel_outbound_many(self, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        """The optional cancellations endpoint: each reference as the per-order cancel."""
        if not self.state.faults.bulk_cancel:
            raise SimError(404, ERROR_NOT_FOUND, "no such path")
        results: list[dict[str, Any]] = []
        for reference in _parsed(parse_cancellations_request, body):
            try:
                status, order = self.cancel_outbound({"reference": reference}, {})
            except SimError as error:
                results.append(
                    {"reference": reference, "status": error.status}
                    | error_body(error.code, error.message)
                )
            else:
                results.append({"reference": reference, "status": status, "order": order})
        return 200, {"results": results}

    def create_return(self, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        request = _parsed(parse_return_request, body)
        existing = self.state.returns.get(request.reference)
        if existing is not None:
            return 200, existing.public
        now = _now()
        public = {
            "id": f"WR-{next(self.state.return_ids)}",
            "reference": request.reference,
            "status": ReturnStatus.AWAITING_ARRIVAL.value,
            "reason": None,
            "items": [
                {"sku": item.sku, "quantity": item.quantity, "received_quantity": 0}
                for item in request.items
            ],
            "created_at": now,
            "updated_at": now,
        }
        self.state.returns[request.reference] = Record(public, request.callback_url)
        self.state.effects["returns_created"] += 1
        return 201, public

    def get_return(self, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        return 200, self.state.ret(params["reference"]).public

    def cancel_return(self, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        record = self.state.ret(params["reference"])
        status = ReturnStatus(record.public["status"])
        if self.state.faults.refuse_cancel:
            raise SimError(409, ERROR_CANCEL_REFUSED, "return is being received")
        if status is ReturnStatus.RECEIVED:
            raise SimError(409, ERROR_CANCEL_REFUSED, f"return is {status}")
        if status is not ReturnStatus.CANCELLED:
            _update(record, status=ReturnStatus.CANCELLED.value)
            self.state.effects["returns_cancelled"] += 1
        return 200, record.public

    # --- control endpoints ----------------------------------------------------------------

    async def advance_outbound(self, request: Request) -> Response:
        record = self.state.order(request.path_params["reference"])
        body = await _json_body(request)
        allowed = {"PICKING", "PACKED", "SHIPPED", "EXCEPTION"}
        if body.get("status") not in allowed:
            raise SimError(400, ERROR_INVALID, f"status must be one of {sorted(allowed)}")
        target = OutboundStatus(body["status"])
        _check_outbound_move(OutboundStatus(record.public["status"]), target)
        changes: dict[str, Any] = {"status": target.value, "reason": None}
        if target is OutboundStatus.SHIPPED:
            number = record.public["id"].removeprefix("WO-")
            changes["carrier"] = _optional_text(body, "carrier") or DEFAULT_CARRIER
            changes["tracking_number"] = (
                _optional_text(body, "tracking_number") or f"SP{number:0>9}"
            )
        if target is OutboundStatus.EXCEPTION:
            changes["reason"] = _optional_text(body, "reason") or "simulated exception"
        _update(record, **changes)
        event = {key: record.public[key] for key in ("status", "carrier", "tracking_number")}
        event |= {"type": CallbackType.OUTBOUND_STATUS.value, "reason": record.public["reason"]}
        event_id, status = await self._notify(record, event, body)
        return JSONResponse(
            {"order": record.public, "event_id": event_id, "callback_status": status}
        )

    async def receive_return(self, request: Request) -> Response:
        body = await _json_body(request)
        return await self._move_return(request, {**body, "status": "RECEIVED"})

    async def advance_return(self, request: Request) -> Response:
        return await self._move_return(request, await _json_body(request))

    async def _move_return(self, request: Request, body: dict[str, Any]) -> Response:
        record = self.state.ret(request.path_params["reference"])
        current = ReturnStatus(record.public["status"])
        if current in (ReturnStatus.RECEIVED, ReturnStatus.CANCELLED):
            raise SimError(409, "INVALID_TRANSITION", f"return is {current}")
        if body.get("status") == "RECEIVED":
            received = _received_quantities(record.public["items"], body.get("items"))
            items = [
                {**item, "received_quantity": received[item["sku"]]}
                for item in record.public["items"]
            ]
            _update(record, status=ReturnStatus.RECEIVED.value, reason=None, items=items)
        elif body.get("status") == "EXCEPTION":
            reason = _optional_text(body, "reason") or "simulated exception"
            _update(record, status=ReturnStatus.EXCEPTION.value, reason=reason)
        else:
            raise SimError(400, ERROR_INVALID, "status must be RECEIVED or EXCEPTION")
        event = {key: record.public[key] for key in ("status", "reason", "items")}
        event["type"] = CallbackType.RETURN_STATUS.value
        event_id, status = await self._notify(record, event, body)
        return JSONResponse(
            {"return": record.public, "event_id": event_id, "callback_status": status}
        )

    async def _notify(
        self, record: Record, event: dict[str, Any], body: dict[str, Any]
    ) -> tuple[str | None, int | None]:
        """Sign and (unless ``deliver`` is false) send the callback of a change."""
        if not record.callback_url:
            return None, None
        payload = {"event_id": str(uuid.uuid4()), "reference": record.public["reference"]}
        payload |= {**event, "occurred_at": _now()}
        raw = json.dumps(payload).encode()
        callback = Callback(payload["event_id"], record.callback_url, raw, self._headers(raw))
        callback.headers[HEADER_EVENT_ID] = callback.event_id
        self.state.callbacks[callback.event_id] = callback
        if body.get("deliver") is False:
            return callback.event_id, None
        return callback.event_id, await _deliver(callback)

    def _headers(self, raw: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        return {
            "Content-Type": "application/json",
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_SIGNATURE: sign_callback(self.secret, timestamp, raw),
        }

    async def redeliver(self, request: Request) -> Response:
        callback = self.state.callbacks.get(request.path_params["event_id"])
        if callback is None:
            raise SimError(404, ERROR_NOT_FOUND, "no callback with this event id")
        body = await _json_body(request)
        headers = dict(callback.headers)
        if body.get("fresh_timestamp"):
            headers |= self._headers(callback.body)
        status = await _deliver(callback, headers)
        return JSONResponse({"event_id": callback.event_id, "callback_status": status})

    async def show_state(self, request: Request) -> Response:
        callbacks = [
            {
                "event_id": callback.event_id,
                "url": callback.url,
                "payload": json.loads(callback.body),
                "deliveries": callback.deliveries,
            }
            for callback in self.state.callbacks.values()
        ]
        outbound = [record.public for record in self.state.outbound.values()]
        returns = [record.public for record in self.state.returns.values()]
        return JSONResponse({"outbound": outbound, "returns": returns, "callbacks": callbacks})

    async def show_requests(self, request: Request) -> Response:
        return JSONResponse({"requests": self.state.requests})

    async def show_effects(self, request: Request) -> Response:
        return JSONResponse(self.state.effects)

    async def set_config(self, request: Request) -> Response:
        """Set the callback secret, as a provider's settings page would take the one the
        shipper issued."""
        body = await _json_body(request)
        secret = body.get("callback_secret")
        if not isinstance(secret, str) or not secret:
            raise SimError(400, ERROR_INVALID, "callback_secret must be a non-empty string")
        self.secret = secret
        return JSONResponse({"ok": True})

    async def set_faults(self, request: Request) -> Response:
        body = await _json_body(request)
        if body.get("reset"):
            self.state.faults = Faults()
        faults = self.state.faults
        if "fail_next" in body:
            faults.fail_next = _count(body, "fail_next")
            faults.fail_status = _count(body, "status") if "status" in body else 503
            if not 400 <= faults.fail_status <= 599:
                raise SimError(400, ERROR_INVALID, "status must be an HTTP error status")
        for key in ("fail_after_next", "drop_next"):
            if key in body:
                setattr(faults, key, _count(body, key))
        if "delay" in body:
            delay = body["delay"]
            if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
                raise SimError(400, ERROR_INVALID, "delay must be a number of seconds >= 0")
            faults.delay = float(delay)
        for flag in ("refuse_cancel", "bulk_cancel"):
            if flag in body:
                setattr(faults, flag, bool(body[flag]))
        return JSONResponse(dataclasses.asdict(faults))

    def routes(self) -> list[Route]:
        outbound = f"{PATH_OUTBOUND_ORDERS}/{{reference}}"
        returns = f"{PATH_INBOUND_RETURNS}/{{reference}}"
        return [
            Route(PATH_PING, self.api(self.ping), methods=["GET"]),
            Route(
                PATH_OUTBOUND_ORDERS, self.api(self.create_outbound, post=True), methods=["POST"]
            ),
            Route(
                PATH_OUTBOUND_CANCELLATIONS,
                self.api(self.cancel_outbound_many, post=True),
                methods=["POST"],
            ),
            Route(outbound, self.api(self.get_outbound), methods=["GET"]),
            Route(
                f"{outbound}/cancel", self.api(self.cancel_outbound, post=True), methods=["POST"]
            ),
            Route(PATH_INBOUND_RETURNS, self.api(self.create_return, post=True), methods=["POST"]),
            Route(returns, self.api(self.get_return), methods=["GET"]),
            Route(f"{returns}/cancel", self.api(self.cancel_return, post=True), methods=["POST"]),
            Route("/_sim/outbound/{reference}/advance", self.advance_outbound, methods=["POST"]),
            Route("/_sim/returns/{reference}/receive", self.receive_return, methods=["POST"]),
            Route("/_sim/returns/{reference}/advance", self.advance_return, methods=["POST"]),
            Route("/_sim/redeliver/{event_id}", self.redeliver, methods=["POST"]),
            Route("/_sim/state", self.show_state, methods=["GET"]),
            Route("/_sim/requests", self.show_requests, methods=["GET"]),
            Route("/_sim/effects", self.show_effects, methods=["GET"]),
            Route("/_sim/faults", self.set_faults, methods=["POST"]),
            Route("/_sim/config", self.set_config, methods=["POST"]),
        ]


async def _sim_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SimError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = ERROR_NOT_FOUND if exc.status_code == 404 else f"HTTP_{exc.status_code}"
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


def create_warehouse_simulator(
    *, api_key: str, callback_secret: str, name: str = "Sim Warehouse"
) -> Starlette:
    """A Starlette app simulating one warehouse; its ``SimState`` is ``app.state.sim``."""
    simulator = WarehouseSimulator(api_key=api_key, callback_secret=callback_secret, name=name)
    app = Starlette(
        routes=simulator.routes(),
        exception_handlers={SimError: _sim_error, HTTPException: _http_error},
    )
    app.state.sim = simulator.state
    app.state.simulator = simulator
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m integrations.warehouses.simulator --help``: serve a simulated warehouse."""
    import typer
    import uvicorn

    def serve(
        key: str = typer.Option(..., help="The API key clients must send (X-Warehouse-Key)."),
        secret: str = typer.Option(..., help="The secret callbacks are signed with."),
        host: str = typer.Option("127.0.0.1", help="Address to bind."),
        port: int = typer.Option(8200, min=1, max=65535, help="Port to listen on."),
        name: str = typer.Option("Sim Warehouse", help="The warehouse's name."),
    ) -> None:
        app = create_warehouse_simulator(api_key=key, callback_secret=secret, name=name)
        uvicorn.run(app, host=host, port=port)

    cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    cli.command(help="Run a simulated third-party warehouse.")(serve)
    cli(args=argv)


if __name__ == "__main__":
    main()
