"""Global ids and ``Node``: every identity is ``gid://supplygraph/<Type>/<key>``, fetchable again
through ``node(id:)`` by whoever may see it, and refused with ``BAD_USER_INPUT`` when malformed or
of another type. (Every node type resolving for its readers, and nothing for outsiders, is proven
by ``tests/test_authorization_matrix.py`` on a world holding one of each.)"""

from __future__ import annotations

from graphql import GraphQLObjectType, GraphQLSchema, get_named_type

from resolvers.nodes import MAX_NODES, NODE_TYPES
from schema.build import create_schema
from schema.global_ids import gid, key_of, split
from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.test_order_flow import ok, supplier_catalogue

MANUAL_ORDER = """mutation($k: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 1}],
  shippingAddress: {name: "A", address1: "1", city: "L", countryCode: "GB"}})
  { order { id lines { id skuId } } userErrors { code field } } }"""


def _object_types(schema: GraphQLSchema) -> list[GraphQLObjectType]:
    roots = {schema.query_type, schema.mutation_type, schema.subscription_type}
    return [
        t
        for name, t in schema.type_map.items()
        if isinstance(t, GraphQLObjectType) and not name.startswith("__") and t not in roots
    ]


def test_every_type_with_an_identity_is_a_node_and_every_node_resolves() -> None:
    schema = create_schema()._schema
    node = schema.type_map["Node"]
    with_id = {t.name for t in _object_types(schema) if "id" in t.fields}
    nodes = {t.name for t in _object_types(schema) if node in t.interfaces}
    assert with_id - nodes == set(), "types with an id that do not implement Node"
    assert nodes == set(NODE_TYPES), "Node types that node(id:) cannot fetch, or stale entries"
    for name in nodes:
        field = schema.type_map[name].fields["id"]  # type: ignore[union-attr]
        assert str(field.type) == "ID!", name


def test_payloads_and_edges_carry_no_identity_of_their_own() -> None:
    """Payloads, edges and connections wrap nodes; a cache keys the nodes inside them."""
    schema = create_schema()._schema
    for t in _object_types(schema):
        if t.name.endswith(("Payload", "Edge", "Connection")):
            assert "id" not in t.fields, t.name
            if t.name.endswith("Edge"):
                assert get_named_type(t.fields["node"].type).name in NODE_TYPES, t.name


def test_the_id_form_is_shopifys() -> None:
    assert gid("Order", 12) == "gid://supplygraph/Order/12"
    assert split("gid://supplygraph/Order/12") == ("Order", 12)
    assert key_of(gid("Sku", 7)) == 7
    for bad in (
        "12",
        "gid://supplygraph/Order/",
        "gid://supplygraph/Order/0",
        "gid://other/Order/1",
        "gid://supplygraph/Order/1/2",
        "gid://supplygraph/order/1",
        f"gid://supplygraph/Order/{2**63}",
        "gid://supplygraph/Order/01",
        None,
        12,
    ):
        assert split(bad) is None, bad


async def test_ids_round_trip_and_refusals_are_typed(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer, other = (
        await make_member("SUPPLIER"),
        await make_member("BUYER"),
        await make_member("BUYER"),
    )
    cat = await supplier_catalogue(client, supplier)
    assert all(split(v) is not None for v in (cat["product"], cat["method"], *cat["skus"].values()))
    made = (await ok(client, MANUAL_ORDER, {"k": cat["skus"]["TEE-R-M"]}, token=buyer.token))[
        "order"
    ]
    order_id = made["id"]
    assert split(order_id)[0] == "Order"  # type: ignore[index]
    assert made["lines"][0]["skuId"] == cat["skus"]["TEE-R-M"]

    read = "query($i: ID!) { node(id: $i) { __typename id ... on Order { status buyerId } } }"
    found = (await client.data(read, {"i": order_id}, token=buyer.token))["node"]
    assert found == {
        "__typename": "Order",
        "id": order_id,
        "status": "AWAITING_PAYMENT",
        "buyerId": buyer.gid,
    }
    # another buyer, and an id no object has: the same answer
    assert (await client.data(read, {"i": order_id}, token=other.token))["node"] is None
    assert (await client.data(read, {"i": gid("Order", 999999)}, token=buyer.token))["node"] is None
    many = await client.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }",
        {"ids": [cat["skus"]["TEE-B-L"], order_id, gid("Order", 999999), cat["method"]]},
        token=buyer.token,
    )
    assert many["nodes"] == [
        {"__typename": "Sku", "id": cat["skus"]["TEE-B-L"]},
        {"__typename": "Order", "id": order_id},
        None,
        {"__typename": "LogisticsMethod", "id": cat["method"]},
    ]

    # malformed, or the id of another type: BAD_USER_INPUT naming the argument
    for value in ("1", key_of(order_id), "gid://supplygraph/Nope/1", cat["skus"]["TEE-R-M"]):
        body = await client.post(
            "query($i: ID!) { order(id: $i) { id } }", {"i": str(value)}, token=buyer.token
        )
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (value, error)
        assert error["extensions"]["field"] == "id"
    body = await client.post(read, {"i": "Order:1"}, token=buyer.token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    cancel = "mutation($o: [ID!]!) { cancelOrders(orderIds: $o) { userErrors { code field } } }"
    refused = await client.data(cancel, {"o": [cat["product"]]}, token=buyer.token)
    assert refused["cancelOrders"]["userErrors"] == [
        {"code": "BAD_USER_INPUT", "field": "orderIds.0"}
    ]
    too_many = await client.post(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        {"ids": [order_id] * (MAX_NODES + 1)},
        token=buyer.token,
    )
    assert too_many["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_event_subjects_and_payload_ids_are_global_ids(
    client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    made = (await ok(client, MANUAL_ORDER, {"k": cat["skus"]["TEE-R-M"]}, token=buyer.token))[
        "order"
    ]
    await ok(
        client,
        "mutation($o: [ID!]!) { cancelOrders(orderIds: $o) { userErrors { code field } } }",
        {"o": [made["id"]]},
        token=buyer.token,
    )
    events = (
        await client.data(
            "{ events(first: 50, types: [ORDER_STATUS_CHANGED]) "
            "{ edges { node { id subjectType subjectId payload } } } }",
            token=buyer.token,
        )
    )["events"]["edges"]
    [event] = [e["node"] for e in events if e["node"]["payload"]["to"] == "CANCELLED"]
    assert event["subjectType"] == "Order" and event["subjectId"] == made["id"]
    assert event["payload"]["orderId"] == made["id"]
    assert event["id"].startswith("gid://supplygraph/Event/")  # its key: schema.event_ids
    again = await client.data(
        "query($i: ID!) { node(id: $i) { ... on Event { subjectId } } }",
        {"i": event["id"]},
        token=buyer.token,
    )
    assert again["node"] == {"subjectId": made["id"]}
