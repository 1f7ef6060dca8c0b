"""Property-based fuzzing of the real schema over HTTP, with hypothesis-graphql.

Generated documents are sent to a running server as a real buyer, a supplier's owner, a
supplier's staff member and an anonymous caller, in four kinds:

- ``queries`` and ``mutations``: valid operations (hypothesis-graphql's POSITIVE mode), every
  root field equally often, with scalars biased to edge values (huge and fractional money
  amounts, NaN, extreme dates and integers, ids of real objects and ids that cannot exist);
- ``negative``: operations with one schema violation each (NEGATIVE mode);
- ``variables``: every root field called with all its arguments as variables, whose JSON values
  are generated from the argument types (now and then of the wrong type, or null).

Every answer must hold these properties:

- the HTTP status is below 500 and the body is a JSON object;
- every ``errors[]`` entry carries ``extensions.code``, and none is ``INTERNAL_SERVER_ERROR``
  (an unexpected exception, masked by the server);
- no stack trace, SQL, database driver name or Python exception class name appears in the
  answer unless the request itself contained it (answers echo input, such as a new name).

Hypothesis generates the requests in a worker thread (a synchronous ``httpx.Client``, one per
batch) while the server answers in the test's event loop. A request that breaks a property is
recorded rather than raised, so one batch reports every distinct problem it met (keyed by the
problem and the root fields involved, with the shortest request that showed it) and the
figures cover the whole batch. ``FUZZ_EXAMPLES`` (default 10,000) is the least number of
requests sent in all, split into batches of at most ``FUZZ_BATCH`` (default 1,250); each
hypothesis example draws ten requests, and an example that outgrows hypothesis's buffer is
replaced, so a batch sends a few more than its share. Each batch has a fixed seed
(``FUZZ_SEED`` shifts them all), so CI sends the same requests every time. The figures
(requests sent, HTTP statuses, errors and userErrors by code) are printed after the module.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, mutations, nodes, queries

from schema.build import create_schema
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.support.services import answers, redis_url

pytestmark = pytest.mark.slow

TOTAL_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10000"))
BATCH_SIZE = int(os.environ.get("FUZZ_BATCH", "1250"))
REQUESTS_PER_EXAMPLE = 10
BASE_SEED = int(os.environ.get("FUZZ_SEED", "0"))
SHARES = {"queries": 0.3, "mutations": 0.35, "negative": 0.15, "variables": 0.2}

SCHEMA = create_schema()
SDL = SCHEMA.as_str()
GRAPHQL_SCHEMA: graphql.GraphQLSchema = SCHEMA._schema


def _batches() -> list[tuple[str, int, int]]:
    """(kind, batch number, requests) for every batch of every kind."""
    batches = []
    for kind, share in SHARES.items():
        total = max(1, round(TOTAL_EXAMPLES * share))
        count = math.ceil(total / BATCH_SIZE)
        for number in range(count):
            batches.append((kind, number, total // count + (number < total % count)))
    return batches


BATCHES = _batches()

# --- the properties ------------------------------------------------------------------------

LEAKS_CASED = ("Traceback", 'File "', "SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM")
LEAKS_ANY_CASE = ("sqlite", "asyncpg", "psycopg", "tortoise", "syntax error at or near")
EXCEPTION_NAME = re.compile(
    r"\b(?:[A-Z][A-Za-z0-9]*(?:Error|Exception)|InvalidOperation|DoesNotExist"
    r"|MultipleObjectsReturned|DivisionByZero|KeyboardInterrupt|CancelledError)\b"
)


def problems(response: httpx.Response, request_text: str) -> list[str]:
    """Every property the answer breaks (empty when it holds them all)."""
    found: list[str] = []
    if response.status_code >= 500:
        found.append(f"HTTP {response.status_code}")
    text = response.text
    for leak in LEAKS_CASED:
        if leak in text and leak not in request_text:
            found.append(f"answer contains {leak!r}")
    lowered, request_lowered = text.lower(), request_text.lower()
    for leak in LEAKS_ANY_CASE:
        if leak in lowered and leak not in request_lowered:
            found.append(f"answer contains {leak!r}")
    try:
        body = response.json()
    except ValueError:
        return [*found, "body is not JSON"]
    if not isinstance(body, dict):
        return [*found, "body is not a JSON object"]
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        message = str(error.get("message", ""))
        where = ".".join(str(p) for p in error.get("path") or ()) or "operation"
        if not code:
            found.append(f"error without extensions.code: {message[:120]!r}")
        elif code == "INTERNAL_SERVER_ERROR":
            found.append(f"INTERNAL_SERVER_ERROR at {where}")
        for name in EXCEPTION_NAME.findall(message):
            if name not in request_text:
                found.append(f"exception class name {name!r} in a message at {where}")
    return found


@dataclass
class Finding:
    """One kind of problem, with how often it was seen and the shortest request showing it."""

    count: int
    viewer: str
    document: str
    variables: dict[str, Any]
    answer: str

    def describe(self, problem: str) -> str:
        return (
            f"{problem} (seen {self.count} times); shortest request, as {self.viewer}:\n"
            f"  {self.document}\n  variables: {json.dumps(self.variables)[:500]}\n"
            f"  answer: {self.answer[:500]}"
        )


def add_finding(
    findings: dict[str, Finding],
    problem: str,
    viewer: str,
    document: str,
    variables: dict[str, Any],
    answer: str,
) -> None:
    """Count ``problem`` (keyed with the root fields involved), keeping the shortest request."""
    key = f"{problem} [{', '.join(root_fields(document)) or '?'}]"
    finding = findings.get(key)
    if finding is None or len(document) < len(finding.document):
        count = finding.count if finding else 0
        finding = findings[key] = Finding(count, viewer, document, variables, answer)
    finding.count += 1


def _user_error_codes(data: object) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "userErrors" and isinstance(value, list):
                for error in value:
                    if isinstance(error, dict) and isinstance(error.get("code"), str):
                        yield error["code"]
            else:
                yield from _user_error_codes(value)
    elif isinstance(data, list):
        for item in data:
            yield from _user_error_codes(item)


@dataclass
class Stats:
    """Outcomes of the requests sent by this module's tests."""

    sent: Counter[str] = field(default_factory=Counter)  # per kind
    seconds: Counter[str] = field(default_factory=Counter)  # waiting for answers, per kind
    statuses: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # "data" or "error <code>"
    user_errors: Counter[str] = field(default_factory=Counter)  # userErrors codes in data
    problems: Counter[str] = field(default_factory=Counter)  # of every batch
    renewed_tokens: int = 0  # callers' tokens revoked by generated mutations
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, response: httpx.Response, body: object) -> None:
        with self.lock:
            self.sent[kind] += 1
            self.seconds[kind] += response.elapsed.total_seconds()
            self.statuses[response.status_code] += 1
            errors = (body.get("errors") if isinstance(body, dict) else None) or []
            if not errors:
                self.outcomes["data" if isinstance(body, dict) else "not JSON"] += 1
            for error in errors:
                self.outcomes[f"error {(error.get('extensions') or {}).get('code')}"] += 1
            if isinstance(body, dict):
                self.user_errors.update(_user_error_codes(body.get("data")))

    def summary(self) -> str:
        lines = [f"fuzz: {sum(self.sent.values())} generated requests sent"]
        lines += [
            f"  {kind}: {n} ({self.seconds[kind]:.1f}s waiting for answers)"
            for kind, n in self.sent.items()
        ]
        lines.append("  HTTP: " + ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())))
        lines.append("  answers: " + ", ".join(f"{k}: {n}" for k, n in self.outcomes.most_common()))
        lines.append(
            "  userErrors in data: "
            + ", ".join(f"{k}: {n}" for k, n in self.user_errors.most_common())
        )
        lines.append(f"  callers' tokens revoked by generated mutations: {self.renewed_tokens}")
        lines.append(f"  problems: {len(self.problems)}")
        lines += [f"  - {key}: {n} requests" for key, n in sorted(self.problems.items())]
        return "\n".join(lines)


