"""Third-party warehouse connector: protocol, callback signatures, WarehouseClient, simulator.

The simulator and a callback receiver run as real uvicorn servers in the test's event loop, so
dropped connections and timeouts are real ones; ``httpx.MockTransport`` scripts the answers that
are simpler to fake than to provoke. Nothing here needs the GraphQL server or a database.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from integrations.warehouses import (
    CallbackSignatureError,
    CallbackType,
    OutboundItem,
    OutboundStatus,
    Recipient,
    ReturnItem,
    ReturnLine,
    ReturnStatus,
    WarehouseApiError,
    WarehouseCallback,
    WarehouseClient,
    WarehouseNotFound,
    WarehousePayloadError,
    WarehouseRefused,
    parse_callback,
    sign_callback,
    verify_callback,
)
from integrations.warehouses.client import CancellationsNotOffered
from integrations.warehouses.protocol import (
    HEADER_API_KEY,
    HEADER_EVENT_ID,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_IDEMPOTENT_REPLAYED,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WarehouseOrder,
    cancellations_body,
    parse_cancellations_request,
    parse_order,
    parse_outbound_order_request,
    parse_return,
)
from integrations.warehouses.simulator import create_warehouse_simulator
from tests.support.server import IDLE_SAFE, CountingTransport, free_port, serve

API_KEY = "wh_live_key_0123456789"
SECRET = "whsec_callback_secret"
NAME = "Shenzhen Fulfilment"
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

RECIPIENT = Recipient(
    name="Ada Lovelace",
    address1="12 St James's Square",
    city="London",
    country="gb",
    zip="SW1Y 4JH",
    province="England",
    phone="+44 20 7946 0000",
)
ITEMS = (OutboundItem("TEE-R-M", 2, "Tee red M"), OutboundItem("MUG-1", 1))
RETURN_ITEMS = (ReturnItem("TEE-R-M", 2, "damaged"), ReturnItem("MUG-1", 1))


# --- harness ---------------------------------------------------------------------------------


class Counting(CountingTransport):
    """Records every request; ``keys`` lists their idempotency keys."""

    def keys(self) -> list[str | None]:
        return [request.headers.get(HEADER_IDEMPOTENCY_KEY) for request in self.requests]


@dataclass
class Sim:
    """A running warehouse simulator and a client of its ``/_sim/`` control endpoints."""

    url: str
    control: httpx.AsyncClient

    async def faults(self, **body: Any) -> dict[str, Any]:
        response = await self.control.post("/_sim/faults", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def effects(self) -> dict[str, int]:
        return (await self.control.get("/_sim/effects")).json()

    async def requests(self) -> list[dict[str, Any]]:
        return (await self.control.get("/_sim/requests")).json()["requests"]

    async def state(self) -> dict[str, Any]:
        return (await self.control.get("/_sim/state")).json()

    async def advance(self, reference: str, status: str, **body: Any) -> dict[str, Any]:
        response = await self.control.post(
            f"/_sim/outbound/{reference}/advance", json={"status": status, **body}
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def receive(self, reference: str, **body: Any) -> dict[str, Any]:
        response = await self.control.post(f"/_sim/returns/{reference}/receive", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def redeliver(self, event_id: str, **body: Any) -> int | None:
        response = await self.control.post(f"/_sim/redeliver/{event_id}", json=body)
        assert response.status_code == 200, response.text
        return response.json()["callback_status"]


class Switch:
    """An ASGI app forwarding to ``app``: one server per module, a fresh app for each test."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "no app mounted"
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
async def sim_server() -> AsyncIterator[tuple[Switch, str]]:
    switch = Switch()
    async with serve(switch) as url:
        yield switch, url


@pytest.fixture
async def sim(sim_server: tuple[Switch, str]) -> AsyncIterator[Sim]:
    switch, url = sim_server
    switch.app = create_warehouse_simulator(api_key=API_KEY, callback_secret=SECRET, name=NAME)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=IDLE_SAFE) as control:
        yield Sim(url, control)


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
async def wh(sim: Sim, counting: Counting) -> AsyncIterator[WarehouseClient]:
    async with WarehouseClient(
        base_url=sim.url, api_key=API_KEY, timeout=2, retries=2, backoff=0.01, transport=counting
    ) as client:
        yield client


