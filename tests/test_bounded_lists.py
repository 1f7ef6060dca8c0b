"""Bounded lists: no answer grows without bound with the data, whoever writes it.

A list nested in an object has a maximum (``domain/limits.py``), stated in the field's
description and enforced when the data is written; the walk below fails for a nested list of
objects that has none. Then each cap is tried the way a client meets it.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

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
from domain.stores.data import StoreProductData, StoreVariantData
from domain.stores.models import Store
from integrations.stores.protocol import StorePayloadError, parse_product
from schema.build import create_schema
from schema.global_ids import gid, key_of
from tests.conftest import MakeMember, Member
from tests.support.distribution import paid_order, partnered, push
from tests.support.graphql_client import GraphQLHttp
from tests.test_global_ids import MANUAL_ORDER
from tests.test_order_flow import connect_variant, ok, supplier_catalogue

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


# -- collections that grow by writes, per owner (domain/limits.py, second part) ----------------
# Each maximum is made small here (the server runs in this process and reads ``limits.MAX_…``
# at each write): the write that would pass it is refused with TOO_MANY and writes nothing.


def _refused(payload: dict, field: str | None = None) -> None:
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("TOO_MANY", field)], (
        payload
    )


async def _payload(client: GraphQLHttp, document: str, variables: dict, token: str) -> dict:
    return next(iter((await client.data(document, variables, token=token)).values()))


ADD_USER = """mutation($e: String!) { addUser(input: {email: $e, name: "N", role: STAFF})
  { user { id } userErrors { code field message } } }"""
CONNECT_STORE = """mutation($n: String!) { connectStore(input: {name: $n, platform: SHOPIFY,
  apiUrl: "http://127.0.0.1:9", accessToken: "t"}) { store { id } userErrors { code field message } } }"""
CLOUD_WAREHOUSE = """mutation { createCloudWarehouse(input: {name: "W", address: {name: "W",
  address1: "1 Dock Rd", city: "Hull", countryCode: "GB"}}) { warehouse { id } userErrors { code field message } } }"""
AUTHORISE = """mutation { authoriseThirdPartyWarehouse(input: {provider: "P", name: "W",
  apiUrl: "http://127.0.0.1:9", apiKey: "k"}) { thirdPartyWarehouse { id } userErrors { code field message } } }"""
REVOKE_WAREHOUSE = (
    """mutation($i: ID!) { revokeThirdPartyWarehouse(id: $i) { userErrors { code } } }"""
)
CREATE_TOKEN = (
    """mutation { createApiToken(input: {name: "t"}) { token { id } userErrors { code } } }"""
)
REVOKE_TOKEN = """mutation($i: ID!) { revokeApiToken(input: {id: $i}) { userErrors { code } } }"""


async def test_users_of_an_organisation_are_bounded(
    client: GraphQLHttp, make_member: MakeMember, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain.organisations.models import User

    owner = await make_member("BUYER")
    monkeypatch.setattr(limits, "MAX_USERS_PER_ORGANISATION", 2)  # the owner and one more
    made = await _payload(client, ADD_USER, {"e": f"{uuid4().hex}@example.test"}, owner.token)
    assert made["userErrors"] == []
    email = f"{uuid4().hex}@example.test"
    _refused(await _payload(client, ADD_USER, {"e": email}, owner.token))
    assert await User.filter(organisation_id=owner.organisation_id).count() == 2
    assert not await User.exists(email=email)


async def test_spent_api_tokens_kept_are_bounded(
    client: GraphQLHttp, make_member: MakeMember, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = await make_member("BUYER")
    monkeypatch.setattr(limits, "MAX_SPENT_TOKENS_KEPT_PER_USER", 2)
    made = []
    for _ in range(5):  # create one, revoke it: the spent ones beyond two go as the next comes
        token = (await _payload(client, CREATE_TOKEN, {}, member.token))["token"]["id"]
        await _payload(client, REVOKE_TOKEN, {"i": token}, member.token)
        made.append(token)
    await _payload(client, CREATE_TOKEN, {}, member.token)
    listed = (
        await client.data(
            "{ apiTokens(first: 100) { nodes { id revokedAt } } }", token=member.token
        )
    )["apiTokens"]["nodes"]
    assert sorted(t["id"] for t in listed if t["revokedAt"]) == sorted(made[-2:])
    assert len([t for t in listed if not t["revokedAt"]]) == 2  # the member's own, the last


@pytest.mark.parametrize(
    ("limit", "document"),
    [
        ("MAX_PRODUCTS_PER_SUPPLIER", CREATE_PRODUCT),
        ("MAX_LOGISTICS_METHODS_PER_SUPPLIER", CREATE_METHOD),
        ("MAX_CLOUD_WAREHOUSES_PER_SUPPLIER", CLOUD_WAREHOUSE),
    ],
)
async def test_a_suppliers_catalogue_and_warehouses_are_bounded(
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
    limit: str,
    document: str,
) -> None:
    from domain.catalogue.models import LogisticsMethod, Product
    from domain.stock.models import CloudWarehouse

    supplier = await make_member("SUPPLIER")
    monkeypatch.setattr(limits, limit, 2)
    rule = {
        "countryCode": "GB",
        "firstWeightGrams": 500,
        "firstPrice": "1.00",
        "stepGrams": 500,
        "stepPrice": "1.00",
    }
    for i in range(3):
        variables = {"s": [_sku(i)], "r": [rule]}
        used = {k: v for k, v in variables.items() if f"${k}" in document}
        payload = await _payload(client, document, used, supplier.token)
        if i < 2:
            assert payload["userErrors"] == [], payload
        else:
            _refused(payload)
    model = {
        "MAX_PRODUCTS_PER_SUPPLIER": Product,
        "MAX_LOGISTICS_METHODS_PER_SUPPLIER": LogisticsMethod,
        "MAX_CLOUD_WAREHOUSES_PER_SUPPLIER": CloudWarehouse,
    }[limit]
    assert await model.filter(supplier_id=supplier.organisation_id).count() == 2


async def test_third_party_warehouses_are_bounded_revoked_ones_included(
    client: GraphQLHttp, make_member: MakeMember, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain.distribution.models import ThirdPartyWarehouse

    supplier = await make_member("SUPPLIER")
    monkeypatch.setattr(limits, "MAX_THIRD_PARTY_WAREHOUSES_PER_SUPPLIER", 1)
    made = await _payload(client, AUTHORISE, {}, supplier.token)
    await _payload(
        client, REVOKE_WAREHOUSE, {"i": made["thirdPartyWarehouse"]["id"]}, supplier.token
    )
    _refused(await _payload(client, AUTHORISE, {}, supplier.token))
    assert await ThirdPartyWarehouse.filter(supplier_id=supplier.organisation_id).count() == 1


async def test_stores_of_a_buyer_are_bounded_even_when_connected_at_once(
    client: GraphQLHttp, make_member: MakeMember, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain.stores.models import Store

    buyer = await make_member("BUYER")
    monkeypatch.setattr(limits, "MAX_STORES_PER_BUYER", 2)
    answers = await asyncio.gather(
        *(_payload(client, CONNECT_STORE, {"n": f"Shop {i}"}, buyer.token) for i in range(5))
    )
    assert sum(1 for a in answers if a["userErrors"] == []) == 2, answers
    for refused in (a for a in answers if a["userErrors"]):
        _refused(refused)
    assert await Store.filter(buyer_id=buyer.organisation_id).count() == 2


def _store_product(n: int) -> StoreProductData:
    attributes = {"color": "Red", "size": "M"}
    variant = StoreVariantData(f"v{n}", f"Variant {n}", None, attributes, Decimal("1.00"))
    return StoreProductData(f"p{n}", f"Product {n}", (variant,))


async def _store_with_products(client: GraphQLHttp, buyer: Member, count: int) -> Store:
    from domain.stores.commands import upsert_store_products
    from domain.stores.models import Store

    made = await _payload(client, CONNECT_STORE, {"n": "Shop"}, buyer.token)
    store = await Store.get(id=key_of(made["store"]["id"]))
    await upsert_store_products(store=store, products=[_store_product(n) for n in range(count)])
    return store


async def test_a_sync_that_would_pass_the_store_products_maximum_writes_none(
    client: GraphQLHttp, make_member: MakeMember, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain.errors import DomainError
    from domain.stores.commands import upsert_store_products
    from domain.stores.models import StoreProduct, StoreVariant

    buyer = await make_member("BUYER")
    monkeypatch.setattr(limits, "MAX_STORE_PRODUCTS_PER_STORE", 2)
    store = await _store_with_products(client, buyer, 2)
    # the same two again (a later sync) is fine; a third is refused, and nothing of it written
    await upsert_store_products(store=store, products=[_store_product(n) for n in range(2)])
    with pytest.raises(DomainError) as refused:
        await upsert_store_products(store=store, products=[_store_product(n) for n in range(3)])
    assert (refused.value.code, refused.value.field) == ("TOO_MANY", "storeId")
    assert await StoreProduct.filter(store_id=store.id).count() == 2
    assert await StoreVariant.filter(store_id=store.id).count() == 2


async def test_links_and_quotes_of_a_store_product_are_bounded(
    client: GraphQLHttp, make_member: MakeMember, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain.orders.models import Quote
    from domain.stores.models import ProductLink, StoreProduct, StoreVariant

    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    store = await _store_with_products(client, buyer, 1)
    product = await StoreProduct.get(store_id=store.id)
    variant = await StoreVariant.get(product_id=product.id)
    product_id, variant_id = gid("StoreProduct", product.id), gid("StoreVariant", variant.id)
    monkeypatch.setattr(limits, "MAX_PRODUCT_LINKS_PER_STORE_PRODUCT", 2)
    for i in range(3):
        linked = await connect_variant(client, buyer, product_id, cat, variant_id, "TEE-R-M")
        if i < 2:
            assert linked["userErrors"] == [], linked
        else:
            _refused(linked, "input.storeProductId")
    assert await ProductLink.filter(store_product_id=product.id).count() == 2

    monkeypatch.setattr(limits, "MAX_QUOTES_PER_STORE_PRODUCT", 2)
    request = """mutation($s: ID!, $p: ID!) { requestQuote(input: {supplierId: $s, storeProductId: $p})
      { quote { id } userErrors { code field message } } }"""
    for i in range(3):
        asked = await _payload(client, request, {"s": supplier.gid, "p": product_id}, buyer.token)
        if i < 2:
            assert asked["userErrors"] == [], asked
        else:
            _refused(asked, "input.storeProductId")
    assert await Quote.filter(store_product_id=product.id).count() == 2


async def test_distribution_warehouses_returns_and_pushes_are_bounded(
    client: GraphQLHttp, make_member: MakeMember, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domain.after_sales.models import AfterSalesOrder
    from domain.distribution.models import (
        DistributionWarehouse,
        TaskKind,
        TaskState,
        WarehouseOrder,
        WarehouseTask,
    )

    d = await partnered(client, make_member, None)
    partnership = key_of(d.partnership_id)
    monkeypatch.setattr(limits, "MAX_DISTRIBUTION_WAREHOUSES_PER_PARTNERSHIP", 2)
    add = """mutation($p: ID!) { addDistributionWarehouse(input: {partnershipId: $p, name: "Extra",
      address: {name: "X", address1: "1 Road", city: "Leeds", countryCode: "GB"}})
      { warehouse { id } userErrors { code field message } } }"""
    added = await _payload(client, add, {"p": d.partnership_id}, d.distributor.token)
    assert added["userErrors"] == []  # the second: accepting the partnership made the first
    _refused(
        await _payload(client, add, {"p": d.partnership_id}, d.distributor.token),
        "input.partnershipId",
    )
    assert await DistributionWarehouse.filter(partnership_id=partnership).count() == 2

    # a third-party warehouse runs the partnership (never called: every push here is refused)
    third_party = (await _payload(client, AUTHORISE, {}, d.supplier.token))["thirdPartyWarehouse"]
    await ok(
        client,
        "mutation($p: ID!, $w: ID!, $c: ID) { selectDistributionWarehouse(partnershipId: $p, warehouseId: $w, thirdPartyWarehouseId: $c) { userErrors { code field message } } }",
        {"p": d.partnership_id, "w": d.warehouse_id, "c": third_party["id"]},
        token=d.supplier.token,
    )
    order_id = await paid_order(client, d)
    # pushed (and failed) as often as allowed already: the next push is refused
    monkeypatch.setattr(limits, "MAX_PUSHES", 1)
    done = {
        "third_party_warehouse_id": key_of(third_party["id"]),
        "state": TaskState.DONE,
        "due_at": datetime.now(UTC),
    }
    await WarehouseTask.create(kind=TaskKind.PUSH_ORDER, order_id=key_of(order_id), **done)
    _refused(await push(client, d, order_id), "orderIds.0")
    record = await WarehouseOrder.get_or_none(order_id=key_of(order_id))
    assert record is None or record.push_status.value == "NOT_PUSHED"
    assert await WarehouseTask.filter(order_id=key_of(order_id)).count() == 1

    await ok(
        client,
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "DHL", trackingNumber: "T1") { userErrors { code field message } } }',
        {"o": order_id},
        token=d.supplier.token,
    )
    line = (
        await client.data(
            "query($o: ID!) { order(id: $o) { lines { id } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
    )["order"]["lines"][0]["id"]
    create = """mutation($o: ID!, $l: ID!) { createAfterSalesOrder(input: {orderId: $o,
      items: [{lineId: $l, quantity: 1}], reason: "damaged"}) { afterSalesOrder { id }
      userErrors { code field message } } }"""
    monkeypatch.setattr(limits, "MAX_RETURNS_PER_ORDER", 1)
    made = await _payload(client, create, {"o": order_id, "l": line}, d.distributor.token)
    assert made["userErrors"] == [], made
    _refused(
        await _payload(client, create, {"o": order_id, "l": line}, d.distributor.token),
        "input.orderId",
    )
    assert await AfterSalesOrder.filter(order_id=key_of(order_id)).count() == 1

    returned = key_of(made["afterSalesOrder"]["id"])
    await WarehouseTask.create(kind=TaskKind.PUSH_RETURN, after_sales_id=returned, **done)
    pushed = await _payload(
        client,
        "mutation($a: [ID!]!) { pushReturns(afterSalesIds: $a) { userErrors { code field message } } }",
        {"a": [made["afterSalesOrder"]["id"]]},
        d.supplier.token,
    )
    _refused(pushed, "afterSalesIds")
    assert (await AfterSalesOrder.get(id=returned)).push_status.value == "NOT_PUSHED"