def root_fields(document: str) -> list[str]:
    """The root fields an operation selects (empty if it does not parse)."""
    try:
        parsed = graphql.parse(document)
    except graphql.GraphQLError:
        return []
    names: list[str] = []
    for definition in parsed.definitions:
        if isinstance(definition, graphql.OperationDefinitionNode):
            for selection in definition.selection_set.selections:
                if isinstance(selection, graphql.FieldNode):
                    names.append(selection.name.value)
    return sorted(set(names))


@pytest.fixture(scope="module")
def stats() -> Iterator[Stats]:
    collected = Stats()
    yield collected
    print("\n" + collected.summary())


# --- values: literals for hypothesis-graphql, JSON for variables -----------------------------

EDGE_AMOUNTS = [
    "0",
    "-1",
    "0.001",
    "1e-400",
    "-0",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "999999999999",
    "1000000000000",
    "1e30",
    "1E+400",
    "9" * 40,
    "5.00",
]
AMOUNT_TEXT = st.one_of(
    st.sampled_from(EDGE_AMOUNTS),
    st.builds("{}E{}".format, st.integers(-999, 999), st.integers(-500, 500)),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(min_value=Decimal(-1000), max_value=Decimal(1000), places=2).map(str),
)
EDGE_INTS = [0, -1, 1, 2**31 - 1, -(2**31), 1_000_000, 1_000_001]
INT32 = st.one_of(st.sampled_from(EDGE_INTS), st.integers(min_value=-(2**31), max_value=2**31 - 1))
ZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=23, minutes=59))]
)
DATETIME_TEXT = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59.999999+00:00",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+14:00",
        ]
    ),
    st.datetimes(timezones=ZONES).map(datetime.isoformat),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _name(key: str) -> str:
    """A GraphQL name made of ``key`` (the keys of object literals must be names)."""
    cleaned = re.sub(r"[^_0-9A-Za-z]", "_", key)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"k{cleaned}"