@dataclass
class Receiver:
    """Our side of the callbacks: verifies, deduplicates on event id, records."""

    url: str
    secret: str = SECRET
    clock_offset: timedelta = timedelta(0)
    seen: set[str] = field(default_factory=set)
    accepted: list[WarehouseCallback] = field(default_factory=list)
    answers: list[tuple[int, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.headers.append(dict(request.headers))
        try:
            verify_callback(
                self.secret,
                signature_header=request.headers.get(HEADER_SIGNATURE),
                timestamp_header=request.headers.get(HEADER_TIMESTAMP),
                body=body,
                now=datetime.now(UTC) + self.clock_offset,
            )
            callback = parse_callback(body)
        except CallbackSignatureError as error:
            return self._answer(401, error.reason)
        except WarehousePayloadError as error:
            return self._answer(400, str(error))
        assert request.headers[HEADER_EVENT_ID] == callback.event_id
        if callback.event_id in self.seen:
            return self._answer(200, "duplicate")
        self.seen.add(callback.event_id)
        self.accepted.append(callback)
        return self._answer(200, "accepted")

    def _answer(self, status: int, outcome: str) -> Response:
        self.answers.append((status, outcome))
        return JSONResponse({"status": outcome}, status)


@pytest.fixture(scope="module")
async def receiver_server() -> AsyncIterator[tuple[Switch, str]]:
    switch = Switch()
    async with serve(switch) as url:
        yield switch, url


@pytest.fixture
def receiver(receiver_server: tuple[Switch, str]) -> Receiver:
    switch, url = receiver_server
    receiver = Receiver(url=f"{url}/callbacks")
    switch.app = Starlette(routes=[Route("/callbacks", receiver.handle, methods=["POST"])])
    return receiver


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> tuple[WarehouseClient, list[httpx.Request]]:
    """A WarehouseClient answered by ``handler``; the list collects the requests it sent."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    kwargs = {"timeout": 1, "retries": 2, "backoff": 0.01, **kwargs}
    client = WarehouseClient(
        base_url="http://warehouse.test",
        api_key=API_KEY,
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


async def create(
    wh: WarehouseClient, reference: str = "1001", key: str = "push-1001", **kwargs: Any
) -> Any:
    return await wh.create_outbound_order(
        reference=reference, recipient=RECIPIENT, items=ITEMS, idempotency_key=key, **kwargs
    )


def order_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "WO-7",
        "reference": "1001",
        "status": "SHIPPED",
        "carrier": "DHL",
        "tracking_number": "JD0001",
        "reason": None,
        "items": [{"sku": "TEE-R-M", "quantity": 2, "name": "Tee"}, {"sku": "MUG", "quantity": 1}],
        "created_at": "2024-03-01T10:00:00Z",
        "updated_at": "2024-03-01T12:30:00+02:00",
    }
    payload.update(changes)
    return payload


def return_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": "WR-3",
        "reference": "R-1001-1",
        "status": "RECEIVED",
        "reason": None,
        "items": [{"sku": "TEE-R-M", "quantity": 2, "received_quantity": 1}],
        "created_at": "2024-03-01T10:00:00Z",
        "updated_at": "2024-03-01T11:00:00Z",
    }
    payload.update(changes)
    return payload


def callback_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": "0b8e4c1a-6a43-4a3b-9f56-2f1c3c0d8e11",
        "type": "outbound.status",
        "reference": "1001",
        "status": "SHIPPED",
        "carrier": "DHL",
        "tracking_number": "JD0001",
        "reason": None,
        "occurred_at": "2024-03-01T12:00:00Z",
    }
    payload.update(changes)
    return payload


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, Any]:
    return {
        "signature_header": sign_callback(secret, timestamp, body),
        "timestamp_header": str(timestamp),
        "body": body,
    }


# --- protocol: callback signatures -----------------------------------------------------------


def test_sign_callback_matches_a_known_vector() -> None:
    # printf '1700000000.{"event_id":"e1"}' | openssl dgst -sha256 -hmac whsec_test
    expected = "v1=8a9b910184f1d9ed3590e106c991e230a182f3b9356c7c1ed91c013d17ed0775"
    assert sign_callback("whsec_test", 1700000000, b'{"event_id":"e1"}') == expected


def test_sign_callback_refuses_no_secret_and_bad_timestamps() -> None:
    with pytest.raises(ValueError, match="secret"):
        sign_callback("", 1, b"{}")
    for bad in (-1, 1.5, True, "1700000000"):
        with pytest.raises(ValueError, match="timestamp"):
            sign_callback(SECRET, bad, b"{}")  # type: ignore[arg-type]


def test_verify_callback_accepts_a_fresh_signature_within_tolerance() -> None:
    body = json.dumps(callback_payload()).encode()
    stamp = int(NOW.timestamp())
    verify_callback(SECRET, now=NOW, **signed(body, stamp))
    verify_callback(SECRET, now=NOW, **signed(body, stamp - 300))  # the edges are inside
    verify_callback(SECRET, now=NOW, **signed(body, stamp + 300))
    upper = signed(body, stamp)
    upper["signature_header"] = upper["signature_header"].upper().replace("V1=", "v1=")
    verify_callback(SECRET, now=NOW, **upper)  # hex case does not matter


def _variant(**changes: Any) -> dict[str, Any]:
    body = b'{"event_id":"e1"}'
    stamp = int(NOW.timestamp())
    return {**signed(body, stamp), **changes}


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        (_variant(signature_header=None), "missing"),
        (_variant(signature_header="  "), "missing"),
        (_variant(timestamp_header=None), "missing"),
        (_variant(timestamp_header=""), "missing"),
        (_variant(timestamp_header="yesterday"), "malformed"),
        (_variant(timestamp_header="1709294400.5"), "malformed"),
        (_variant(timestamp_header="-1709294400"), "malformed"),
        (_variant(signature_header="deadbeef"), "malformed"),
        (_variant(signature_header="v0=" + "a" * 64), "malformed"),
        (_variant(signature_header="v1=" + "z" * 64), "malformed"),
        (_variant(signature_header="v1=" + "a" * 63), "malformed"),
        (_variant(signature_header="v1=" + "a" * 64), "mismatch"),
        (_variant(body=b'{"event_id":"e2"}'), "mismatch"),
        (_variant(timestamp_header=str(int(NOW.timestamp()) - 1)), "mismatch"),
        ({**signed(b'{"event_id":"e1"}', int(NOW.timestamp()), "other")}, "mismatch"),
        (signed(b"{}", int(NOW.timestamp()) - 301), "expired"),
        (signed(b"{}", int(NOW.timestamp()) - 86_400), "expired"),
        (signed(b"{}", int(NOW.timestamp()) + 301), "future"),
    ],
)
def test_verify_callback_rejects(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(CallbackSignatureError) as caught:
        verify_callback(SECRET, now=NOW, **kwargs)
    assert caught.value.reason == reason
    assert reason in str(caught.value)


def test_verify_callback_tolerance_is_configurable() -> None:
    stamp = int(NOW.timestamp()) - 100
    verify_callback(SECRET, now=NOW, **signed(b"{}", stamp))
    with pytest.raises(CallbackSignatureError) as caught:
        verify_callback(SECRET, now=NOW, tolerance_seconds=60, **signed(b"{}", stamp))
    assert caught.value.reason == "expired"


def test_verify_callback_refuses_our_own_misconfiguration() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify_callback("", now=NOW, **signed(b"{}", 1))
    with pytest.raises(ValueError, match="tz-aware"):
        verify_callback(SECRET, now=datetime(2024, 3, 1), **signed(b"{}", 1))


# --- protocol: parsing -----------------------------------------------------------------------


def test_parse_order_reads_every_field() -> None:
    order = parse_order(order_payload())
    assert order.id == "WO-7"
    assert order.reference == "1001"
    assert order.status is OutboundStatus.SHIPPED
    assert (order.carrier, order.tracking_number, order.reason) == ("DHL", "JD0001", None)
    assert order.items == (OutboundItem("TEE-R-M", 2, "Tee"), OutboundItem("MUG", 1))
    assert order.created_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert order.updated_at == datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
    assert order.updated_at.utcoffset() == timedelta(0)


def test_parse_return_reads_every_field() -> None:
    ret = parse_return(return_payload())
    assert (ret.id, ret.reference, ret.status) == ("WR-3", "R-1001-1", ReturnStatus.RECEIVED)
    assert ret.items == (ReturnLine("TEE-R-M", 2, 1),)


def _mutated(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``payload`` with dotted ``path`` ("items.0.quantity") set, or deleted (...)."""
    result = copy.deepcopy(payload)
    *parents, last = path.split(".")
    target: Any = result
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return result


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("id", ..., "missing key 'id'"),
        ("id", "", "id: must not be blank"),
        ("reference", 1001, "reference"),
        ("reference", "a/b", "reference"),
        ("status", "LOST", "expected one of RECEIVED"),
        ("status", None, "expected one of"),
        ("tracking_number", None, "SHIPPED needs a carrier and a tracking_number"),
        ("carrier", 7, "carrier: expected a string"),
        ("items", [], "non-empty list"),
        ("items", "TEE", "non-empty list"),
        ("items.0.quantity", 0, r"items\[0\]: quantity: must be between 1"),
        ("items.0.quantity", "2", "expected an integer"),
        ("items.0.quantity", 2.0, "expected an integer"),
        ("items.0.quantity", True, "expected an integer"),
        ("items.1.sku", ..., r"items\[1\]: missing key 'sku'"),
        ("items.1.sku", "TEE-R-M", "each sku may appear only once"),
        ("created_at", "2024-03-01T10:00:00", "without a UTC offset"),
        ("created_at", "yesterday", "not an ISO 8601"),
        ("updated_at", ..., "missing key 'updated_at'"),
    ],
)
def test_parse_order_refuses_malformed_payloads(path: str, value: Any, match: str) -> None:
    with pytest.raises(WarehousePayloadError, match=match):
        parse_order(_mutated(order_payload(), path, value))


