"""Bounded lists: no answer grows without bound with the data, whoever writes it.

A list nested in an object has a maximum (``domain/limits.py``), stated in the field's
description and enforced when the data is written; the walk below fails for a nested list of
objects that has none. Then each cap is tried the way a client meets it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from graphql import (
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    get_named_type,
    is_leaf_type,
)

from domain import limits
from domain.payments.charges import MAX_ORDERS_PER_PAYMENT
from integrations.stores.protocol import StorePayloadError, parse_product
from schema.build import create_schema
from schema.global_ids import key_of
from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.test_global_ids import MANUAL_ORDER
from tests.test_order_flow import ok, supplier_catalogue

DAY = timedelta(days=1)

# every nested list of objects, and its maximum
NESTED: dict[str, int] = {
    "Product.skus": limits.MAX_SKUS_PER_PRODUCT,
    "Sku.tiers": limits.MAX_TIERS_PER_SKU,
    "LogisticsMethod.rules": limits.MAX_RULES_PER_METHOD,
    "StoreProduct.variants": limits.MAX_VARIANTS_PER_STORE_PRODUCT,
    "Order.lines": limits.MAX_ORDER_LINES,
    "Order.timeline": limits.MAX_TIMELINE,
    "Order.withdrawals": limits.MAX_WITHDRAWALS,
    "Order.warehouseAttempts": limits.MAX_ATTEMPTS_KEPT,
    "Order.deputes": limits.MAX_DEPUTES_PER_ORDER,
    "AfterSalesOrder.items": limits.MAX_ORDER_LINES,
    "AfterSalesOrder.withdrawals": limits.MAX_WITHDRAWALS,
    "AfterSalesOrder.warehouseAttempts": limits.MAX_ATTEMPTS_KEPT,
    "Quote.skuPrices": limits.MAX_QUOTED_PRICES,
    "FreightQuote.orders": MAX_ORDERS_PER_PAYMENT,
}


def _is_list(type_: GraphQLOutputType) -> bool:
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def _lists_of_objects(type_: GraphQLObjectType | GraphQLInterfaceType) -> list[str]:
    return [
        name
        for name, field in type_.fields.items()
        if _is_list(field.type) and not is_leaf_type(get_named_type(field.type))
    ]


def test_every_nested_list_states_and_has_a_maximum() -> None:
    schema = create_schema()._schema
    roots = {schema.query_type, schema.mutation_type, schema.subscription_type}
    unbounded, unstated = [], []
    for name, type_ in schema.type_map.items():
        if not isinstance(type_, GraphQLObjectType) or name.startswith("__") or type_ in roots:
            continue
        if name.endswith(("Payload", "Connection")):
            continue  # a mutation's answer (bounded by its input), or a page
        for field_name in _lists_of_objects(type_):
            key = f"{name}.{field_name}"
            if key not in NESTED:
                unbounded.append(key)
                continue
            description = type_.fields[field_name].description or ""
            if not re.search(rf"\bat most {NESTED[key]}\b", description, re.IGNORECASE):
                unstated.append(f"{key}: {description!r}")
    assert unbounded == [], "nested lists with no maximum (add one to domain/limits.py)"
    assert unstated == [], "descriptions that do not state the maximum"
    stale = [key for key in NESTED if key.split(".")[0] not in schema.type_map]
    assert stale == []


# -- each cap, as a client meets it ----------------------------------------------------------------


def _sku(i: int, tiers: int = 0) -> dict:
    return {
        "code": f"S{i}",
        "attributes": {"n": str(i)},
        "weightGrams": 100,
        "unitPrice": "2.00",
        "tiers": [{"minQuantity": 10 * (t + 1), "unitPrice": "1.00"} for t in range(tiers)],
    }


CREATE_PRODUCT = """mutation($s: [SkuInput!]!) { createProduct(input: {title: "T", skus: $s})
  { product { id } userErrors { code field } } }"""
CREATE_METHOD = """mutation($r: [FreightRuleInput!]!) { createLogisticsMethod(input: {name: "M",
  minDays: 1, maxDays: 2, rules: $r}) { logisticsMethod { id } userErrors { code field } } }"""


async def test_products_methods_and_tiers_refuse_more_than_their_maximum(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier = await make_member("SUPPLIER")

    async def create(skus: list[dict]) -> dict:
        return (await client.data(CREATE_PRODUCT, {"s": skus}, token=supplier.token))[
            "createProduct"
        ]

    too_many = [_sku(i) for i in range(limits.MAX_SKUS_PER_PRODUCT + 1)]
    assert await create(too_many) == {
        "product": None,
        "userErrors": [{"code": "TOO_MANY", "field": "input.skus"}],
    }
    tiers = [_sku(0, tiers=limits.MAX_TIERS_PER_SKU + 1)]
    assert (await create(tiers))["userErrors"] == [
        {"code": "TOO_MANY", "field": "input.skus.0.tiers"}
    ]
    most = [_sku(i, tiers=limits.MAX_TIERS_PER_SKU) for i in range(limits.MAX_SKUS_PER_PRODUCT)]
    made = await create(most)
    assert made["userErrors"] == [] and made["product"]["id"]

    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    rules = [
        {
            "countryCode": a + b,
            "firstWeightGrams": 500,
            "firstPrice": "1.00",
            "stepGrams": 500,
            "stepPrice": "1.00",
        }
        for a in letters
        for b in letters
    ][: limits.MAX_RULES_PER_METHOD + 1]
    method = (await client.data(CREATE_METHOD, {"r": rules}, token=supplier.token))[
        "createLogisticsMethod"
    ]
    assert method == {
        "logisticsMethod": None,
        "userErrors": [{"code": "TOO_MANY", "field": "input.rules"}],
    }
    method = (await client.data(CREATE_METHOD, {"r": rules[:-1]}, token=supplier.token))[
        "createLogisticsMethod"
    ]
    assert method["userErrors"] == []


async def test_an_order_is_held_abnormal_at_most_the_maximum_times(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    order = (await ok(client, MANUAL_ORDER, {"k": cat["skus"]["TEE-R-M"]}, token=buyer.token))[
        "order"
    ]
    hold = 'mutation($o: ID!) { holdOrderAbnormal(orderId: $o, reason: "check") { order { status } userErrors { code field } } }'
    resolve = 'mutation($o: ID!) { resolveOrderAbnormal(orderId: $o, note: "ok") { order { status } userErrors { code field } } }'
    for _ in range(limits.MAX_ABNORMAL_HOLDS):
        await ok(client, hold, {"o": order["id"]}, token=supplier.token)
        await ok(client, resolve, {"o": order["id"]}, token=supplier.token)
    refused = (await client.data(hold, {"o": order["id"]}, token=supplier.token))[
        "holdOrderAbnormal"
    ]
    assert refused["userErrors"] == [{"code": "TOO_MANY", "field": "orderId"}]
    timeline = (
        await client.data(
            "query($o: ID!) { order(id: $o) { status timeline { toStatus } } }",
            {"o": order["id"]},
            token=buyer.token,
        )
    )["order"]
    assert timeline["status"] == "AWAITING_PAYMENT"
    assert len(timeline["timeline"]) <= limits.MAX_TIMELINE


async def test_only_the_latest_warehouse_attempts_are_kept(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    from domain.distribution.models import TaskKind, TaskState, WarehouseAttempt, WarehouseTask
    from domain.distribution.tasks import record_attempt

    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    order = (await ok(client, MANUAL_ORDER, {"k": cat["skus"]["TEE-R-M"]}, token=buyer.token))[
        "order"
    ]
    task = await WarehouseTask.create(  # due in a day: no worker takes it meanwhile
        kind=TaskKind.PUSH_ORDER, order_id=key_of(order["id"]), due_at=datetime.now(UTC) + DAY
    )
    try:
        for i in range(limits.MAX_ATTEMPTS_KEPT + 5):
            await record_attempt(task, ok=False, outcome=f"attempt {i}")
    finally:  # the run's database is shared: no pending task may outlive the test
        # (finished, not deleted: its attempts reference it)
        await WarehouseTask.filter(id=task.id).update(state=TaskState.DONE)
    kept = await WarehouseAttempt.filter(order_id=task.order_id).order_by("id")
    assert len(kept) == limits.MAX_ATTEMPTS_KEPT
    assert kept[0].outcome == "attempt 5" and kept[-1].outcome == f"attempt {len(kept) + 4}"
    shown = (
        await client.data(
            "query($o: ID!) { order(id: $o) { warehouseAttempts { ok } } }",
            {"o": order["id"]},
            token=supplier.token,
        )
    )["order"]["warehouseAttempts"]
    assert len(shown) == limits.MAX_ATTEMPTS_KEPT


@pytest.mark.parametrize("extra", [0, 1])
def test_a_store_product_with_more_variants_than_the_maximum_is_refused(extra: int) -> None:
    count = limits.MAX_VARIANTS_PER_STORE_PRODUCT + extra
    payload = {
        "id": 1,
        "title": "Big",
        "options": [{"name": "Size"}],
        "variants": [
            {"id": i + 1, "title": f"V{i}", "price": "1.00", "option1": str(i)}
            for i in range(count)
        ],
    }
    if extra:
        with pytest.raises(StorePayloadError, match="variants"):
            parse_product(payload)
    else:
        assert len(parse_product(payload).variants) == count