def json_literal(value: Any) -> graphql.ValueNode:
    """A literal for a JSON value, as the JSON scalar reads it inline."""
    if value is None:
        return nodes.Null
    if isinstance(value, bool):
        return nodes.Boolean(value)
    if isinstance(value, int):
        return nodes.Int(value)
    if isinstance(value, float):
        return nodes.Float(value)
    if isinstance(value, str):
        return nodes.String(value)
    if isinstance(value, list):
        return nodes.List([json_literal(v) for v in value])
    named = {_name(k): v for k, v in value.items()}  # one field per name
    return graphql.ObjectValueNode(
        fields=tuple(
            graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=json_literal(v))
            for k, v in named.items()
        )
    )


def id_text(ids: list[str]) -> st.SearchStrategy[str]:
    """Ids of the seeded objects (of all organisations) and ids that cannot exist."""
    return st.one_of(
        st.sampled_from(ids),
        st.sampled_from(["0", "-1", str(2**31), str(2**63 - 1), str(2**63), "1e3", " 1", "\uff11"]),
        st.integers(min_value=-5, max_value=2**64).map(str),
        st.text(max_size=20),
    )


def literal_scalars(ids: list[str]) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Valid literals for hypothesis-graphql's POSITIVE mode, biased to edge values."""
    return {
        "ID": st.one_of(id_text(ids).map(nodes.String), st.sampled_from([1, 0]).map(nodes.Int)),
        "Int": INT32.map(nodes.Int),
        "Decimal": st.one_of(
            AMOUNT_TEXT.map(nodes.String),
            st.integers(min_value=-(2**31), max_value=2**31 - 1).map(nodes.Int),
            st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        ),
        "DateTime": DATETIME_TEXT.map(nodes.String),
        "JSON": JSON_VALUES.filter(lambda v: v is not None).map(json_literal),
    }


def _unwrap(type_: graphql.GraphQLType) -> graphql.GraphQLNamedType:
    while isinstance(type_, graphql.GraphQLWrappingType):
        type_ = type_.of_type
    return type_


def _selection(type_: graphql.GraphQLOutputType) -> str:
    """``__typename``, the userErrors and the id of every object field of a payload."""
    named = _unwrap(type_)
    if not isinstance(named, graphql.GraphQLObjectType):
        return ""
    parts = ["__typename"]
    for name, child in named.fields.items():
        leaf = _unwrap(child.type)
        if name == "userErrors":
            parts.append("userErrors { code field message }")
        elif isinstance(leaf, graphql.GraphQLObjectType) and "id" in leaf.fields:
            parts.append(f"{name} {{ id }}")
    return "{ " + " ".join(parts) + " }"