def test_parse_order_needs_a_reason_for_an_exception_and_an_object() -> None:
    with pytest.raises(WarehousePayloadError, match="EXCEPTION needs a reason"):
        parse_order(order_payload(status="EXCEPTION", carrier=None, tracking_number=None))
    with pytest.raises(WarehousePayloadError, match="expected a JSON object"):
        parse_order([order_payload()])


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("status", "SHIPPED", "expected one of AWAITING_ARRIVAL"),
        ("items.0.received_quantity", -1, "received_quantity: must be between 0"),
        ("items.0.received_quantity", ..., "missing key 'received_quantity'"),
        ("status", "EXCEPTION", "EXCEPTION needs a reason"),
    ],
)
def test_parse_return_refuses_malformed_payloads(path: str, value: Any, match: str) -> None:
    with pytest.raises(WarehousePayloadError, match=match):
        parse_return(_mutated(return_payload(), path, value))


def test_parse_callback_reads_outbound_and_return_events() -> None:
    outbound = parse_callback(json.dumps(callback_payload()).encode())
    assert outbound == WarehouseCallback(
        event_id="0b8e4c1a-6a43-4a3b-9f56-2f1c3c0d8e11",
        type=CallbackType.OUTBOUND_STATUS,
        reference="1001",
        status=OutboundStatus.SHIPPED,
        occurred_at=datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
        carrier="DHL",
        tracking_number="JD0001",
    )
    items = [{"sku": "TEE-R-M", "quantity": 2, "received_quantity": 2}]
    body = callback_payload(type="return.status", status="RECEIVED", items=items, carrier=None)
    ret = parse_callback(json.dumps(body).encode())
    assert ret.status is ReturnStatus.RECEIVED
    assert ret.items == (ReturnLine("TEE-R-M", 2, 2),)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "expected a JSON object"),
        (json.dumps(callback_payload(type="order.created")).encode(), "expected one of"),
        (json.dumps(callback_payload(type="return.status")).encode(), "AWAITING_ARRIVAL"),
        (json.dumps(_mutated(callback_payload(), "event_id", ...)).encode(), "'event_id'"),
        (json.dumps(callback_payload(event_id="")).encode(), "event_id: must not be blank"),
        (json.dumps(callback_payload(occurred_at="2024-03-01 12:00")).encode(), "UTC offset"),
        (json.dumps(callback_payload(carrier=None)).encode(), "SHIPPED needs a carrier"),
        (json.dumps(callback_payload(items={"sku": "A"})).encode(), "expected a list"),
        (
            json.dumps(
                callback_payload(
                    type="return.status",
                    status="RECEIVED",
                    items=[{"sku": "A", "quantity": 1, "received_quantity": -2}],
                )
            ).encode(),
            "received_quantity",
        ),
    ],
)
def test_parse_callback_refuses_malformed_bodies(body: bytes, match: str) -> None:
    with pytest.raises(WarehousePayloadError, match=match):
        parse_callback(body)


