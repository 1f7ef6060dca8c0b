"""Machinery of the id-oracle walk (``tests/test_id_oracles.py``).

* ``id_paths`` finds every place of the live schema where a client sends an id: an ``ID``
  argument of a Query, Mutation or Subscription field, or an ``ID`` field of an input object
  (nested, and in lists), as a path from the argument down.
* ``Calls`` builds one root field's document and variables with a given value at one id path;
  every other required argument (and required input field) gets a valid value: from the
  authorisation matrix's argument table (``tests/test_authorization_matrix.py: arguments``),
  which names the caller's own objects, and otherwise from a generator per GraphQL type
  (``GENERATORS``, enums: their first value). Optional arguments off the path are not sent.
* ``learned_types`` reads which object types an id path takes from the API itself: an id of a
  type no field takes is refused with ``BAD_USER_INPUT`` saying what is expected.
* ``hidden_keys`` is the ground truth of which objects a caller may not see: what the owners of
  the other world see (``domain.visibility``, the one rule of the API) less what the caller sees.
* ``Answer`` is a response as the client gets it (HTTP status and body, or a socket's first
  frame), with the id under test written as ``<ID>`` so two answers compare byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import websockets
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    Undefined,
    get_named_type,
    is_enum_type,
    is_input_object_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
)
from tortoise.expressions import Q

from domain import visibility
from domain.access import Viewer
from resolvers.nodes import NODE_TYPES
from schema.event_ids import event_gid
from schema.global_ids import gid
from tests.support.authz import (
    IDENTIFYING_STRINGS,
    Kind,
    MissingArguments,
    Ref,
    Unique,
    is_connection_wrapper,
    qualified,
    root_fields,
    root_type,
)
from tests.support.graphql_client import GraphQLWebSocket

PROBE_TYPE = "Nothing"
"""A type name no argument takes: its id is refused with a message naming what is expected."""
PROBE = gid(PROBE_TYPE, 1)
PLACEHOLDER = "<ID>"

_EXPECTED = re.compile(
    rf"This is the id of a {PROBE_TYPE}; expected the id of an? ([A-Za-z]+(?: or [A-Za-z]+)*)\."
)
# ... or, for an argument that takes ids of one form of its own (events': ``schema.event_ids``),
# the form it expects
_EXPECTED_FORM = re.compile(r"expected one like gid://supplygraph/([A-Z][A-Za-z]*)/")
_ANY_NODE = "Not the global id of an object"


def _in_a_month() -> str:
    return (datetime.now(UTC) + timedelta(days=30)).isoformat()


GENERATORS: dict[str, Callable[[], Any]] = {
    "String": lambda: "id oracle",
    "Int": lambda: 1,
    "Float": lambda: 1.0,
    "Boolean": lambda: True,
    "Decimal": lambda: "1.00",
    "DateTime": _in_a_month,
    "JSON": lambda: {},
}
"""A valid value of each scalar, for required arguments the argument table does not name."""


# -- where ids go --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdPath:
    """One place an id is sent: the root field, then its argument and input fields down to an
    ``ID`` (``createManualOrder`` ``input.lines.skuId``: a list of lines, each with a SKU)."""

    kind: Kind
    field: str
    segments: tuple[str, ...]

    @property
    def root(self) -> str:
        return qualified(self.kind, self.field)

    @property
    def name(self) -> str:
        return f"{self.root}({'.'.join(self.segments)})"


def _unwrapped(type_: GraphQLInputType) -> tuple[GraphQLInputType, bool]:
    """The type without its non-null wrapper, and whether it is a list."""
    inner = type_.of_type if is_non_null_type(type_) else type_
    return inner, is_list_type(inner)


def _ids_below(
    type_: GraphQLInputType, prefix: tuple[str, ...], seen: tuple[str, ...]
) -> Iterable[tuple[str, ...]]:
    named = get_named_type(type_)
    if named.name == "ID":
        yield prefix
    elif is_input_object_type(named) and named.name not in seen:
        assert isinstance(named, GraphQLInputObjectType)
        for name, input_field in named.fields.items():
            yield from _ids_below(input_field.type, (*prefix, name), (*seen, named.name))


def id_paths(schema: GraphQLSchema) -> list[IdPath]:
    """Every id path of every root field, in the schema's order."""
    paths = []
    for kind, field_name in root_fields(schema):
        for arg_name, arg in root_type(schema, kind).fields[field_name].args.items():
            for segments in _ids_below(arg.type, (arg_name,), ()):
                paths.append(IdPath(kind, field_name, segments))
    return paths