def variable_document(
    operation: str, name: str, field_def: graphql.GraphQLField
) -> tuple[str, dict[str, graphql.GraphQLInputType]]:
    """``operation($a: T, ...) { name(a: $a, ...) { ... } }`` and the variables' types."""
    types = {arg: definition.type for arg, definition in field_def.args.items()}
    declared = ", ".join(f"${arg}: {t}" for arg, t in types.items())
    passed = ", ".join(f"{arg}: ${arg}" for arg in types)
    head = f"{operation}({declared})" if declared else operation
    call = f"{name}({passed})" if passed else name
    return f"{head} {{ {call} {_selection(field_def.type)} }}", types


@st.composite
def usually(draw: st.DrawFn, common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> Any:
    """A value of ``common``, or one time in 20 of ``rare`` (the simplest draw is common)."""
    if draw(st.integers(min_value=0, max_value=19)) == 19:
        return draw(rare)
    return draw(common)


def _scalar_json(name: str, ids: list[str]) -> st.SearchStrategy[Any]:
    if name == "Int":
        return usually(INT32, st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**30]))
    if name == "Float":
        return st.floats(allow_nan=False, allow_infinity=False)
    if name == "String":
        return st.text()
    if name == "Boolean":
        return st.booleans()
    if name == "ID":
        return st.one_of(id_text(ids), st.integers(min_value=-5, max_value=2**64))
    if name == "Decimal":
        amounts = st.one_of(
            AMOUNT_TEXT,
            st.integers(min_value=-(2**70), max_value=2**70),
            st.floats(allow_nan=False, allow_infinity=False),
        )
        return usually(amounts, st.text(max_size=12))
    if name == "DateTime":
        return usually(DATETIME_TEXT, st.text(max_size=30))
    return JSON_VALUES


@st.composite
def variable_value(draw: st.DrawFn, type_: graphql.GraphQLInputType, ids: list[str]) -> Any:
    """A JSON value for ``type_``; now and then a value of the wrong type, or null."""
    if draw(st.integers(min_value=0, max_value=49)) == 49:
        return draw(JSON_VALUES)
    if isinstance(type_, graphql.GraphQLNonNull):
        return draw(variable_value(type_.of_type, ids))
    if draw(st.integers(min_value=0, max_value=9)) == 9:
        return None
    if isinstance(type_, graphql.GraphQLList):
        return draw(st.lists(variable_value(type_.of_type, ids), max_size=4))
    if isinstance(type_, graphql.GraphQLEnumType):
        return draw(usually(st.sampled_from(list(type_.values)), st.just("NOT_A_VALUE")))
    if isinstance(type_, graphql.GraphQLInputObjectType):
        value: dict[str, Any] = {}
        for name, definition in type_.fields.items():
            if graphql.is_required_input_field(definition) or draw(st.booleans()):
                value[name] = draw(variable_value(definition.type, ids))
        return value
    assert isinstance(type_, graphql.GraphQLScalarType)
    return draw(_scalar_json(type_.name, ids))


# --- the four kinds of requests --------------------------------------------------------------

Request = tuple[str, dict[str, Any]]