def test_requests_validate_what_we_send() -> None:
    assert RECIPIENT.country == "GB"
    with pytest.raises(ValueError, match="alpha-2"):
        Recipient("Ada", "1 Road", "London", "GBR", "N1")
    with pytest.raises(ValueError, match="name: must not be blank"):
        Recipient(" ", "1 Road", "London", "GB", "N1")
    with pytest.raises(ValueError, match="quantity: must be between 1"):
        OutboundItem("TEE", 0)
    with pytest.raises(ValueError, match="expected an integer"):
        ReturnItem("TEE", 1.0)  # type: ignore[arg-type]
    recipient = Recipient.from_shipping_address(
        {"name": "Ada", "address1": "1 Road", "address2": "", "city": "Hong Kong",
         "province": "", "zip": "", "country_code": "hk", "phone": ""}
    )  # fmt: skip
    assert recipient == Recipient("Ada", "1 Road", "Hong Kong", "HK", "")
    assert recipient.to_json() == {
        "name": "Ada",
        "address1": "1 Road",
        "city": "Hong Kong",
        "country": "HK",
        "zip": "",
    }


def test_parse_outbound_order_request_is_the_warehouse_side_check() -> None:
    body = {
        "reference": "1001",
        "recipient": RECIPIENT.to_json(),
        "items": [item.to_json() for item in ITEMS],
        "callback_url": "https://us.example/hooks/wh/1",
    }
    request = parse_outbound_order_request(body)
    assert request.recipient == RECIPIENT
    assert request.items == ITEMS
    with pytest.raises(WarehousePayloadError, match=r"recipient: missing key 'zip'"):
        parse_outbound_order_request(_mutated(body, "recipient.zip", ...))
    with pytest.raises(WarehousePayloadError, match="absolute http"):
        parse_outbound_order_request({**body, "callback_url": "ftp://x"})
    with pytest.raises(WarehousePayloadError, match="each sku may appear only once"):
        parse_outbound_order_request({**body, "items": [ITEMS[0].to_json()] * 2})


# --- client against the simulator: the happy paths -------------------------------------------


async def test_ping_names_the_warehouse(wh: WarehouseClient) -> None:
    assert await wh.ping() == NAME
    assert wh.attempts == 1


async def test_wrong_key_is_401_and_not_retried(sim: Sim, counting: Counting) -> None:
    async with WarehouseClient(
        base_url=sim.url, api_key="wrong-key", retries=3, backoff=0.01, transport=counting
    ) as wh:
        with pytest.raises(WarehouseApiError) as caught:
            await wh.ping()
    assert caught.value.status == 401
    assert caught.value.transient is False
    assert "refused the API key" in caught.value.message
    assert len(counting.requests) == 1
    no_key = await sim.control.get("/v1/ping")
    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "UNAUTHORIZED"


async def test_create_get_and_the_wire_format(sim: Sim, wh: WarehouseClient) -> None:
    order = await create(wh)
    assert order.id == "WO-1"
    assert order.reference == "1001"
    assert order.status is OutboundStatus.RECEIVED
    assert order.items == ITEMS
    assert order.created_at.tzinfo is not None
    assert await wh.get_outbound_order("1001") == order
    (stored,) = (await sim.state())["outbound"]
    assert stored["created_at"].endswith("Z")
    assert stored["items"] == [item.to_json() for item in ITEMS]
    with pytest.raises(WarehouseNotFound) as caught:
        await wh.get_outbound_order("9999")
    assert (caught.value.status, caught.value.transient) == (404, False)
    assert caught.value.code == "NOT_FOUND"


