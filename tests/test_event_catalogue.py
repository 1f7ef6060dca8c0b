"""The event catalogue: one payload class per event type, stored shapes, and its use everywhere."""

from __future__ import annotations

import ast
import json
import types
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from domain.after_sales.models import AfterSalesOrder, AfterSalesStatus
from domain.distribution.models import (
    PushStatus,
    TaskKind,
    WarehouseTask,
    Withdrawal,
    WithdrawalResolution,
    WithdrawalStatus,
)
from domain.events import EventType, PublishedEvent, catalogue
from domain.events.catalogue import (
    CATALOGUE,
    EventPayload,
    OrderStatusChanged,
    OrderUpdated,
    ProductUpdated,
    ReturnStatusChanged,
    StockLow,
    WarehouseAttemptRecorded,
    WithdrawalStatusChanged,
    parse,
    payload_class,
    payload_of,
    public_payload,
)
from domain.orders.models import Order, OrderStatus
from domain.stock.models import MovementKind, StockItem

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def _models_initialised() -> None:
    """Unsaved model instances need Tortoise's model set-up (their foreign-key attributes),
    which a test alone in its run has not had from a server."""
    from tortoise import Tortoise

    from domain.db import MODELS_MODULE

    Tortoise.init_models([MODELS_MODULE], "models")


SCANNED = ("domain", "resolvers", "service", "schema", "integrations")
# the catalogue and the plumbing that stores and carries payloads whole
PLUMBING = {"domain/events/catalogue.py", "domain/events/__init__.py", "domain/events/outbox.py"}
# modules whose ``.payload`` is a protocol message, not an event
NOT_EVENT_PAYLOADS = {
    "service/live/protocol.py",  # graphql-transport-ws messages
    "service/live/session.py",  # a rejected connection_init's payload
    "integrations/stores/simulator.py",  # the simulated store's requests
    "integrations/warehouses/simulator.py",  # the simulated warehouse's requests
}


def _published(event_type: EventType, payload: dict[str, Any]) -> PublishedEvent:
    return PublishedEvent(
        seq=1,
        type=event_type.value,
        subject_type="Thing",
        subject_id="1",
        payload=payload,
        audience=frozenset({1}),
        actor_user_id=None,
        created_at=datetime.now(UTC),
    )


# -- one class per type, and round trips --------------------------------------------------------


@pytest.mark.parametrize("event_type", list(EventType))
def test_every_event_type_has_a_payload_class(event_type: EventType) -> None:
    cls = payload_class(event_type)
    assert cls.TYPE is event_type
    assert payload_class(event_type.value) is cls


def test_an_unknown_type_has_no_payload_class() -> None:
    with pytest.raises(LookupError):
        payload_class("NO_SUCH_EVENT")
    assert set(CATALOGUE) == set(EventType)