def _documents(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[Request]:
    return strategy.map(lambda document: (document, {}))


def _roots() -> list[graphql.GraphQLObjectType]:
    roots = [GRAPHQL_SCHEMA.query_type, GRAPHQL_SCHEMA.mutation_type]
    return [root for root in roots if root is not None]


def positive(
    make: Callable[..., st.SearchStrategy[str]], root: graphql.GraphQLObjectType, ids: list[str]
) -> st.SearchStrategy[Request]:
    """Every root field equally often, and now and then several in one document
    (hypothesis-graphql's choice over the whole root type, which favours big selections)."""
    scalars = literal_scalars(ids)
    choices = [make(SDL, fields=[name], custom_scalars=scalars) for name in root.fields]
    return _documents(st.one_of([*choices, make(SDL, custom_scalars=scalars)]))


def negative(ids: list[str]) -> st.SearchStrategy[Request]:
    """One schema violation each, in the arguments of a root field that takes some."""
    scalars = literal_scalars(ids)
    return _documents(
        st.one_of(
            [
                from_schema(SDL, fields=[name], custom_scalars=scalars, mode=Mode.NEGATIVE)
                for root in _roots()
                for name, definition in root.fields.items()
                if definition.args
            ]
        )
    )


def with_variables(ids: list[str]) -> st.SearchStrategy[Request]:
    choices: list[st.SearchStrategy[Request]] = []
    for root in _roots():
        operation = "query" if root is GRAPHQL_SCHEMA.query_type else "mutation"
        for name, field_def in root.fields.items():
            document, types = variable_document(operation, name, field_def)
            variables = st.fixed_dictionaries({a: variable_value(t, ids) for a, t in types.items()})
            choices.append(st.tuples(st.just(document), variables))
    return st.one_of(choices)


STRATEGIES: dict[str, Callable[[list[str]], st.SearchStrategy[Request]]] = {
    "queries": lambda ids: positive(queries, _roots()[0], ids),
    "mutations": lambda ids: positive(mutations, _roots()[1], ids),
    "negative": negative,
    "variables": with_variables,
}


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """The app, broadcasting through Redis when REDIS_URL answers (else in memory)."""
    url = redis_url()
    return await make_server(**({"redis_url": url} if url and answers(url, 6379) else {}))


# --- seeded data and the driver --------------------------------------------------------------


@dataclass
class World:
    """A supplier with a catalogue, a buyer with a wallet and an order, and who calls."""

    viewers: dict[str, str | None]  # name -> bearer token (None: anonymous)
    users: dict[str, int]  # name -> user id, for every viewer but the anonymous one
    ids: list[str]


async def new_token(user_id: int) -> str:
    """A fresh token for the user (through the domain, as the CLI issues them)."""
    from domain.organisations import tokens
    from domain.organisations.models import User

    _, secret = await tokens.issue_token(user=await User.get(id=user_id), name="fuzz")
    return secret


def unauthenticated(body: object) -> bool:
    errors = (body.get("errors") if isinstance(body, dict) else None) or []
    return any((e.get("extensions") or {}).get("code") == "UNAUTHENTICATED" for e in errors)


async def _payload(
    client: GraphQLHttp, query: str, token: str, variables: dict[str, Any] | None = None
) -> Any:
    data = await client.data(query, variables, token=token)
    payload = next(iter(data.values()))
    assert payload.get("userErrors", []) == [], payload
    return payload


async def seed_world(client: GraphQLHttp, make_member: MakeMember) -> World:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    staff: Member = await make_member(
        "SUPPLIER", role="STAFF", organisation_id=supplier.organisation_id
    )
    product = await _payload(
        client,
        """mutation { createProduct(input: {title: "Tee", skus: [
          {code: "TEE-R-M", attributes: {color: "Red"}, weightGrams: 200, unitPrice: "5.00",
           tiers: [{minQuantity: 10, unitPrice: "4.00"}]}]})
          { product { id skus { id } } userErrors { code } } }""",
        supplier.token,
    )
    method = await _payload(
        client,
        """mutation { createLogisticsMethod(input: {name: "Air", minDays: 5, maxDays: 9, rules: [
          {countryCode: "*", firstWeightGrams: 500, firstPrice: "8.00", stepGrams: 500,
           stepPrice: "2.00"}]}) { logisticsMethod { id } userErrors { code } } }""",
        supplier.token,
    )
    warehouse = await _payload(
        client,
        """mutation { createCloudWarehouse(input: {name: "WH", address: {name: "WH",
          address1: "1 Dock Rd", city: "Felixstowe", countryCode: "GB"}})
          { warehouse { id } userErrors { code } } }""",
        supplier.token,
    )
    sku = product["product"]["skus"][0]["id"]
    order = await _payload(
        client,
        """mutation($s: ID!) { createManualOrder(input: {lines: [{skuId: $s, quantity: 2}],
          shippingAddress: {name: "A", address1: "1 St", city: "London", countryCode: "GB"}})
          { order { id lines { id } } userErrors { code } } }""",
        buyer.token,
        {"s": sku},
    )
    # after the order: a supplier tops up only buyers it trades with
    wallet = await _payload(
        client,
        """mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "100.00", currency: "USD")
          { wallet { id } userErrors { code } } }""",
        supplier.token,
        {"b": buyer.gid},
    )
    spare_token = await _payload(
        client,
        'mutation { createApiToken(input: {name: "spare"}) { token { id } userErrors { code } } }',
        buyer.token,
    )
    ids = {
        supplier.gid,
        buyer.gid,
        supplier.user_gid,
        buyer.user_gid,
        staff.user_gid,
        spare_token["token"]["id"],
        product["product"]["id"],
        sku,
        method["logisticsMethod"]["id"],
        warehouse["warehouse"]["id"],
        wallet["wallet"]["id"],
        order["order"]["id"],
        order["order"]["lines"][0]["id"],
    }
    viewers = {
        "buyer": buyer.token,
        "supplier owner": supplier.token,
        "supplier staff": staff.token,
        "anonymous": None,
    }
    users = {
        "buyer": buyer.user_id,
        "supplier owner": supplier.user_id,
        "supplier staff": staff.user_id,
    }
    return World(viewers, users, sorted(ids))


def batch_runner(
    server: RunningServer,
    stats: Stats,
    kind: str,
    number: int,
    count: int,
    world: World,
    findings: dict[str, Finding],
) -> Callable[[], None]:
    """A hypothesis test sending ``count`` generated requests, adding what breaks a property
    to ``findings``; to run in a worker thread while the server runs in ``loop``.

    Generated ``revokeApiToken`` calls hit the callers' own tokens now and then (ids are small
    integers shared by every kind of object); such a caller gets a new token at once, so the
    rest of the batch still reaches the resolvers as that caller.
    """
    strategy = STRATEGIES[kind](world.ids)
    loop = asyncio.get_running_loop()
    callers = itertools.cycle(sorted(world.viewers))  # hypothesis would favour the first

    def send(http: httpx.Client, document: str, variables: dict[str, Any]) -> None:
        viewer = next(callers)
        token = world.viewers[viewer]
        headers = {"authorization": f"Bearer {token}"} if token else {}
        payload = {"query": document, "variables": variables}
        response = http.post("/graphql", json=payload, headers=headers)
        try:
            body: object = response.json()
        except ValueError:
            body = None
        request_text = json.dumps(payload, ensure_ascii=False) + document
        stats.record(kind, response, body)
        for problem in problems(response, request_text):
            add_finding(findings, problem, viewer, document, variables, response.text)
        if token is not None and unauthenticated(body):
            renewed = asyncio.run_coroutine_threadsafe(new_token(world.users[viewer]), loop)
            world.viewers[viewer] = renewed.result(timeout=30)
            stats.renewed_tokens += 1

    # Each example draws several requests: the engine's own work per example then weighs
    # little next to generating and sending them.
    @seed(BASE_SEED * 1000 + number * 10 + list(SHARES).index(kind))
    @settings(
        max_examples=math.ceil(count / REQUESTS_PER_EXAMPLE),
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run_batch(http: httpx.Client, data: st.DataObject) -> None:
        for _ in range(REQUESTS_PER_EXAMPLE):
            document, variables = data.draw(strategy)
            send(http, document, variables)

    def run() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            run_batch(http)

    return run


@pytest.mark.parametrize(
    ("kind", "number", "count"), BATCHES, ids=[f"{kind}-{n}" for kind, n, _ in BATCHES]
)
async def test_generated_requests_hold_the_properties(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    stats: Stats,
    kind: str,
    number: int,
    count: int,
) -> None:
    world = await seed_world(client, make_member)
    sent = stats.sent[kind]
    findings: dict[str, Finding] = {}
    await asyncio.to_thread(batch_runner(server, stats, kind, number, count, world, findings))
    stats.problems.update({key: finding.count for key, finding in findings.items()})
    assert stats.sent[kind] - sent >= count
    assert (await client.http.get("/healthz")).status_code == 200
    print(f"\n{kind} batch {number}: {stats.sent[kind] - sent} requests")
    assert not findings, "\n\n".join(f.describe(key) for key, f in sorted(findings.items()))