# -- documents -----------------------------------------------------------------------------------


def _required(type_: GraphQLInputType, default: Any) -> bool:
    return is_non_null_type(type_) and default is Undefined


def selection(type_: GraphQLOutputType, depth: int) -> str:
    """``__typename``, the id-like leaves and ``depth`` levels of nested objects; every field
    of a user error. (The matrix's selection, with the errors' messages: they are compared.)"""
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    if isinstance(named, GraphQLUnionType):
        return "{ __typename }"
    assert isinstance(named, GraphQLObjectType | GraphQLInterfaceType), named
    if named.name == "UserError":
        return "{ code field message }"
    parts = ["__typename"]
    for name, child in named.fields.items():
        if any(_required(arg.type, arg.default_value) for arg in child.args.values()):
            continue
        child_type = get_named_type(child.type)
        if is_leaf_type(child_type):
            if child_type.name == "ID" or name in IDENTIFYING_STRINGS or name == "status":
                parts.append(name)
        elif is_connection_wrapper(named.name, name):
            parts.append(f"{name} {selection(child.type, depth)}")
        elif depth > 0 or name == "userErrors":
            parts.append(f"{name} {selection(child.type, depth - 1)}")
    return "{ " + " ".join(parts) + " }"


@dataclass
class Call:
    path: IdPath
    document: str
    variables: dict[str, Any]

    def with_id(self, id_value: str) -> Call:
        """The same call with ``id_value`` where it was built with ``PLACEHOLDER`` (every
        other value unchanged, fresh names included)."""

        def put(node: Any) -> Any:
            if node == PLACEHOLDER:
                return id_value
            if isinstance(node, list):
                return [put(item) for item in node]
            if isinstance(node, dict):
                return {key: put(item) for key, item in node.items()}
            return node

        return Call(self.path, self.document, put(self.variables))