async def test_create_is_idempotent_by_reference(sim: Sim, wh: WarehouseClient) -> None:
    first = await create(wh, key="push-a")
    second = await create(wh, key="push-b")  # a new key, as after a crash on our side
    assert second.id == first.id == "WO-1"
    assert (await sim.effects())["outbound_created"] == 1
    statuses = [(r["idempotency_key"], r["status"]) for r in await sim.requests()]
    assert statuses == [("push-a", 201), ("push-b", 200)]
    other = await create(wh, reference="1002", key="push-c")
    assert other.id == "WO-2"


async def test_an_idempotency_key_replays_the_first_answer(sim: Sim, wh: WarehouseClient) -> None:
    first = await create(wh, key="push-1")
    await sim.advance("1001", "PICKING")
    again = await create(wh, key="push-1")
    assert again == first  # the stored answer, status RECEIVED, not the order as it is now
    (_, replay) = await sim.requests()
    assert replay["replayed"] is True
    assert (await sim.effects())["outbound_created"] == 1
    body = {
        "items": [item.to_json() for item in ITEMS],  # another key order: the same request
        "recipient": RECIPIENT.to_json(),
        "reference": "1001",
    }
    headers = {HEADER_API_KEY: API_KEY, HEADER_IDEMPOTENCY_KEY: "push-1"}
    replay = await sim.control.post("/v1/outbound-orders", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers[HEADER_IDEMPOTENT_REPLAYED] == "true"
    assert replay.json()["status"] == "RECEIVED"
    body["items"] = body["items"][:1]
    reused = await sim.control.post("/v1/outbound-orders", json=body, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    with pytest.raises(WarehouseApiError) as caught:
        await create(wh, reference="1002", key="push-1")
    assert (caught.value.status, caught.value.transient) == (422, False)


async def test_the_simulator_requires_an_idempotency_key_and_a_valid_body(sim: Sim) -> None:
    headers = {HEADER_API_KEY: API_KEY}
    missing = await sim.control.post("/v1/outbound-orders", json={}, headers=headers)
    assert missing.status_code == 400
    assert "Idempotency-Key" in missing.json()["error"]["message"]
    headers[HEADER_IDEMPOTENCY_KEY] = "k1"
    invalid = await sim.control.post("/v1/outbound-orders", json={"items": []}, headers=headers)
    assert invalid.status_code == 400
    assert invalid.json()["error"]["code"] == "INVALID"
    assert (await sim.effects())["outbound_created"] == 0


async def test_cancel_then_cancel_again_acts_once(sim: Sim, wh: WarehouseClient) -> None:
    await create(wh)
    cancelled = await wh.cancel_outbound_order("1001", idempotency_key="cancel-1")
    assert cancelled.status is OutboundStatus.CANCELLED
    again = await wh.cancel_outbound_order("1001", idempotency_key="cancel-2")
    assert again.status is OutboundStatus.CANCELLED
    assert (await sim.effects())["outbound_cancelled"] == 1
    with pytest.raises(WarehouseNotFound):
        await wh.cancel_outbound_order("9999", idempotency_key="cancel-3")


async def test_cancel_is_refused_once_picking(
    sim: Sim, wh: WarehouseClient, counting: Counting
) -> None:
    await create(wh)
    await sim.advance("1001", "PICKING")
    before = len(counting.requests)
    with pytest.raises(WarehouseRefused) as caught:
        await wh.cancel_outbound_order("1001", idempotency_key="cancel-1")
    assert caught.value.code == "CANCEL_REFUSED"
    assert caught.value.reason == "order is PICKING"
    assert (caught.value.status, caught.value.transient) == (409, False)
    assert isinstance(caught.value, WarehouseApiError)
    assert len(counting.requests) == before + 1  # a refusal is not retried
    assert (await wh.get_outbound_order("1001")).status is OutboundStatus.PICKING
    assert (await sim.effects())["outbound_cancelled"] == 0


async def test_refuse_cancel_fault(sim: Sim, wh: WarehouseClient) -> None:
    await create(wh)
    await sim.faults(refuse_cancel=True)
    with pytest.raises(WarehouseRefused, match="CANCEL_REFUSED"):
        await wh.cancel_outbound_order("1001", idempotency_key="cancel-1")
    await sim.faults(reset=True)
    cancelled = await wh.cancel_outbound_order("1001", idempotency_key="cancel-1")
    assert cancelled.status is OutboundStatus.CANCELLED  # an error was not stored for the key


async def test_cancellations_answer_each_order_as_its_own_cancel_would(
    sim: Sim, wh: WarehouseClient, counting: Counting
) -> None:
    for reference in ("1001", "1002", "1003"):
        await create(wh, reference=reference, key=f"push-{reference}")
    await sim.advance("1002", "PICKING")
    await wh.cancel_outbound_order("1003", idempotency_key="cancel-1003")  # cancelled before
    answers = await wh.cancel_outbound_orders(
        ["1001", "1002", "1003", "9999"], idempotency_key="cancels-1"
    )
    first, refused, again, unknown = answers
    assert isinstance(first, WarehouseOrder) and first.status is OutboundStatus.CANCELLED
    assert isinstance(refused, WarehouseRefused) and refused.reason == "order is PICKING"
    assert (refused.code, refused.transient) == ("CANCEL_REFUSED", False)
    assert isinstance(again, WarehouseOrder) and again.status is OutboundStatus.CANCELLED
    assert isinstance(unknown, WarehouseNotFound) and unknown.code == "NOT_FOUND"
    assert (await sim.effects())["outbound_cancelled"] == 2  # 1001 now, 1003 before
    # the same request again (a retry of a lost answer) is replayed, acting on nothing
    replayed = await wh.cancel_outbound_orders(
        ["1001", "1002", "1003", "9999"], idempotency_key="cancels-1"
    )
    assert [type(a) for a in replayed] == [type(a) for a in answers]
    assert (await sim.requests())[-1]["replayed"] is True
    assert (await sim.effects())["outbound_cancelled"] == 2
    assert counting.keys()[-2:] == ["cancels-1", "cancels-1"]


async def test_cancellations_retry_with_the_same_key_and_say_when_not_offered(
    sim: Sim, wh: WarehouseClient, counting: Counting
) -> None:
    await create(wh)
    await sim.faults(fail_next=1, status=503)
    [cancelled] = await wh.cancel_outbound_orders(["1001"], idempotency_key="cancels-2")
    assert isinstance(cancelled, WarehouseOrder)
    assert counting.keys()[-2:] == ["cancels-2", "cancels-2"]
    await sim.faults(bulk_cancel=False)  # a warehouse without the optional endpoint
    with pytest.raises(CancellationsNotOffered):
        await wh.cancel_outbound_orders(["1001"], idempotency_key="cancels-3")
    assert (await sim.effects())["outbound_cancelled"] == 1


def test_cancellations_requests_are_checked_on_both_sides() -> None:
    assert cancellations_body(["1", "2"]) == {
        "cancellations": [{"reference": "1"}, {"reference": "2"}]
    }
    assert parse_cancellations_request(cancellations_body(["1", "2"])) == ["1", "2"]
    for bad, match in [
        ([], "1 to 100"),
        ([str(n) for n in range(101)], "1 to 100"),
        (["1", "1"], "listed twice"),
        (["-x"], "expected 1-100"),
    ]:
        with pytest.raises(WarehousePayloadError, match=match):
            cancellations_body(bad)
    with pytest.raises(WarehousePayloadError, match="missing key 'reference'"):
        parse_cancellations_request({"cancellations": [{"ref": "1"}]})


@pytest.mark.parametrize(
    "answer",
    [
        {"results": []},
        {"results": [{"reference": "other", "status": 200, "order": None}]},
        {"results": [{"reference": "1001", "status": "ok"}]},
        {"results": [{"reference": "1001", "status": 200, "order": {"id": "WO-1"}}]},
    ],
)
async def test_a_malformed_cancellations_answer_is_not_transient(answer: dict[str, Any]) -> None:
    client, seen = mock_client(replies(httpx.Response(200, json=answer)))
    async with client:
        with pytest.raises(WarehouseApiError) as caught:
            await client.cancel_outbound_orders(["1001"], idempotency_key="k")
    assert caught.value.transient is False
    assert "malformed response" in caught.value.message
    assert len(seen) == 1


async def test_simulated_moves_go_forward_only(sim: Sim, wh: WarehouseClient) -> None:
    await create(wh)
    shipped = await sim.advance("1001", "SHIPPED", carrier="DHL", tracking_number="JD0001")
    assert shipped["callback_status"] is None  # no callback_url
    order = await wh.get_outbound_order("1001")
    assert (order.status, order.carrier, order.tracking_number) == ("SHIPPED", "DHL", "JD0001")
    back = await sim.control.post("/_sim/outbound/1001/advance", json={"status": "PICKING"})
    assert back.status_code == 409
    unknown = await sim.control.post("/_sim/outbound/nope/advance", json={"status": "PICKING"})
    assert unknown.status_code == 404


# --- client against the simulator: faults ----------------------------------------------------


async def test_5xx_then_success_is_retried_with_the_same_key(
    sim: Sim, wh: WarehouseClient, counting: Counting
) -> None:
    await sim.faults(fail_next=2, status=503)
    order = await create(wh, key="push-1")
    assert order.id == "WO-1"
    assert counting.keys() == ["push-1"] * 3
    assert [r["status"] for r in await sim.requests()] == [503, 503, 201]
    assert (await sim.effects())["outbound_created"] == 1


async def test_5xx_beyond_the_retries_is_a_transient_error(
    sim: Sim, wh: WarehouseClient, counting: Counting
) -> None:
    await sim.faults(fail_next=5, status=502)
    with pytest.raises(WarehouseApiError) as caught:
        await create(wh)
    assert caught.value.transient is True
    assert caught.value.status == 502
    assert "after 3 attempts" in caught.value.message
    assert len(counting.requests) == 3 == wh.attempts
    assert (await sim.effects())["outbound_created"] == 0


async def test_the_fail_after_fault_really_drops_the_connection(sim: Sim) -> None:
    await sim.faults(fail_after_next=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await sim.control.get("/v1/ping", headers={HEADER_API_KEY: API_KEY})
    (request,) = await sim.requests()
    assert request["fault"] == "fail_after"
    assert request["status"] is None


async def test_lost_answer_retry_finds_the_order_made(
    sim: Sim, wh: WarehouseClient, counting: Counting
) -> None:
    await sim.faults(fail_after_next=1)
    order = await create(wh, key="push-1")
    assert order.id == "WO-1"
    assert counting.keys() == ["push-1", "push-1"]
    first, second = await sim.requests()
    assert first["fault"] == "fail_after"
    assert second["replayed"] is True
    assert (await sim.effects())["outbound_created"] == 1


async def test_lost_cancel_answer_cancels_once(sim: Sim, wh: WarehouseClient) -> None:
    await create(wh)
    await sim.faults(fail_after_next=2)
    cancelled = await wh.cancel_outbound_order("1001", idempotency_key="cancel-1")
    assert cancelled.status is OutboundStatus.CANCELLED
    assert (await sim.effects())["outbound_cancelled"] == 1


async def test_dropped_requests_are_retried(
    sim: Sim, wh: WarehouseClient, counting: Counting
) -> None:
    await sim.faults(drop_next=1)
    with pytest.raises(httpx.TransportError):
        await sim.control.get("/v1/ping", headers={HEADER_API_KEY: API_KEY})
    await sim.faults(drop_next=2)
    order = await create(wh, key="push-1")
    assert order.id == "WO-1"
    assert counting.keys() == ["push-1"] * 3
    faults = [r["fault"] for r in await sim.requests()]
    assert faults == ["drop", "drop", "drop", None]
    assert (await sim.effects())["outbound_created"] == 1


async def test_a_slow_warehouse_times_out_transiently(sim: Sim, counting: Counting) -> None:
    await sim.faults(delay=0.5)
    async with WarehouseClient(
        base_url=sim.url, api_key=API_KEY, timeout=0.15, retries=1, backoff=0.01, transport=counting
    ) as wh:
        with pytest.raises(WarehouseApiError) as caught:
            await wh.ping()
    assert caught.value.transient is True
    assert caught.value.status is None
    assert "Timeout" in caught.value.message
    assert len(counting.requests) == 2
    await sim.faults(reset=True)


async def test_a_refused_connection_is_transient(counting: Counting) -> None:
    async with WarehouseClient(
        base_url=f"http://127.0.0.1:{free_port()}",
        api_key=API_KEY,
        retries=2,
        backoff=0.01,
        transport=counting,
    ) as wh:
        with pytest.raises(WarehouseApiError) as caught:
            await wh.get_outbound_order("1001")
    assert caught.value.transient is True
    assert "ConnectError" in caught.value.message
    assert len(counting.requests) == 3


# --- client: scripted answers ----------------------------------------------------------------


def _error(status: int, code: str, message: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


async def test_429_is_retried_and_400_is_not() -> None:
    client, seen = mock_client(
        replies(_error(429, "RATE_LIMITED"), httpx.Response(200, json=order_payload()))
    )
    async with client:
        order = await client.get_outbound_order("1001")
    assert order.tracking_number == "JD0001"
    assert len(seen) == 2

    client, seen = mock_client(replies(_error(400, "INVALID", f"bad key {API_KEY}")))
    async with client:
        with pytest.raises(WarehouseApiError) as caught:
            await create(client)
    assert (caught.value.status, caught.value.code, caught.value.transient) == (
        400,
        "INVALID",
        False,
    )
    assert API_KEY not in caught.value.message
    assert len(seen) == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>ok</html>"),
        httpx.Response(200, json=[order_payload()]),
        httpx.Response(200, json=_mutated(order_payload(), "status", "LOST")),
        httpx.Response(200, json=_mutated(order_payload(), "items", ...)),
        httpx.Response(201, json=order_payload(reference="other")),
    ],
)
async def test_a_malformed_success_body_is_not_transient(response: httpx.Response) -> None:
    client, seen = mock_client(replies(response))
    async with client:
        with pytest.raises(WarehouseApiError) as caught:
            await client.get_outbound_order("1001")
    assert caught.value.transient is False
    assert "malformed response" in caught.value.message
    assert len(seen) == 1


async def test_a_malformed_ping_answer() -> None:
    client, _ = mock_client(replies(httpx.Response(200, json={"ok": False})))
    async with client:
        with pytest.raises(WarehouseApiError, match="malformed"):
            await client.ping()


async def test_arguments_are_checked_before_sending() -> None:
    client, seen = mock_client(replies(httpx.Response(500)))
    async with client:
        with pytest.raises(ValueError, match="reference"):
            await client.get_outbound_order("../admin")
        with pytest.raises(ValueError, match="Idempotency-Key"):
            await create(client, key="")
        with pytest.raises(ValueError, match="non-empty"):
            await client.create_return(reference="R1", items=[], idempotency_key="k")
    assert seen == []
    with pytest.raises(ValueError, match="api_key"):
        WarehouseClient(base_url="http://x", api_key="")


# --- callbacks -------------------------------------------------------------------------------


async def test_status_callbacks_are_signed_and_deduplicated(
    sim: Sim, wh: WarehouseClient, receiver: Receiver
) -> None:
    await create(wh, callback_url=receiver.url)
    picking = await sim.advance("1001", "PICKING")
    assert picking["callback_status"] == 200
    shipped = await sim.advance("1001", "SHIPPED", carrier="UPS", tracking_number="1Z999")
    assert shipped["callback_status"] == 200
    assert [c.status for c in receiver.accepted] == ["PICKING", "SHIPPED"]
    last = receiver.accepted[-1]
    assert last.type is CallbackType.OUTBOUND_STATUS
    assert (last.reference, last.carrier, last.tracking_number) == ("1001", "UPS", "1Z999")
    assert last.event_id == shipped["event_id"]

    assert await sim.redeliver(last.event_id) == 200  # the identical request again
    assert (
        receiver.headers[-1][HEADER_SIGNATURE.lower()]
        == receiver.headers[-2][HEADER_SIGNATURE.lower()]
    )
    assert await sim.redeliver(last.event_id, fresh_timestamp=True) == 200
    assert receiver.answers[-2:] == [(200, "duplicate"), (200, "duplicate")]
    assert len(receiver.accepted) == 2

    receiver.clock_offset = timedelta(seconds=400)  # the stored signature is now too old
    assert await sim.redeliver(last.event_id) == 401
    assert receiver.answers[-1] == (401, "expired")
    receiver.clock_offset = timedelta(0)
    receiver.secret = "rotated-secret"
    assert await sim.redeliver(last.event_id, fresh_timestamp=True) == 401
    assert receiver.answers[-1] == (401, "mismatch")


async def test_exception_callback_and_undelivered_callbacks(
    sim: Sim, wh: WarehouseClient, receiver: Receiver
) -> None:
    await create(wh, callback_url=receiver.url)
    held = await sim.advance("1001", "EXCEPTION", reason="address unknown", deliver=False)
    assert held["callback_status"] is None
    assert receiver.answers == []
    assert await sim.redeliver(held["event_id"]) == 200
    (callback,) = receiver.accepted
    assert (callback.status, callback.reason) == ("EXCEPTION", "address unknown")
    order = await wh.get_outbound_order("1001")
    assert (order.status, order.reason) == ("EXCEPTION", "address unknown")
    cancelled = await wh.cancel_outbound_order("1001", idempotency_key="c1")
    assert cancelled.status is OutboundStatus.CANCELLED


async def test_an_unreachable_receiver_is_recorded_not_raised(
    sim: Sim, wh: WarehouseClient
) -> None:
    await create(wh, callback_url=f"http://127.0.0.1:{free_port()}/callbacks")
    moved = await sim.advance("1001", "PACKED")
    assert moved["callback_status"] is None
    assert moved["order"]["status"] == "PACKED"
    (callback,) = (await sim.state())["callbacks"]
    assert callback["deliveries"] == [None]


# --- returns ---------------------------------------------------------------------------------


async def test_returns_create_receive_and_refuse_cancel(
    sim: Sim, wh: WarehouseClient, receiver: Receiver
) -> None:
    created = await wh.create_return(
        reference="R-1001-1",
        original_reference="1001",
        items=RETURN_ITEMS,
        callback_url=receiver.url,
        idempotency_key="return-1",
    )
    assert (created.id, created.status) == ("WR-1", ReturnStatus.AWAITING_ARRIVAL)
    assert created.items == (ReturnLine("TEE-R-M", 2, 0), ReturnLine("MUG-1", 1, 0))
    again = await wh.create_return(
        reference="R-1001-1", items=RETURN_ITEMS, idempotency_key="return-2"
    )
    assert again.id == "WR-1"
    assert (await sim.effects())["returns_created"] == 1

    received = await sim.receive("R-1001-1", items=[{"sku": "TEE-R-M", "received_quantity": 1}])
    assert received["callback_status"] == 200
    (callback,) = receiver.accepted
    assert callback.type is CallbackType.RETURN_STATUS
    assert callback.status is ReturnStatus.RECEIVED
    assert callback.items == (ReturnLine("TEE-R-M", 2, 1), ReturnLine("MUG-1", 1, 0))
    ret = await wh.get_return("R-1001-1")
    assert ret.status is ReturnStatus.RECEIVED
    assert ret.items == callback.items

    with pytest.raises(WarehouseRefused) as caught:
        await wh.cancel_return("R-1001-1", idempotency_key="cancel-r1")
    assert caught.value.code == "CANCEL_REFUSED"
    assert (await sim.effects())["returns_cancelled"] == 0


async def test_returns_cancel_and_not_found(sim: Sim, wh: WarehouseClient) -> None:
    await wh.create_return(reference="R-2", items=RETURN_ITEMS[:1], idempotency_key="r2")
    cancelled = await wh.cancel_return("R-2", idempotency_key="cancel-r2")
    assert cancelled.status is ReturnStatus.CANCELLED
    assert (await wh.cancel_return("R-2", idempotency_key="cancel-r2b")).status == "CANCELLED"
    assert (await sim.effects())["returns_cancelled"] == 1
    with pytest.raises(WarehouseNotFound):
        await wh.get_return("R-404")
    late = await sim.control.post("/_sim/returns/R-2/receive", json={})
    assert late.status_code == 409
