"""Machinery of the authorisation matrix (``tests/test_authorization_matrix.py``).

* ``root_fields`` lists every Query, Mutation and Subscription field of the live schema;
  ``declared_access`` reads who may use each from its ``Requires`` declaration
  (``resolvers.permissions``), and ``api_checks_off`` switches that check off for a test.
* ``build_operation`` turns one root field into a document and its variables: arguments come
  from an explicit table (``Arguments``), input objects are built from their required fields,
  selections pick ``__typename``, the id-like fields and ``userErrors { code field }``. A
  required argument the table cannot fill raises ``MissingArguments``: a new field must be
  added to the table, it cannot be skipped silently.
* ``Secrets`` is the ground truth of what one caller must not see, read from the database (not
  through the API under test); ``find_leaks`` looks for those objects and strings in a response.
* ``Outcome`` reads a response (HTTP or WebSocket) into a root value and codes.
* ``run_over_socket`` runs a query or mutation over an open graphql-transport-ws socket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import websockets
from graphql import (
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    Undefined,
    get_named_type,
    is_input_object_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter

from domain.access import Viewer
from domain.errors import DomainError
from resolvers.permissions import Requires, declared
from schema.global_ids import split as split_gid
from tests.support.graphql_client import GraphQLWebSocket

Kind = Literal["query", "mutation", "subscription"]
Side = Literal["buyer", "supplier", "both"]

ROLES = ("VIEWER", "STAFF", "ADMIN", "OWNER")

# String fields that identify an object; the selection picks them, with every ID field.
IDENTIFYING_STRINGS = frozenset(
    {"number", "name", "email", "storeOrderNumber", "subjectType", "prefix"}
)

# The fields that wrap a page of a connection (see ``is_connection_wrapper``).
CONNECTION_WRAPPERS = frozenset({"edges", "node", "nodes", "pageInfo"})

# Which object an ID-typed field refers to, by field name (``id`` is the object's own type).
# Codes that refuse without telling whether the object exists.
OPAQUE_REFUSALS = frozenset({"NOT_FOUND", "FORBIDDEN"})
# Codes that say the caller's document or input is wrong (a bug of the table, not of the app).
INPUT_CODES = frozenset(
    {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED", "BAD_USER_INPUT", "QUERY_TOO_COMPLEX"}
)
# Codes the right role must never get for a field it may use.
WRONG_REFUSALS = frozenset(
    {"UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "INVALID", "REQUIRED", "TOO_LONG"}
)


@dataclass(frozen=True)
class Ref:
    """An argument value naming an object of the organisation pair that the field acts on: an
    outsider must be refused. (Plain ids name public things a field only refers to.)"""

    kind: str
    id: str


@dataclass(frozen=True)
class Access:
    """Who may use a root field: its ``Requires`` declaration, as the matrix uses it.

    ``side``: the organisation(s) of the pair that act with it (the right role runs it as each).
    ``minimum``: the least role that may use it; a member one rank below must be refused.
    ``scoped``: that member may call it but must see less (only their own API tokens).
    """

    side: Side
    minimum: str = "VIEWER"
    scoped: bool = False

    @classmethod
    def of(cls, requires: Requires) -> Access:
        side: Side = "both" if requires.kind is None else _SIDES[requires.kind.value]
        return cls(side, requires.role.value, requires.scoped)

    @property
    def lesser_role(self) -> str | None:
        rank = ROLES.index(self.minimum)
        return ROLES[rank - 1] if rank > 0 else None

    @property
    def wrong_side(self) -> Side | None:
        """The organisation kind the declaration refuses, if it refuses one."""
        if self.side == "both":
            return None
        return "supplier" if self.side == "buyer" else "buyer"


_SIDES: dict[str, Side] = {"BUYER": "buyer", "SUPPLIER": "supplier"}


def declared_access(schema: GraphQLSchema) -> dict[str, Access | None]:
    """Every root field's declaration (None: it has none), read from the schema."""
    table: dict[str, Access | None] = {}
    for kind, name in root_fields(schema):
        graphql_field = root_type(schema, kind).fields[name]
        definition = (graphql_field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        requires = declared(definition) if definition is not None else None
        table[qualified(kind, name)] = Access.of(requires) if requires else None
    return table


def _admit(self: Requires, viewer: Viewer) -> DomainError | None:
    return None


def api_checks_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on (until ``monkeypatch`` is undone), every ``Requires`` admits any
    authenticated caller: what is left is the domain's own guards. For tests only: the API has
    no setting that does this."""
    monkeypatch.setattr(Requires, "refusal", _admit)


class Unique:
    """A table value made fresh for every use (names, e-mails, codes that must not repeat)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


Arguments = dict[str, Any]


class MissingArguments(AssertionError):
    """Required arguments (or required input fields) that the table cannot fill."""


@dataclass
class Operation:
    kind: Kind
    field: str
    document: str
    variables: dict[str, Any]
    refs: list[Ref]

    @property
    def name(self) -> str:
        return qualified(self.kind, self.field)


def qualified(kind: Kind, field_name: str) -> str:
    """``Query.order``, ``Mutation.payOrders``: a root field with its type."""
    return f"{kind.capitalize()}.{field_name}"


def root_type(schema: GraphQLSchema, kind: Kind) -> GraphQLObjectType:
    root = {
        "query": schema.query_type,
        "mutation": schema.mutation_type,
        "subscription": schema.subscription_type,
    }[kind]
    assert root is not None, kind
    return root


def root_fields(schema: GraphQLSchema) -> list[tuple[Kind, str]]:
    """Every root field of the schema, queries first, in the schema's order."""
    kinds: tuple[Kind, ...] = ("query", "mutation", "subscription")
    return [(kind, name) for kind in kinds for name in root_type(schema, kind).fields]


def _required(type_: GraphQLInputType, default: Any) -> bool:
    return is_non_null_type(type_) and default is Undefined


class _Filler:
    """Fills one operation's arguments from the table, recording the private refs it used."""

    def __init__(self, table: Arguments) -> None:
        self.table = table
        self.refs: list[Ref] = []
        self.missing: list[str] = []

    def lookup(self, keys: Iterable[str]) -> tuple[bool, Any]:
        for key in keys:
            if key in self.table:
                return True, self.table[key]
        return False, None

    def value(self, raw: Any, type_: GraphQLInputType) -> Any:
        """The JSON value of a table entry for ``type_`` (a single value fills a list)."""
        if isinstance(raw, Unique):
            raw = raw.make()
        inner = type_.of_type if is_non_null_type(type_) else type_
        if is_list_type(inner) and not isinstance(raw, list):
            raw = [raw]
        return self._plain(raw)

    def _plain(self, raw: Any) -> Any:
        if isinstance(raw, Unique):
            return self._plain(raw.make())
        if isinstance(raw, Ref):
            self.refs.append(raw)
            return raw.id
        if isinstance(raw, list):
            return [self._plain(item) for item in raw]
        if isinstance(raw, dict):
            return {key: self._plain(item) for key, item in raw.items()}
        return raw

    def input_object(self, type_: GraphQLInputObjectType, path: str) -> dict[str, Any]:
        """An input object from its required fields (and fields the table names by path)."""
        built: dict[str, Any] = {}
        for name, input_field in type_.fields.items():
            required = _required(input_field.type, input_field.default_value)
            keys = [f"{path}.{name}", f"{type_.name}.{name}"] + ([name] if required else [])
            found, raw = self.lookup(keys)
            if found:
                built[name] = self.value(raw, input_field.type)
                continue
            named = get_named_type(input_field.type)
            if required and is_input_object_type(named):
                assert isinstance(named, GraphQLInputObjectType)
                one = self.input_object(named, f"{path}.{name}")
                inner = input_field.type.of_type
                built[name] = [one] if is_list_type(inner) else one
            elif required:
                self.missing.append(f"{path}.{name} ({type_.name}.{name}: {input_field.type})")
        return built


def is_connection_wrapper(parent: str, field_name: str) -> bool:
    """``edges``, ``node``, ``nodes`` and ``pageInfo`` of a ``…Connection`` or ``…Edge`` type:
    the wrapping of a page, not a level of objects."""
    return parent.endswith(("Connection", "Edge")) and field_name in CONNECTION_WRAPPERS


def selection(type_: GraphQLOutputType, depth: int) -> str:
    """``__typename``, the id-like leaves and (``depth`` levels of) nested objects. A
    connection's wrappers cost no level: its nodes are selected as deep as a list's would be."""
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    assert isinstance(named, GraphQLObjectType | GraphQLInterfaceType), named
    if named.name == "UserError":
        return "{ code field }"
    parts = ["__typename"]
    for name, child in named.fields.items():
        if any(_required(arg.type, arg.default_value) for arg in child.args.values()):
            continue
        child_type = get_named_type(child.type)
        wrapper = is_connection_wrapper(named.name, name)
        if is_leaf_type(child_type):
            if child_type.name == "ID" or name in IDENTIFYING_STRINGS:
                parts.append(name)
        elif wrapper:
            parts.append(f"{name} {selection(child.type, depth)}")
        elif depth > 0 or name == "userErrors":
            parts.append(f"{name} {selection(child.type, depth - 1)}")
    return "{ " + " ".join(parts) + " }"


def build_operation(
    schema: GraphQLSchema, kind: Kind, field_name: str, table: Arguments, *, depth: int = 3
) -> Operation:
    """The document and variables that run ``field_name`` with the table's arguments.

    Keys tried for an argument: ``field.arg``, then (required arguments only) ``arg``. Keys
    for an input field: ``field.arg.path.name``, ``InputType.name``, then (required only)
    ``name``. Optional arguments and fields are sent only when a key names them.
    """
    root_field: GraphQLField = root_type(schema, kind).fields[field_name]
    filler = _Filler(table)
    definitions: list[str] = []
    arguments: list[str] = []
    variables: dict[str, Any] = {}
    for arg_name, arg in root_field.args.items():
        required = _required(arg.type, arg.default_value)
        keys = [f"{field_name}.{arg_name}"] + ([arg_name] if required else [])
        found, raw = filler.lookup(keys)
        named = get_named_type(arg.type)
        if found:
            value = filler.value(raw, arg.type)
        elif required and is_input_object_type(named):
            assert isinstance(named, GraphQLInputObjectType)
            value = filler.input_object(named, f"{field_name}.{arg_name}")
        elif required:
            filler.missing.append(f"{field_name}.{arg_name} ({arg.type})")
            continue
        else:
            continue
        definitions.append(f"${arg_name}: {arg.type}")
        arguments.append(f"{arg_name}: ${arg_name}")
        variables[arg_name] = value
    if filler.missing:
        raise MissingArguments(
            f"{kind} {field_name}: the argument table cannot fill "
            + ", ".join(filler.missing)
            + " (add them to `arguments` in tests/test_authorization_matrix.py)"
        )
    header = f"{kind} Matrix" + (f"({', '.join(definitions)})" if definitions else "")
    call = field_name + (f"({', '.join(arguments)})" if arguments else "")
    document = f"{header} {{ {call} {selection(root_field.type, depth)} }}"
    return Operation(kind, field_name, document, variables, filler.refs)


# -- outcomes --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a response says about one root field."""

    body: dict[str, Any]
    field: str

    @property
    def value(self) -> Any:
        data = self.body.get("data")
        return data.get(self.field) if isinstance(data, dict) else None

    @property
    def error_codes(self) -> list[str]:
        return [
            str((error.get("extensions") or {}).get("code") or "NO_CODE")
            for error in self.body.get("errors") or []
        ]

    @property
    def user_error_codes(self) -> list[str]:
        value = self.value
        if isinstance(value, dict) and isinstance(value.get("userErrors"), list):
            return [str(error.get("code")) for error in value["userErrors"]]
        return []

    @property
    def codes(self) -> list[str]:
        return self.error_codes + self.user_error_codes

    @property
    def succeeded(self) -> bool:
        return not self.codes and self.value is not None

    def brief(self) -> str:
        return json.dumps(self.body, sort_keys=True)[:400]


async def run_over_socket(
    ws: GraphQLWebSocket, document: str, variables: dict[str, Any], *, timeout: float = 10
) -> dict[str, Any]:
    """Run a query or mutation over an open socket: its result, an ``error`` frame as errors, or
    (the server closed the socket) an error with the close code."""
    try:
        op_id = await ws.subscribe(document, variables)
        result: dict[str, Any] = {"data": None}
        while True:
            message = await ws.receive(timeout)
            if message["type"] == "ping":
                await ws.send({"type": "pong"})
                continue
            if message.get("id") != op_id:
                continue
            if message["type"] == "next":
                result = message["payload"]
            elif message["type"] == "error":
                return {"data": None, "errors": message["payload"]}
            elif message["type"] == "complete":
                return result
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        return {
            "data": None,
            "errors": [
                {
                    "message": f"socket closed ({code})",
                    "extensions": {"code": "UNAUTHENTICATED" if code in (4401, 4403) else "CLOSED"},
                }
            ],
        }


# -- leaks -----------------------------------------------------------------------------------------


@dataclass
class Secrets:
    """What one caller must not see: objects by GraphQL type name, and identifying strings."""

    objects: dict[str, set[str]] = field(default_factory=dict)
    strings: set[str] = field(default_factory=set)

    def add(self, kind: str, ids: Iterable[Any]) -> None:
        self.objects.setdefault(kind, set()).update(str(i) for i in ids)

    def __contains__(self, ref: Ref) -> bool:
        return ref.id in self.objects.get(ref.kind, set())

    def without(self, refs: Iterable[Ref]) -> Secrets:
        """These secrets less the objects a request named itself (an echo is no leak)."""
        named: dict[str, set[str]] = {}
        for ref in refs:
            parts = split_gid(ref.id)
            named.setdefault(ref.kind, set()).add(str(parts[1]) if parts else ref.id)
        objects = {kind: ids - named.get(kind, set()) for kind, ids in self.objects.items()}
        return Secrets(objects, set(self.strings))


def walk(node: Any) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every (key, object, value) of a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, node, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def find_leaks(body: Any, secrets: Secrets) -> list[str]:
    """The secret objects and strings found in ``body`` (a response or a list of them).

    Every id on the API is a global id that names its type, so any one found anywhere (fields,
    arguments echoed back, event payloads) is checked against that type's secrets.
    """
    found: list[str] = []
    for key, _holder, value in walk(body):
        for item in value if isinstance(value, list) else [value]:
            parts = split_gid(item)
            if parts is not None and str(parts[1]) in secrets.objects.get(parts[0], ()):
                found.append(f"{parts[0]} {parts[1]} (as `{key}`)")
    text = json.dumps(body)
    found.extend(f"string {s!r}" for s in sorted(secrets.strings) if s and s in text)
    return sorted(set(found))


# -- ground truth ------------------------------------------------------------------------------------


async def pair_secrets(
    pair: set[int], *, public_organisations: set[int], outsider: int | None
) -> Secrets:
    """Everything of the organisations in ``pair`` that ``outsider`` (an organisation id, or
    None for someone with no organisation) is not a party to, read from the database."""
    from tortoise.expressions import Q

    from domain.after_sales.models import AfterSalesOrder
    from domain.distribution.models import (
        DistributionWarehouse,
        Partnership,
        ThirdPartyWarehouse,
        WarehouseAttempt,
        Withdrawal,
    )
    from domain.events.models import Event, EventAudience
    from domain.orders.models import Depute, Order, OrderLine, Quote
    from domain.organisations.models import ApiToken, Organisation, User
    from domain.payments.models import Wallet, WalletEntry
    from domain.sla.models import SlaBreach
    from domain.stock.models import StockItem, StockMovement
    from domain.stores.models import ProductLink, Store, StoreProduct, StoreVariant

    secrets = Secrets()

    def hidden(*parties: int | None) -> bool:
        return bool(pair.intersection(parties)) and outsider not in parties

    secrets.add(
        "Organisation", [o for o in pair if o not in public_organisations and o != outsider]
    )
    orgs = await Organisation.filter(id__in=pair).values_list("id", "name")
    secrets.strings.update(name for org_id, name in orgs if org_id != outsider)

    orders = await Order.filter(Q(buyer_id__in=pair) | Q(supplier_id__in=pair)).values_list(
        "id", "buyer_id", "supplier_id", "number"
    )
    order_ids = [oid for oid, buyer, supplier, _ in orders if hidden(buyer, supplier)]
    secrets.add("Order", order_ids)
    secrets.strings.update(n for _, b, s, n in orders if hidden(b, s))
    secrets.add(
        "OrderLine", await OrderLine.filter(order_id__in=order_ids).values_list("id", flat=True)
    )
    secrets.add("Depute", await Depute.filter(order_id__in=order_ids).values_list("id", flat=True))
    secrets.add(
        "WarehouseAttempt",
        await WarehouseAttempt.filter(order_id__in=order_ids).values_list("id", flat=True),
    )

    stores = [
        (sid, name)
        for sid, buyer, name in await Store.filter(buyer_id__in=pair).values_list(
            "id", "buyer_id", "name"
        )
        if hidden(buyer)
    ]
    store_ids = [sid for sid, _ in stores]
    secrets.add("Store", store_ids)
    secrets.strings.update(name for _, name in stores)
    secrets.add(
        "StoreProduct",
        await StoreProduct.filter(store_id__in=store_ids).values_list("id", flat=True),
    )
    secrets.add(
        "StoreVariant",
        await StoreVariant.filter(store_id__in=store_ids).values_list("id", flat=True),
    )
    breaches = await SlaBreach.filter(organisation_id__in=pair).values_list("id", "organisation_id")
    secrets.add("SlaBreach", [i for i, org in breaches if hidden(org)])
    for kind, model, left, right in (
        ("ProductLink", ProductLink, "buyer_id", "supplier_id"),
        ("Quote", Quote, "buyer_id", "supplier_id"),
        ("Wallet", Wallet, "buyer_id", "supplier_id"),
        ("Partnership", Partnership, "supplier_id", "distributor_id"),
        ("AfterSalesOrder", AfterSalesOrder, "distributor_id", "supplier_id"),
        ("Withdrawal", Withdrawal, "distributor_id", "supplier_id"),
    ):
        rows = await model.filter(
            Q(**{f"{left}__in": pair}) | Q(**{f"{right}__in": pair})
        ).values_list("id", left, right)
        secrets.add(kind, [i for i, a, b in rows if hidden(a, b)])
    secrets.strings.update(
        number
        for number, a, b in await AfterSalesOrder.filter(
            Q(distributor_id__in=pair) | Q(supplier_id__in=pair)
        ).values_list("number", "distributor_id", "supplier_id")
        if hidden(a, b)
    )
    secrets.add(
        "WalletEntry",
        await WalletEntry.filter(
            wallet_id__in=[int(i) for i in secrets.objects["Wallet"]]
        ).values_list("id", flat=True),
    )
    secrets.add(
        "DistributionWarehouse",
        await DistributionWarehouse.filter(
            partnership_id__in=[int(i) for i in secrets.objects["Partnership"]]
        ).values_list("id", flat=True),
    )
    secrets.add(
        "ThirdPartyWarehouse",
        [
            i
            for i, s in await ThirdPartyWarehouse.filter(supplier_id__in=pair).values_list(
                "id", "supplier_id"
            )
            if hidden(s)
        ],
    )
    items = [
        i
        for i, b in await StockItem.filter(buyer_id__in=pair).values_list("id", "buyer_id")
        if hidden(b)
    ]
    secrets.add("StockItem", items)
    secrets.add(
        "StockMovement",
        await StockMovement.filter(stock_item_id__in=items).values_list("id", flat=True),
    )
    users = [
        (uid, email)
        for uid, org, email in await User.filter(organisation_id__in=pair).values_list(
            "id", "organisation_id", "email"
        )
        if hidden(org)
    ]
    secrets.add("User", [uid for uid, _ in users])
    secrets.strings.update(email for _, email in users)
    secrets.add(
        "ApiToken",
        [
            tid
            for tid, org in await ApiToken.filter(organisation_id__in=pair).values_list(
                "id", "organisation_id"
            )
            if hidden(org)
        ],
    )
    seen_by_pair = set(
        await EventAudience.filter(organisation_id__in=pair).values_list("event_id", flat=True)
    )
    if outsider is not None:
        seen_by_pair -= set(
            await EventAudience.filter(organisation_id=outsider).values_list("event_id", flat=True)
        )
    secrets.add(
        "Event",
        await Event.filter(id__in=list(seen_by_pair), seq__isnull=False).values_list(
            "seq", flat=True
        ),
    )
    return secrets


async def member_secrets(organisation_id: int, user_id: int) -> Secrets:
    """What a member without the ADMIN role must not see of their own organisation: the API
    tokens of its other users."""
    from domain.organisations.models import ApiToken

    secrets = Secrets()
    secrets.add(
        "ApiToken",
        await ApiToken.filter(organisation_id=organisation_id)
        .exclude(user_id=user_id)
        .values_list("id", flat=True),
    )
    return secrets
