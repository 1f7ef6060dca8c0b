"""What invalidates what (``service/invalidation.py``) is complete and true.

Complete: every Query and Mutation field of the schema has its entry, and every field that
returns shared data (a product, a SKU, a logistics method, a store...) or shows another
organisation's name is known to read it. True: a tour runs every mutation of the schema through
a real server and checks that what each one records is what it declares, and that every
successful one records something.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from graphql import GraphQLObjectType, GraphQLSchema, get_named_type

from domain.distribution.models import TaskState, WarehouseTask
from domain.events import EventType, PublishedEvent, collecting
from domain.shared_data import CHANGED_BY, SharedData, changed_by
from integrations.stores.simulator import create_store_simulator
from schema.build import create_schema
from service.invalidation import MUTATIONS, NESTED_FIELDS, QUERY_FIELDS
from service.response_cache import ResponseCache, analyse, request_key
from tests.conftest import MakeMember, ServerFactory
from tests.support.distribution import (
    FAST_WAREHOUSE,
    WarehouseSim,
    eventually,
    manual_order,
    order_state,
    partnered,
    warehouse_simulator,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import IDLE_SAFE, RunningServer, serve
from tests.test_order_flow import SECRET, TOKEN, connect_store
from tests.test_response_cache import VIEWER
from tests.test_store_integration import Sim

# The GraphQL types that carry shared data, and the fields that show another organisation's
# name: a field returning one of these types, or named so, reads that kind of data.
SHARED_TYPES = {
    "Product": SharedData.CATALOGUE,
    "Sku": SharedData.CATALOGUE,
    "PriceTier": SharedData.CATALOGUE,
    "LogisticsMethod": SharedData.LOGISTICS,
    "FreightRule": SharedData.LOGISTICS,
    "CloudWarehouse": SharedData.CLOUD_WAREHOUSES,
    "Store": SharedData.STORES,
}
NAME_FIELDS = {"buyerName", "supplierName", "distributorName"}
# Fields of other types whose values are computed from shared data: an unpaid order's prices
# are its SKUs' prices now (domain.payments.charges.estimate_prices).
COMPUTED_FROM_SHARED = {
    ("Order", "goodsAmount"): SharedData.CATALOGUE,
    ("OrderLine", "unitPrice"): SharedData.CATALOGUE,
}
# A connection's wrappers: read under the declaration of the field that returned the connection
# (``products { edges { node { title } } }`` reads what ``products`` declares), not by name.
WRAPPER_FIELDS = {"edges", "node", "nodes", "pageInfo"}


def is_wrapper(parent: GraphQLObjectType, name: str) -> bool:
    return parent.name.endswith(("Connection", "Edge")) and name in WRAPPER_FIELDS


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return create_schema()._schema


def test_every_mutation_declares_what_it_records(schema: GraphQLSchema) -> None:
    assert schema.mutation_type is not None
    assert set(schema.mutation_type.fields) == set(MUTATIONS)
    for name, types in MUTATIONS.items():
        assert all(isinstance(t, EventType) for t in types), name


def test_every_query_field_declares_what_it_reads(schema: GraphQLSchema) -> None:
    assert schema.query_type is not None
    declared = {name for name in QUERY_FIELDS if not name.startswith("__")}
    assert set(schema.query_type.fields) == declared


def test_every_field_that_shows_shared_data_is_known_to_read_it(schema: GraphQLSchema) -> None:
    """Walks every type a query can reach: a field returning a shared type, or showing another
    organisation's name, must be declared to read that kind (at the root or by its name; inside
    a connection, by the field that returned the connection)."""
    assert schema.query_type is not None
    missing: list[str] = []
    # a type, and for a connection or edge what the field that returned it declares
    seen: set[tuple[str, frozenset[SharedData] | None]] = set()
    pending: list[tuple[GraphQLObjectType, frozenset[SharedData] | None]] = [
        (schema.query_type, None)
    ]
    while pending:
        parent, enclosing = pending.pop()
        for name, field in parent.fields.items():
            target = get_named_type(field.type)
            wanted = {SHARED_TYPES[target.name]} if target.name in SHARED_TYPES else set()
            if name in NAME_FIELDS:
                wanted.add(SharedData.ORGANISATION_NAMES)
            if (parent.name, name) in COMPUTED_FROM_SHARED:
                wanted.add(COMPUTED_FROM_SHARED[parent.name, name])
            if parent is schema.query_type:
                declared = QUERY_FIELDS[name]
            elif enclosing is not None and is_wrapper(parent, name):
                declared = enclosing
            else:
                declared = NESTED_FIELDS.get(name, frozenset())
            if not wanted <= declared:
                missing.append(f"{parent.name}.{name}: {sorted(wanted - declared)}")
            if isinstance(target, GraphQLObjectType):
                wrapper = target.name.endswith(("Connection", "Edge"))
                key = (target.name, declared if wrapper else None)
                if key not in seen:
                    seen.add(key)
                    pending.append((target, key[1]))
    assert missing == []
    assert not WRAPPER_FIELDS & set(NESTED_FIELDS), "wrappers are read under their connection"


def test_every_kind_of_shared_data_is_changed_by_an_event_and_read_somewhere() -> None:
    assert set(CHANGED_BY.values()) == set(SharedData)
    read = {kind for kinds in (*QUERY_FIELDS.values(), *NESTED_FIELDS.values()) for kind in kinds}
    assert read == set(SharedData)
    assert changed_by("PRODUCT_UPDATED") is SharedData.CATALOGUE
    assert changed_by("ORDER_STATUS_CHANGED") is None


def test_documents_are_labelled_with_what_they_read() -> None:
    def reads(document: str) -> frozenset[SharedData] | None:
        operation = analyse(document, None, max_tokens=1000)
        assert operation is not None
        return operation.reads

    assert reads("{ me { user { id } } orders { edges { node { id } } } }") == {
        SharedData.ORGANISATION_NAMES
    }
    page = "{ order(id: 1) { lines { sku { product { title } } } logisticsMethod { name } store { name } } }"
    assert reads(page) == {SharedData.CATALOGUE, SharedData.LOGISTICS, SharedData.STORES}
    # through fragments and aliases, at the root and below
    fragments = """query { ...Root } fragment Root on Query { list: products { nodes { ...Lines } } }
      fragment Lines on Product { id }"""
    assert reads(fragments) == {SharedData.CATALOGUE}
    assert reads("{ ... on Query { partnerships { edges { node { supplierName } } } } }") == {
        SharedData.ORGANISATION_NAMES
    }
    assert reads("{ __typename wallets { nodes { balance } } }") == frozenset()
    assert reads("{ inventory { nodes { sku { code } } } }") == {SharedData.CATALOGUE}
    # an unpaid order's prices follow the catalogue until payment
    assert reads("{ order(id: 1) { goodsAmount } }") == {SharedData.CATALOGUE}
    assert reads("{ order(id: 1) { lines { unitPrice } } }") == {SharedData.CATALOGUE}
    assert reads("{ order(id: 1) { pricesEstimated paidAmount } }") == frozenset()
    assert reads("{ apiTokens { nodes { id lastUsedAt } } }") is None  # changes without an event
    assert reads("{ nosuchfield }") is None


def _event(type: EventType, *audience: int) -> PublishedEvent:
    return PublishedEvent(
        seq=1,
        type=type.value,
        subject_type="Product",
        subject_id="1",
        payload={},
        audience=frozenset(audience),
        actor_user_id=None,
        created_at=datetime.now(UTC),
    )


def test_shared_data_changes_drop_every_organisations_entries_that_read_it() -> None:
    cache = ResponseCache(max_entries=10, max_bytes=100_000, ttl=60)

    def key(organisation_id: int, document: str) -> Any:
        operation = analyse(document, None, max_tokens=1000)
        assert operation is not None
        viewer = replace(VIEWER, organisation_id=organisation_id)
        return request_key(viewer, operation, document, None, None)

    products = [key(org, "{ products { nodes { id } } }") for org in (10, 11)]
    wallets = key(10, "{ wallets { nodes { id } } }")
    for k in (*products, wallets):
        assert cache.put(k, cache.ticket(), b"answer")
    cache.on_event(_event(EventType.PRODUCT_UPDATED, 99))  # another supplier's catalogue
    assert [cache.get(k) for k in products] == [None, None]
    assert cache.get(wallets) == b"answer"

    # an answer computed across a change to what it read is not stored
    ticket = cache.ticket()
    cache.on_event(_event(EventType.PRODUCT_UPDATED, 99))
    assert not cache.put(products[0], ticket, b"stale")
    cache.on_event(_event(EventType.LOGISTICS_METHOD_UPDATED, 99))
    assert cache.put(products[0], cache.ticket(), b"fresh") and cache.get(products[0]) == b"fresh"

    # a document reading what changes without an event is never stored
    assert not cache.put(key(10, "{ apiTokens { nodes { lastUsedAt } } }"), cache.ticket(), b"x")


# --------------------------------------------------------------------------- the tour


@dataclass
class Call:
    mutation: str
    recorded: list[EventType]
    succeeded: bool


def record_mutations(server: RunningServer) -> list[Call]:
    """Wrap the resolver of every Mutation field of ``server``'s schema so that each call is
    kept with the types of the events it recorded (``domain.events.collecting``)."""
    mutation_type = server.app.state.live.schema._schema.mutation_type
    calls: list[Call] = []

    def recording(name: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
        async def resolver(root: Any, info: Any, **arguments: Any) -> Any:
            with collecting() as recorded:
                result = resolve(root, info, **arguments)
                if inspect.isawaitable(result):
                    result = await result
            errors = getattr(result, "user_errors", None)
            calls.append(Call(name, list(recorded), result is not None and not errors))
            return result

        return resolver

    for name, field in mutation_type.fields.items():
        field.resolve = recording(name, field.resolve)
    return calls


@pytest.fixture
async def warehouse() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


@pytest.fixture
async def store() -> AsyncIterator[Sim]:
    app = create_store_simulator(access_token=TOKEN, webhook_secret=SECRET)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, limits=IDLE_SAFE) as control:
        yield Sim(url=url, control=control)


async def test_every_mutation_records_what_it_declares(
    make_server: ServerFactory, make_member: MakeMember, warehouse: WarehouseSim, store: Sim
) -> None:
    server = await make_server(**FAST_WAREHOUSE)
    calls = record_mutations(server)
    client = GraphQLHttp(server.url)
    try:
        await _tour(client, make_member, warehouse, store)
        # the worker finishes what the tour queued, so that no later test finds it pending
        await eventually(
            lambda: WarehouseTask.filter(state=TaskState.PENDING).exists(), lambda left: not left
        )
    finally:
        await client.close()

    untoured = set(MUTATIONS) - {call.mutation for call in calls if call.succeeded}
    assert untoured == set(), "the tour must run every mutation successfully"
    undeclared = [
        (call.mutation, sorted(set(call.recorded) - MUTATIONS[call.mutation]))
        for call in calls
        if not set(call.recorded) <= MUTATIONS[call.mutation]
    ]
    assert undeclared == []
    silent = [call.mutation for call in calls if call.succeeded and not call.recorded]
    assert silent == [], "a successful mutation changed something and recorded no event"


async def _tour(
    client: GraphQLHttp, make_member: MakeMember, warehouse: WarehouseSim, store: Sim
) -> None:
    """Every mutation of the schema, each successfully at least once."""
    d = await partnered(client, make_member, warehouse)  # catalogue, partnership, warehouse
    supplier, buyer, catalogue = d.supplier, d.distributor, d.catalogue

    async def run(query: str, token: str, **variables: Any) -> dict[str, Any]:
        data = await client.data(query, variables, token=token)
        payload = next(iter(data.values()))
        assert payload["userErrors"] == [], payload
        return payload

    async def query(document: str, token: str, **variables: Any) -> dict[str, Any]:
        return await client.data(document, variables, token=token)

    # the organisation and its people
    await run(
        'mutation { renameOrganisation(input: {name: "Toured"}) { userErrors { code } } }',
        supplier.token,
    )
    await run(
        'mutation($e: String!) { addUser(input: {email: $e, name: "Staff", role: STAFF}) { userErrors { code } } }',
        supplier.token,
        e=f"{uuid.uuid4().hex[:12]}@example.test",
    )
    token = await run(
        'mutation { createApiToken(input: {name: "tour"}) { token { id } userErrors { code } } }',
        supplier.token,
    )
    await run(
        "mutation($i: ID!) { revokeApiToken(input: {id: $i}) { userErrors { code } } }",
        supplier.token,
        i=token["token"]["id"],
    )
    await run(
        "mutation { setSlaRule(input: {rule: QUOTE_UNANSWERED, minutes: 90}) { userErrors { code } } }",
        supplier.token,
    )

    # the catalogue (createProduct and createLogisticsMethod ran in ``partnered``)
    await run(
        "mutation($k: ID!) { updateSku(input: {skuId: $k, weightGrams: 210}) { userErrors { code } } }",
        supplier.token,
        k=catalogue["skus"]["TEE-R-M"],
    )

    # a store, its products and an order nobody connected yet
    connected = await connect_store(client, buyer, store)
    store_id = connected["store"]["id"]
    tee = await store.product("Tee")
    blue = next(v for v in tee["variants"] if v["option1"] == "Blue")
    await store.order(blue["id"])
    await run(
        "mutation($s: ID!) { syncStoreOrders(storeId: $s) { ordersCreated userErrors { code } } }",
        buyer.token,
        s=store_id,
    )
    [store_product] = (
        await query(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { id variants { id externalId } } } }",
            buyer.token,
            s=store_id,
        )
    )["storeProducts"]["nodes"]
    blue_variant = next(
        v["id"] for v in store_product["variants"] if v["externalId"] == str(blue["id"])
    )
    [unrecognised] = (
        await query(
            "query($s: ID!) { orders(filter: {storeId: $s}) { edges { node { id lines { id } } } } }",
            buyer.token,
            s=store_id,
        )
    )["orders"]["edges"]

    # quotes
    for decision in ("acceptQuote", "declineQuote"):
        quote = await run(
            'mutation($s: ID!, $p: ID!) { requestQuote(input: {supplierId: $s, storeProductId: $p, note: "blue"}) { quote { id } userErrors { code } } }',
            buyer.token,
            s=supplier.gid,
            p=store_product["id"],
        )
        await run(
            'mutation($q: ID!, $p: ID!, $k: ID!) { answerQuote(input: {quoteId: $q, productId: $p, prices: [{skuId: $k, unitPrice: "6.00"}]}) { userErrors { code } } }',
            supplier.token,
            q=quote["quote"]["id"],
            p=catalogue["product"],
            k=catalogue["skus"]["TEE-B-L"],
        )
        await run(
            f"mutation($q: ID!) {{ {decision}(quoteId: $q) {{ userErrors {{ code }} }} }}",
            buyer.token,
            q=quote["quote"]["id"],
        )

    # connections
    await run(
        "mutation($o: ID!, $l: ID!, $k: ID!) { connectOrderSku(orderId: $o, lineId: $l, skuId: $k) { userErrors { code } } }",
        buyer.token,
        o=unrecognised["node"]["id"],
        l=unrecognised["node"]["lines"][0]["id"],
        k=catalogue["skus"]["TEE-B-L"],
    )
    connection = await run(
        """mutation($sp: ID!, $p: ID!, $m: ID!, $v: ID!, $k: ID!) { connectProduct(input: {
          storeProductId: $sp, productId: $p, logisticsMethodId: $m,
          variants: [{storeVariantId: $v, skuId: $k}]}) { productLink { id } userErrors { code } } }""",
        buyer.token,
        sp=store_product["id"],
        p=catalogue["product"],
        m=catalogue["method"],
        v=blue_variant,
        k=catalogue["skus"]["TEE-B-L"],
    )
    await run(
        "mutation($c: ID!) { disconnectProduct(productLinkId: $c) { userErrors { code } } }",
        buyer.token,
        c=connection["productLink"]["id"],
    )

    # distribution set-up (apply, decide, authorise and select ran in ``partnered``)
    await run(
        """mutation($p: ID!) { addDistributionWarehouse(input: {partnershipId: $p, name: "North",
          address: {name: "North", address1: "1 Quay", city: "Leeds", countryCode: "GB"}})
          { userErrors { code } } }""",
        buyer.token,
        p=d.partnership_id,
    )
    await run(
        "mutation($c: ID!) { testThirdPartyWarehouse(id: $c) { userErrors { code } } }",
        supplier.token,
        c=d.third_party_warehouse_id,
    )
    await run(
        "mutation { updateDistributionSettings(autoPushReturns: false) { userErrors { code } } }",
        supplier.token,
    )
    await run(
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "500.00", currency: "USD") { userErrors { code } } }',
        supplier.token,
        b=buyer.gid,
    )

    async def paid() -> str:
        order_id = await manual_order(client, d)
        await run(
            "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code } } }",
            buyer.token,
            o=order_id,
        )
        return order_id

    # orders: cancel, ship, deliver, hold, deputes
    await run(
        "mutation($o: ID!) { cancelOrders(orderIds: [$o]) { userErrors { code } } }",
        buyer.token,
        o=await manual_order(client, d),
    )
    delivered = await paid()
    await run(
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "DHL", trackingNumber: "T1") { userErrors { code } } }',
        supplier.token,
        o=delivered,
    )
    await run(
        "mutation($o: ID!) { markDelivered(orderId: $o) { userErrors { code } } }",
        supplier.token,
        o=delivered,
    )
    held = await paid()
    await run(
        'mutation($o: ID!) { holdOrderAbnormal(orderId: $o, reason: "check") { userErrors { code } } }',
        supplier.token,
        o=held,
    )
    await run(
        'mutation($o: ID!) { resolveOrderAbnormal(orderId: $o, note: "fine") { userErrors { code } } }',
        supplier.token,
        o=held,
    )
    for resolution in (
        'resolveDepute(deputeId: $d, reship: false, note: "no")',
        'refundDepute(deputeId: $d, amount: "1.00", note: "sorry")',
    ):
        depute = await run(
            'mutation($o: ID!) { openDepute(input: {orderId: $o, type: DAMAGED, reason: "torn", expectedOutcome: REFUND}) { depute { id } userErrors { code } } }',
            buyer.token,
            o=held,
        )
        await run(
            f"mutation($d: ID!) {{ {resolution} {{ userErrors {{ code }} }} }}",
            supplier.token,
            d=depute["depute"]["id"],
        )

    # pushes and withdraws the warehouse refuses: retried, converted, closed
    await warehouse.faults(refuse_cancel=True)

    async def failed_withdrawal(order_id: str, mutation: str, **variables: Any) -> str:
        made = await run(mutation, buyer.token, **variables)
        await eventually(
            lambda: order_state(client, buyer.token, order_id),
            lambda s: s["distribution"]["withdrawalStatus"] == "WITHDRAW_FAILED",
        )
        return made["withdrawal"]["id"]

    withdraw = (
        "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id } userErrors { code } } }"
    )
    for then in ("convertWithdrawalToReturn", "closeWithdrawal"):
        order_id = await paid()
        await run(
            "mutation($o: [ID!]!) { pushOrders(orderIds: $o) { userErrors { code } } }",
            supplier.token,
            o=[order_id],
        )
        await eventually(
            lambda o=order_id: order_state(client, supplier.token, o),
            lambda s: s["distribution"]["pushStatus"] == "PUSHED",
        )
        failed = await failed_withdrawal(order_id, withdraw, o=order_id)
        if then == "convertWithdrawalToReturn":
            failed = await failed_withdrawal(
                order_id,
                "mutation($w: ID!) { retryWithdrawal(withdrawalId: $w) { withdrawal { id } userErrors { code } } }",
                w=failed,
            )
            await run(
                'mutation($w: ID!) { convertWithdrawalToReturn(withdrawalId: $w, reason: "back") { userErrors { code } } }',
                buyer.token,
                w=failed,
            )
        else:
            await run(
                'mutation($w: ID!) { closeWithdrawal(withdrawalId: $w, note: "agreed") { userErrors { code } } }',
                buyer.token,
                w=failed,
            )
    await warehouse.faults(refuse_cancel=False)

    # a return of the delivered order, pushed, then withdrawn
    [line] = (
        await query("query($o: ID!) { order(id: $o) { lines { id } } }", buyer.token, o=delivered)
    )["order"]["lines"]
    returned = await run(
        'mutation($o: ID!, $l: ID!) { createAfterSalesOrder(input: {orderId: $o, reason: "size", items: [{lineId: $l, quantity: 1}]}) { afterSalesOrder { id } userErrors { code } } }',
        buyer.token,
        o=delivered,
        l=line["id"],
    )
    return_id = returned["afterSalesOrder"]["id"]
    await run(
        "mutation($r: [ID!]!) { pushReturns(afterSalesIds: $r) { userErrors { code } } }",
        supplier.token,
        r=[return_id],
    )
    await run(
        "mutation($r: ID!) { withdrawAfterSalesOrder(afterSalesId: $r) { userErrors { code } } }",
        buyer.token,
        r=return_id,
    )

    # cloud-warehouse stock
    made = await run(
        """mutation { createCloudWarehouse(input: {name: "Yuncang", address: {name: "Yuncang",
          address1: "1 Dock Rd", city: "Felixstowe", countryCode: "GB"}}) { warehouse { id } userErrors { code } } }""",
        supplier.token,
    )
    stocking = await run(
        """mutation($w: ID!, $k: ID!, $m: ID!) { createCloudWarehouseOrder(input: {warehouseId: $w,
          logisticsMethodId: $m, lines: [{skuId: $k, quantity: 3}]}) { order { id } userErrors { code } } }""",
        buyer.token,
        w=made["warehouse"]["id"],
        k=catalogue["skus"]["TEE-R-M"],
        m=catalogue["method"],
    )
    stocking_id = stocking["order"]["id"]
    await run(
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code } } }",
        buyer.token,
        o=stocking_id,
    )
    await run(
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "COSCO", trackingNumber: "C1") { userErrors { code } } }',
        supplier.token,
        o=stocking_id,
    )
    await run(
        "mutation($o: ID!) { receiveStock(orderId: $o) { userErrors { code } } }",
        supplier.token,
        o=stocking_id,
    )
    [item] = (await query("{ inventory { nodes { id } } }", buyer.token))["inventory"]["nodes"]
    await run(
        "mutation($i: ID!) { setLowStockThreshold(stockItemId: $i, threshold: 1) { userErrors { code } } }",
        buyer.token,
        i=item["id"],
    )

    # and the end of things
    await run(
        "mutation($c: ID!) { revokeThirdPartyWarehouse(id: $c) { userErrors { code } } }",
        supplier.token,
        c=d.third_party_warehouse_id,
    )
    await run(
        "mutation($p: ID!) { discontinueProduct(productId: $p) { userErrors { code } } }",
        supplier.token,
        p=catalogue["product"],
    )