class Calls:
    """Documents and variables for root fields, a chosen value at one id path and valid values
    everywhere else (see the module's docstring)."""

    def __init__(self, schema: GraphQLSchema, table: dict[str, Any]) -> None:
        self.schema = schema
        self.table = table

    def _lookup(self, keys: Iterable[str]) -> tuple[bool, Any]:
        for key in keys:
            if key in self.table:
                return True, self.table[key]
        return False, None

    def _plain(self, raw: Any) -> Any:
        if isinstance(raw, Unique):
            return self._plain(raw.make())
        if isinstance(raw, Ref):
            return raw.id
        if isinstance(raw, list):
            return [self._plain(item) for item in raw]
        if isinstance(raw, dict):
            return {key: self._plain(item) for key, item in raw.items()}
        return raw

    def _from_table(self, raw: Any, type_: GraphQLInputType) -> Any:
        value = self._plain(raw)
        _, is_list = _unwrapped(type_)
        return [value] if is_list and not isinstance(value, list) else value

    def _generate(self, type_: GraphQLInputType, path: str) -> Any:
        _, is_list = _unwrapped(type_)
        named = get_named_type(type_)
        if is_input_object_type(named):
            assert isinstance(named, GraphQLInputObjectType)
            value: Any = self._input_object(named, path, None)
        elif is_enum_type(named):
            assert isinstance(named, GraphQLEnumType)
            value = next(iter(named.values))
        elif named.name in GENERATORS:
            value = GENERATORS[named.name]()
        else:  # an id: which object it must name is the table's to say
            raise MissingArguments(
                f"{path} ({type_}): no value (name one in `arguments`, "
                "tests/test_authorization_matrix.py)"
            )
        return [value] if is_list else value

    def _along(self, type_: GraphQLInputType, path: str, rest: tuple[str, ...], value: Any) -> Any:
        _, is_list = _unwrapped(type_)
        if rest:
            named = get_named_type(type_)
            assert isinstance(named, GraphQLInputObjectType), path
            value = self._input_object(named, path, (rest, value))
        return [value] if is_list else value

    def _input_object(
        self,
        type_: GraphQLInputObjectType,
        path: str,
        target: tuple[tuple[str, ...], Any] | None,
    ) -> dict[str, Any]:
        built: dict[str, Any] = {}
        for name, input_field in type_.fields.items():
            here = f"{path}.{name}"
            if target is not None and target[0][0] == name:
                built[name] = self._along(input_field.type, here, target[0][1:], target[1])
                continue
            required = _required(input_field.type, input_field.default_value)
            found, raw = self._lookup([here, f"{type_.name}.{name}"] + ([name] if required else []))
            if found:
                built[name] = self._from_table(raw, input_field.type)
            elif required:
                built[name] = self._generate(input_field.type, here)
        return built

    def call(self, path: IdPath, value: Any, *, depth: int = 2) -> Call:
        """``path``'s root field with ``value`` at ``path`` (a list there holds it alone)."""
        root_field = root_type(self.schema, path.kind).fields[path.field]
        definitions: list[str] = []
        arguments: list[str] = []
        variables: dict[str, Any] = {}
        for arg_name, arg in root_field.args.items():
            key = f"{path.field}.{arg_name}"
            required = _required(arg.type, arg.default_value)
            if path.segments[0] == arg_name:
                variables[arg_name] = self._along(arg.type, key, path.segments[1:], value)
            else:
                found, raw = self._lookup([key, arg_name] if required else [])
                if found:
                    variables[arg_name] = self._from_table(raw, arg.type)
                elif required:
                    variables[arg_name] = self._generate(arg.type, key)
                else:
                    continue
            definitions.append(f"${arg_name}: {arg.type}")
            arguments.append(f"{arg_name}: ${arg_name}")
        header = f"{path.kind} IdOracle({', '.join(definitions)})"
        document = (
            f"{header} {{ {path.field}({', '.join(arguments)}) "
            f"{selection(root_field.type, depth)} }}"
        )
        return Call(path, document, variables)


# -- answers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the client got: HTTP status and body, or a socket's first frame (``status`` 0)."""

    status: int
    body: str

    def without(self, id_value: str) -> Answer:
        return Answer(self.status, self.body.replace(id_value, PLACEHOLDER))

    def brief(self, limit: int = 600) -> str:
        return f"{self.status} {self.body[:limit]}"


async def post(http: httpx.AsyncClient, token: str, call: Call) -> Answer:
    response = await http.post(
        "/graphql",
        json={"query": call.document, "variables": call.variables},
        headers={"authorization": f"Bearer {token}"},
    )
    return Answer(response.status_code, response.text)


SILENT = "(no message)"


async def first_frames(ws_url: str, token: str, calls: list[Call], *, quiet: float) -> list[Answer]:
    """The first frame each subscription gets (its operation id left out), all subscribed at
    once on one socket; ``SILENT`` for those that got none once the socket has been quiet for
    ``quiet`` seconds (a slow server still delivering refusals keeps the wait going)."""
    ws = await GraphQLWebSocket.connect(ws_url, token=token)
    try:
        await ws.acknowledged()
        ids = [await ws.subscribe(c.document, c.variables) for c in calls]
        first: dict[str, str] = {}
        while len(first) < len(ids):
            try:
                raw = await asyncio.wait_for(ws.ws.recv(), quiet)
            except TimeoutError:
                break
            message = json.loads(raw)
            if message.get("type") == "ping":
                await ws.send({"type": "pong"})
                continue
            op_id = message.pop("id", None)
            if op_id in ids and op_id not in first:
                first[op_id] = json.dumps(message)
        for op_id in ids:
            await ws.send({"id": op_id, "type": "complete"})
        return [Answer(0, first.get(op_id, SILENT)) for op_id in ids]
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        return [Answer(0, f"socket closed ({code})") for _ in calls]
    finally:
        await ws.close()