def _sample(hint: Any, *, none: bool) -> Any:
    """A value of type ``hint`` (None for an optional one when ``none``)."""
    if get_origin(hint) in (Union, types.UnionType):
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return None if none else _sample(inner, none=none)
    if get_origin(hint) is tuple:
        return (3, 12)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return list(hint)[-1]
    samples: dict[Any, Any] = {
        bool: True,
        int: 42,
        str: "text",
        datetime: datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    if hint not in samples:
        raise AssertionError(f"no sample for {hint!r}: extend this test")
    return samples[hint]


def _instances(cls: type[EventPayload]) -> list[EventPayload]:
    hints = get_type_hints(cls)
    names = [name for name, _ in catalogue._layout(cls)]
    return [cls(**{n: _sample(hints[n], none=none) for n in names}) for none in (False, True)]


@pytest.mark.parametrize("cls", list(CATALOGUE.values()), ids=lambda c: c.__name__)
def test_payloads_round_trip_through_stored_json(cls: type[EventPayload]) -> None:
    for instance in _instances(cls):
        stored = json.loads(json.dumps(instance.to_payload()))  # what the database gives back
        assert cls.from_payload(stored) == instance
        assert cls.from_payload(stored).to_payload() == stored
        assert parse(_published(cls.TYPE, stored)) == instance
        assert all("_" not in key for key in stored)  # camelCase, as the API documents


def test_payload_of_refuses_an_event_of_another_type() -> None:
    event = _published(EventType.QUOTE_UPDATED, {"quoteId": "1", "status": "REQUESTED"})
    with pytest.raises(TypeError):
        payload_of(event, OrderStatusChanged)


def test_the_api_shows_a_payload_the_catalogue_cannot_read_as_stored() -> None:
    odd = {"legacy": True}
    assert public_payload(_published(EventType.ORDER_STATUS_CHANGED, odd)) == odd
    product = {"productId": "4", "change": "CREATED"}
    assert public_payload(_published(EventType.PRODUCT_UPDATED, product)) == product


# -- the shapes stored today, and audiences --------------------------------------------------------


def _order(*, supplier_id: int | None) -> Order:
    return Order(id=5, number="SO-5", buyer_id=10, supplier_id=supplier_id)


def test_an_order_status_change_is_stored_as_before_and_told_to_both_sides() -> None:
    event = OrderStatusChanged.of(
        _order(supplier_id=20),
        OrderStatus.AWAITING_PAYMENT,
        OrderStatus.AWAITING_SHIPPING,
        reason="paid",
        actor_user_id=3,
    )
    assert event.type is EventType.ORDER_STATUS_CHANGED
    assert (event.subject_type, event.subject_id, event.audience) == ("Order", 5, (10, 20))
    assert event.payload.to_payload() == {
        "orderId": "5",
        "number": "SO-5",
        "from": "AWAITING_PAYMENT",
        "to": "AWAITING_SHIPPING",
        "reason": "paid",
    }
    unmapped = OrderStatusChanged.of(
        _order(supplier_id=None),
        OrderStatus.UNRECOGNIZED,
        OrderStatus.CANCELLED,
        reason="",
        actor_user_id=None,
    )
    assert unmapped.audience == (10,)


def test_keys_absent_or_null_today_stay_so() -> None:
    assert ProductUpdated(product_id=1, change="CREATED", sku_id=None).to_payload() == {
        "productId": "1",
        "change": "CREATED",
    }
    assert list(ProductUpdated(product_id=1, change="SKU_UPDATED", sku_id=2).to_payload()) == [
        "productId",
        "change",
        "skuId",
    ]
    withdrawal = Withdrawal(
        id=8,
        order_id=None,
        after_sales_id=9,
        distributor_id=10,
        supplier_id=20,
        status=WithdrawalStatus.WITHDRAWING,
        failure=None,
    )
    event = WithdrawalStatusChanged.of(withdrawal, actor_user_id=None)
    assert event.payload.to_payload() == {
        "withdrawalId": "8",
        "orderId": None,
        "afterSalesId": "9",
        "status": "WITHDRAWING",
        "reason": "",
    }
    item = StockItem(
        id=1,
        buyer_id=10,
        sku_id=2,
        warehouse_id=3,
        on_hand=5,
        reserved=1,
        available=4,
        in_transit=0,
    )
    low = StockLow.of(
        item,
        movement=MovementKind.RESERVED,
        order_id=None,
        threshold=5,
        actor_user_id=None,
    )
    assert low.payload.to_payload() == {
        "stockItemId": "1",
        "skuId": "2",
        "warehouseId": "3",
        "onHand": 5,
        "reserved": 1,
        "available": 4,
        "inTransit": 0,
        "movement": "RESERVED",
        "orderId": None,
        "threshold": 5,
    }
    assert low.audience == (10,)


def test_a_resolution_adds_its_keys_and_events_recorded_before_read_back_unresolved() -> None:
    withdrawal = Withdrawal(
        id=8,
        order_id=5,
        after_sales_id=None,
        distributor_id=10,
        supplier_id=20,
        status=WithdrawalStatus.WITHDRAW_FAILED,
        failure="the warehouse refused: picking",
        resolution=WithdrawalResolution.CLOSED,
        resolution_note="customer agreed",
    )
    stored = WithdrawalStatusChanged.of(withdrawal, actor_user_id=None).payload.to_payload()
    assert stored == {
        "withdrawalId": "8",
        "orderId": "5",
        "afterSalesId": None,
        "status": "WITHDRAW_FAILED",
        "reason": "the warehouse refused: picking",
        "resolution": "CLOSED",
        "resolutionNote": "customer agreed",
    }
    before = {k: v for k, v in stored.items() if not k.startswith("resolution")}
    read = WithdrawalStatusChanged.from_payload(before)
    assert (read.resolution, read.resolution_note) == (None, None)


def test_a_return_change_names_its_withdraw_step_and_the_reason_it_failed() -> None:
    item = AfterSalesOrder(
        id=4,
        number="RT1",
        distributor_id=11,
        supplier_id=21,
        status=AfterSalesStatus.AWAITING_STOCK_IN,
        push_status=PushStatus.PUSHED,
        push_error=None,
        withdrawal_status=WithdrawalStatus.WITHDRAW_FAILED,
    )
    withdrawal = Withdrawal(id=8, after_sales_id=4, failure="the warehouse refused: received")
    step = ReturnStatusChanged.of(item, actor_user_id=None, withdrawal=withdrawal)
    assert step.payload.to_payload() == {
        "afterSalesId": "4",
        "number": "RT1",
        "status": "AWAITING_STOCK_IN",
        "pushStatus": "PUSHED",
        "withdrawalStatus": "WITHDRAW_FAILED",
        "error": "the warehouse refused: received",
        "withdrawalId": "8",
    }
    item.withdrawal_status = None  # resolved: no withdraw failure to tell any more
    assert ReturnStatusChanged.of(item, actor_user_id=None, withdrawal=withdrawal).payload == (
        ReturnStatusChanged(
            after_sales_id=4,
            number="RT1",
            status=AfterSalesStatus.AWAITING_STOCK_IN,
            push_status=PushStatus.PUSHED,
            withdrawal_status=None,
            error=None,
            withdrawal_id=8,
        )
    )
    # a change that is not a withdraw step is stored as before
    assert (
        "withdrawalId" not in ReturnStatusChanged.of(item, actor_user_id=None).payload.to_payload()
    )


def test_an_order_update_tells_whoever_is_left_to_tell() -> None:
    order = _order(supplier_id=20)
    everyone = OrderUpdated.of(order, change="LINES", actor_user_id=1, previous_supplier_id=30)
    assert everyone is not None and everyone.audience == (10, 20, 30)
    left_only = OrderUpdated.of(
        order, change="LINES", actor_user_id=1, parties_told=True, previous_supplier_id=30
    )
    assert left_only is not None and left_only.audience == (30,)
    assert (
        OrderUpdated.of(
            order, change="LINES", actor_user_id=1, parties_told=True, previous_supplier_id=20
        )
        is None
    )


def test_a_warehouse_attempt_is_told_to_the_sides_of_its_order_or_return() -> None:
    task = WarehouseTask(kind=TaskKind.PUSH_ORDER)
    on_order = WarehouseAttemptRecorded.of(
        task, _order(supplier_id=20), ok=False, outcome="x" * 600
    )
    assert on_order is not None
    assert (on_order.subject_type, on_order.audience) == ("Order", (10, 20))
    assert on_order.payload.to_payload() == {
        "taskKind": "PUSH_ORDER",
        "ok": False,
        "outcome": "x" * 500,
    }
    ret = AfterSalesOrder(id=4, distributor_id=11, supplier_id=21)
    on_return = WarehouseAttemptRecorded.of(task, ret, ok=True, outcome="ok")
    assert on_return is not None
    assert (on_return.subject_type, on_return.subject_id) == ("AfterSalesOrder", 4)
    assert on_return.audience == (11, 21)


# -- nobody else reads payload keys or builds events -------------------------------------------


def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if "/migrations/" not in name:
                found.append((name, ast.parse(path.read_text(), filename=name)))
    return found


def _is_payload(node: ast.expr, aliases: set[str]) -> bool:
    """``something.payload``, or a name assigned from one."""
    if isinstance(node, ast.Attribute) and node.attr == "payload":
        return True
    return isinstance(node, ast.Name) and node.id in aliases


def _payload_key_reads(tree: ast.Module) -> list[int]:
    aliases = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _is_payload(node.value, set())
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Subscript) and _is_payload(node.value, aliases)) or (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _is_payload(node.func.value, aliases)
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_catalogue_reads_event_payloads_by_key() -> None:
    offenders = {
        name: lines
        for name, tree in _modules()
        if name not in PLUMBING | NOT_EVENT_PAYLOADS and (lines := _payload_key_reads(tree))
    }
    assert offenders == {}, "read the typed payload (domain.event_catalogue.parse/payload_of)"


def test_the_key_read_check_sees_the_forms_it_forbids() -> None:
    tree = ast.parse(
        "a = event.payload['orderId']\n"
        "b = event.payload.get('orderId')\n"
        "p = event.payload\n"
        "c = p['to']\n"
        "d = p.get('from')\n"
        "e = dict(event.payload)\n"
    )
    assert _payload_key_reads(tree) == [1, 2, 4, 5]


def _catalogue_calls(tree: ast.Module) -> set[str]:
    """Names bound to ``SomeCatalogueClass.of(...)`` in ``tree``."""
    return {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.NamedExpr) and _is_constructor(node.value)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


def _is_constructor(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in {cls.__name__ for cls in CATALOGUE.values()}
    )


def test_every_recorded_event_comes_from_the_catalogue() -> None:
    problems = []
    calls = 0
    for name, tree in _modules():
        if name in PLUMBING:
            continue
        events = _catalogue_calls(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == "NewEvent":
                problems.append(f"{name}:{node.lineno} builds a NewEvent by hand")
            if called == "_as_event":
                problems.append(f"{name}:{node.lineno} uses the catalogue's private _as_event")
            if called != "record_event":
                continue
            calls += 1
            (arg,) = node.args or [None]
            ok = not node.keywords and arg is not None
            ok = ok and (_is_constructor(arg) or (isinstance(arg, ast.Name) and arg.id in events))
            if not ok:
                problems.append(f"{name}:{node.lineno} records something not from the catalogue")
    assert problems == []
    assert calls >= 25  # the check found the call sites