# -- which type an id path takes -----------------------------------------------------------------


def learned_types(answer: Answer) -> tuple[str, ...] | None:
    """The types an id path takes, read from the refusal of ``PROBE`` there (every node type
    for ``node``/``nodes``); None if the answer says neither."""
    found = _EXPECTED.search(answer.body)
    if found:
        return tuple(found.group(1).split(" or "))
    form = _EXPECTED_FORM.search(answer.body)
    if form and form.group(1) in NODE_TYPES:
        return (form.group(1),)
    if _ANY_NODE in answer.body:
        return tuple(NODE_TYPES)
    return None


# -- the ground truth ----------------------------------------------------------------------------


def _key_column(type_name: str) -> str:
    model, _ = NODE_TYPES[type_name]
    return visibility.KEY_COLUMNS.get(model, "id")


async def _visible_keys(type_name: str, viewer: Viewer) -> set[int]:
    model, _ = NODE_TYPES[type_name]
    column = _key_column(type_name)
    return set(await visibility.SCOPES[model](viewer).values_list(column, flat=True))


# Columns that name the organisation an object belongs to (any of them, on any model).
OWNER_COLUMNS = ("organisation_id", "supplier_id", "buyer_id", "distributor_id")


async def _owned_keys(type_name: str, organisation_ids: set[int]) -> set[int]:
    """Objects of these organisations that nobody may see, the owners included (a cloud
    warehouse switched off), found by their owner columns."""
    model, _ = NODE_TYPES[type_name]
    columns = [c for c in OWNER_COLUMNS if c in model._meta.fields_map]
    if not columns:
        return set()
    either = Q(**{f"{columns[0]}__in": organisation_ids})
    for column in columns[1:]:
        either |= Q(**{f"{column}__in": organisation_ids})
    return set(await model.filter(either).values_list(_key_column(type_name), flat=True))


async def hidden_keys(type_name: str, owners: list[Viewer], caller: Viewer) -> dict[int, int]:
    """The objects of ``type_name`` that belong to or are seen by ``owners`` and that ``caller``
    does not see (read through ``domain.visibility``, the rule every query and ``node``
    applies): their keys, in order, each with the organisation of an owner that sees it."""
    seen_by_caller = await _visible_keys(type_name, caller)
    found: dict[int, int] = {}
    for owner in owners:
        theirs = await _visible_keys(type_name, owner)
        theirs |= await _owned_keys(type_name, {owner.organisation_id})
        for key in theirs - seen_by_caller:
            found.setdefault(key, owner.organisation_id)
    return dict(sorted(found.items()))


def id_of(type_name: str, key: int, shown_to: int) -> str:
    """The id a client is given for object ``key``: its global id; for an event, the id
    organisation ``shown_to`` is shown (each organisation has its own, ``schema.event_ids``)."""
    return event_gid(key, shown_to) if type_name == "Event" else gid(type_name, key)


async def unknown_key(type_name: str) -> int:
    """A key no object of ``type_name`` has (well beyond the largest)."""
    model, _ = NODE_TYPES[type_name]
    column = _key_column(type_name)
    largest = await model.all().order_by(f"-{column}").values_list(column, flat=True)
    return int(largest[0] if largest else 0) + 1000


def spread(keys: list[int], most: int) -> list[int]:
    """At most ``most`` of ``keys``, first and last included, evenly apart."""
    if len(keys) <= most:
        return keys
    step = (len(keys) - 1) / (most - 1)
    return sorted({keys[round(i * step)] for i in range(most)})
