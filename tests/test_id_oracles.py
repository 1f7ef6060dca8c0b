"""No id oracles: another organisation's id answers exactly as an id that names nothing.

Every place of the live schema where a client sends an id (``tests.support.id_oracles.id_paths``:
each ``ID`` argument of every Query, Mutation and Subscription field, and each ``ID`` field of
their input objects, nested and in lists) is called twice, or more, by a caller of another
tenant: with the ids of real objects of the right type that belong to other organisations, and
with an id of the same type that names nothing. The answers (HTTP status and body; for a
subscription its first frame) must be identical byte for byte once the id itself is written
as ``<ID>``: same data, same errors, codes, fields, messages and paths. Anything else tells a
caller that the object exists.

Two worlds of the authorisation matrix (``tests/test_authorization_matrix.py: build_world``: a
buyer and a supplier with orders in every state, quotes, stores, partnerships, warehouses,
withdrawals, returns, stock, breaches, and further buyers and suppliers): "theirs" owns the
foreign objects, "ours" holds the callers, whose other arguments name their own objects (the
matrix's argument table), or a generated value of the right type. A field is called by the
callers its ``Requires`` admits (our buyer, our supplier, or both). Which type an id path takes
is asked of the API (``learned_types``); which objects are foreign to a caller is
``domain.visibility``'s rule: what the owners of the other world see and the caller does not.

A new field is walked without a change here. The test fails for a difference, for an id path
it could not try (its type not learned, no foreign object of its type) unless it is in
``EXEMPT`` with a reason, and for an entry of ``EXEMPT`` that names no id path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from domain import visibility
from domain.access import Viewer
from domain.catalogue.models import LogisticsMethod
from domain.events.models import Event
from domain.organisations.models import OrganisationKind, Role
from domain.stock.models import CloudWarehouse
from integrations.stores.simulator import create_store_simulator
from schema.build import create_schema
from schema.global_ids import key_of
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.authz import Access, Side, declared_access
from tests.support.distribution import (
    FAST_WAREHOUSE,
    WarehouseSim,
    eventually,
    warehouse_simulator,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.id_oracles import (
    PLACEHOLDER,
    PROBE,
    SILENT,
    Answer,
    Call,
    Calls,
    IdPath,
    first_frames,
    hidden_keys,
    id_of,
    id_paths,
    learned_types,
    post,
    spread,
    unknown_key,
)
from tests.support.server import IDLE_SAFE, RunningServer, serve
from tests.support.services import answers, redis_url
from tests.test_authorization_matrix import (
    STORE_SECRET,
    STORE_TOKEN,
    World,
    arguments,
    build_world,
    placeholder_world,
)
from tests.test_order_flow import ok
from tests.test_store_integration import Sim

EXEMPT: dict[str, str] = {}
"""Id paths the walk does not try (``IdPath.name``, such as ``Mutation.revokeApiToken(input.id)``),
each with the reason. None so far: every id a client sends can name another organisation's
object, so every one is compared."""

MOST_FOREIGN = 24
"""Foreign objects tried per id path and type (evenly spread over those there are): every
order of the other world, so each state is met."""
MOST_FOREIGN_PER_NODE_TYPE = 3
"""The same for a path that takes any type (``node``, ``nodes``): a few of each of them."""
SUBSCRIPTION_WAIT = 1.5
"""Seconds of quiet on a socket after which its subscriptions without a frame are taken as
silent (a refusal comes at once)."""
CONFIRM_WAIT = 5.0
"""The same, for a pair whose one id got a frame and the other none: tried again on its own,
with this much patience, before it counts as a difference (a loaded machine is slow)."""
PER_SOCKET = 40  # below MAX_SUBSCRIPTIONS_PER_CONNECTION


@dataclass(frozen=True)
class Caller:
    side: Side
    member: Member
    viewer: Viewer


def viewer_of(member: Member, kind: OrganisationKind) -> Viewer:
    return Viewer(
        user_id=member.user_id,
        organisation_id=member.organisation_id,
        organisation_kind=kind,
        role=Role.OWNER,
        token_id=member.token_id,
    )


@dataclass
class Walk:
    """What was tried and what was found."""

    tried: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    differences: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rechecked: int = 0  # subscription pairs tried again alone (one frame against silence)

    def compare(self, where: str, unknown: Answer, foreign_id: str, foreign: Answer) -> None:
        if foreign != unknown:
            self.differences.append(
                f"{where}, {foreign_id}:\n      foreign: {foreign.brief()}\n"
                f"      unknown: {unknown.brief()}"
            )

    def report(self, paths: list[IdPath]) -> str:
        lines = [
            "id oracles",
            f"  id paths: {len(paths)} ({len({p.root for p in paths})} fields), "
            f"{sum(self.tried.values())} foreign ids compared with unknown ones",
        ]
        for (path_name, side), count in sorted(self.tried.items()):
            lines.append(f"    {path_name} as our {side}: {count}")
        lines.append(f"  subscription pairs tried again alone: {self.rechecked}")
        lines.append(f"  differences: {len(self.differences)}")
        lines += [f"    {d}" for d in self.differences]
        lines.append(f"  problems: {len(self.problems)}")
        lines += [f"    {p}" for p in self.problems]
        return "\n".join(lines)


def _about_the_path(path: IdPath, answer: Answer) -> str | None:
    """The argument an answer's errors name, when it is not ``path``'s id: the other values
    the walk sent were not valid, and the id may never have been looked at."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return None
    named: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            value = node.get("field")
            if isinstance(value, str):
                named.append(value)
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(body)
    for name in named:
        last = [part for part in name.split(".") if not part.isdigit()][-1]
        if last != path.segments[-1]:
            return name
    return None


def sides_of(path: IdPath, access: dict[str, Access | None]) -> list[Side]:
    """The callers of ours a field's ``Requires`` admits."""
    declared = access[path.root]
    assert declared is not None, f"{path.root} declares no `Requires`"
    return ["buyer", "supplier"] if declared.side == "both" else [declared.side]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """The app with a fast warehouse worker (the worlds wait for refused withdraws); with Redis
    when REDIS_URL answers."""
    overrides: dict[str, Any] = dict(FAST_WAREHOUSE)
    url = redis_url()
    if url and answers(url, 6379):
        overrides["redis_url"] = url
    return await make_server(**overrides)


@pytest.fixture
async def simulators() -> AsyncIterator[list[tuple[Sim, WarehouseSim]]]:
    """A store simulator and a warehouse simulator for each world."""
    async with contextlib.AsyncExitStack() as stack:
        pairs = []
        for _ in range(2):
            app = create_store_simulator(access_token=STORE_TOKEN, webhook_secret=STORE_SECRET)
            url = await stack.enter_async_context(serve(app))
            control = await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=10, limits=IDLE_SAFE)
            )
            warehouses = warehouse_simulator()
            wh = await warehouses.__anext__()
            stack.push_async_callback(_finish, warehouses)
            pairs.append((Sim(url=url, control=control), wh))
        yield pairs


async def _finish(generator: AsyncIterator[WarehouseSim]) -> None:
    with contextlib.suppress(StopAsyncIteration):
        await generator.__anext__()


# -- the walk --------------------------------------------------------------------------------------


async def hide_some_catalogue(client: GraphQLHttp, theirs: World) -> None:
    """Catalogue objects of their supplier that no buyer sees (a buyer sees every active
    product, method and cloud warehouse): a discontinued product (and so its SKU), a method and
    a cloud warehouse switched off (no mutation does that yet: written here directly)."""
    await ok(
        client,
        "mutation($p: ID!) { discontinueProduct(productId: $p) { userErrors { code } } }",
        {"p": theirs.spare_product},
        token=theirs.s.token,
    )
    method = await ok(
        client,
        """mutation { createLogisticsMethod(input: {name: "Retired", minDays: 1, maxDays: 2,
        rules: [{countryCode: "GB", firstWeightGrams: 500, firstPrice: "1.00", stepGrams: 500,
        stepPrice: "1.00"}]}) { logisticsMethod { id } userErrors { code } } }""",
        token=theirs.s.token,
    )
    await LogisticsMethod.filter(id=key_of(method["logisticsMethod"]["id"])).update(is_active=False)
    cloud = await ok(
        client,
        """mutation { createCloudWarehouse(input: {name: "Closed Dock", address: {name: "Closed",
        address1: "2 Dock Rd", city: "Hull", zip: "HU1", countryCode: "GB"}})
        { warehouse { id } userErrors { code } } }""",
        token=theirs.s.token,
    )
    await CloudWarehouse.filter(id=key_of(cloud["warehouse"]["id"])).update(is_active=False)


async def all_numbered() -> None:
    """Once every committed event has its number (``visible_latest`` reads numbers)."""

    async def unnumbered() -> bool:
        return await Event.filter(seq__isnull=True).exists()

    await eventually(unnumbered, lambda waiting: not waiting, timeout=10)


@dataclass(frozen=True)
class Comparison:
    """One foreign id, and the unknown id of its type, at one id path, for one caller."""

    path: IdPath
    side: Side
    unknown_id: str
    foreign_id: str

    @property
    def where(self) -> str:
        return f"{self.path.name} as our {self.side}"


class Foreign:
    """The objects of the other world each caller may not see, by type (``hidden_keys``): their
    ids, each with an unknown id of the same type written the same way (for an event, as shown
    to the same organisation) that names nothing."""

    def __init__(self, owners: list[Viewer], callers: dict[Side, Caller]) -> None:
        self.owners = owners
        self.callers = callers
        self.keys: dict[tuple[str, Side], dict[int, int]] = {}
        self.unknown: dict[str, int] = {}

    async def ids(self, type_name: str, side: Side, most: int) -> list[tuple[str, str]]:
        """(foreign id, unknown id) pairs, at most ``most``."""
        if (type_name, side) not in self.keys:
            caller = self.callers[side].viewer
            self.keys[(type_name, side)] = await hidden_keys(type_name, self.owners, caller)
        if type_name not in self.unknown:
            self.unknown[type_name] = await unknown_key(type_name)
        shown = self.keys[(type_name, side)]
        return [
            (
                id_of(type_name, key, shown[key]),
                id_of(type_name, self.unknown[type_name], shown[key]),
            )
            for key in spread(list(shown), most)
        ]


@pytest.mark.slow
async def test_foreign_ids_answer_exactly_like_unknown_ids(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    simulators: list[tuple[Sim, WarehouseSim]],
) -> None:
    started = time.monotonic()
    theirs = await build_world(server, client, make_member, *simulators[0])
    ours = await build_world(server, client, make_member, *simulators[1])
    await hide_some_catalogue(client, theirs)
    built = time.monotonic()

    schema = create_schema()._schema
    access = declared_access(schema)
    calls = Calls(schema, arguments(ours))
    callers: dict[Side, Caller] = {
        "buyer": Caller("buyer", ours.a, viewer_of(ours.a, OrganisationKind.BUYER)),
        "supplier": Caller("supplier", ours.s, viewer_of(ours.s, OrganisationKind.SUPPLIER)),
    }
    paths = id_paths(schema)
    stale = sorted(set(EXEMPT) - {p.name for p in paths})
    assert stale == [], f"EXEMPT names no id path: {stale}"
    walk = Walk()
    http = httpx.AsyncClient(base_url=server.url, timeout=30)

    # 1. which types each id path takes, as the API says (to an id of a type nothing takes)
    types: dict[IdPath, tuple[str, ...]] = {}
    probes: dict[Side, list[Call]] = defaultdict(list)
    for path in paths:
        if path.name in EXEMPT:
            continue
        side = sides_of(path, access)[0]
        if path.kind == "subscription":
            probes[side].append(calls.call(path, PROBE))
            continue
        answer = await post(http, callers[side].member.token, calls.call(path, PROBE))
        if (learned := learned_types(answer)) is None:
            walk.problems.append(f"{path.name}: its type not learned from {answer.brief()}")
        else:
            types[path] = learned
    for side, side_calls in probes.items():
        token = callers[side].member.token
        frames = await first_frames(server.ws_url, token, side_calls, quiet=SUBSCRIPTION_WAIT)
        for call, frame in zip(side_calls, frames, strict=True):
            if (learned := learned_types(frame)) is None:
                walk.problems.append(f"{call.path.name}: its type not learned from {frame}")
            else:
                types[call.path] = learned

    # 2. what to compare: for each path and caller, the foreign objects of each type it takes
    await all_numbered()
    foreign = Foreign(
        [
            viewer_of(theirs.a, OrganisationKind.BUYER),
            viewer_of(theirs.s, OrganisationKind.SUPPLIER),
        ],
        callers,
    )
    comparisons: list[Comparison] = []
    for path, taken in types.items():
        most = MOST_FOREIGN if len(taken) == 1 else MOST_FOREIGN_PER_NODE_TYPE
        for side in sides_of(path, access):
            for type_name in taken:
                pairs = await foreign.ids(type_name, side, most)
                if not pairs:
                    walk.problems.append(f"{path.name} as our {side}: no foreign {type_name}")
                comparisons += [Comparison(path, side, u, f) for f, u in pairs]

    # 3. subscriptions, all at once: first frames of each unknown and foreign id side by side
    for side, caller in callers.items():
        mine = [c for c in comparisons if c.path.kind == "subscription" and c.side == side]
        await compare_subscriptions(walk, server, caller, calls, mine)

    # 4. queries and mutations, one at a time: the unknown id's answer before and after the
    #    foreign ones (a foreign id that changed something shows there too)
    runs: dict[tuple[IdPath, Side, str], list[str]] = defaultdict(list)
    for c in comparisons:
        if c.path.kind != "subscription":
            runs[(c.path, c.side, c.unknown_id)].append(c.foreign_id)
    for (path, side, unknown_id), foreign_ids in runs.items():
        token = callers[side].member.token
        where = f"{path.name} as our {side}"
        template = calls.call(path, PLACEHOLDER)
        before = (await post(http, token, template.with_id(unknown_id))).without(unknown_id)
        if (about := _about_the_path(path, before)) is not None:
            walk.problems.append(
                f"{where}: the unknown id's answer is about `{about}` (the walk's other values "
                f"are wrong): {before.brief()}"
            )
        for foreign_id in foreign_ids:
            answer = await post(http, token, template.with_id(foreign_id))
            walk.compare(where, before, foreign_id, answer.without(foreign_id))
            walk.tried[(path.name, side)] += 1
        after = (await post(http, token, template.with_id(unknown_id))).without(unknown_id)
        if after != before:
            walk.problems.append(
                f"{where}: the unknown id answered differently after the foreign ones (one "
                f"changed something?): {after.brief()}"
            )
    await http.aclose()

    for path in paths:
        for side in sides_of(path, access):
            if path.name not in EXEMPT and not walk.tried.get((path.name, side)):
                walk.problems.append(f"{path.name} as our {side}: not tried")
    report = walk.report(paths)
    print()
    print(report)
    print(f"  time: {time.monotonic() - started:.1f}s (worlds {built - started:.1f}s)")
    assert not walk.differences and not walk.problems, report


async def compare_subscriptions(
    walk: Walk, server: RunningServer, caller: Caller, calls: Calls, batch: list[Comparison]
) -> None:
    """Each comparison's unknown and foreign id subscribed side by side (all at once, on as
    many sockets as it takes), first frames compared; a pair where one got a frame and the
    other none is tried again alone, more patiently. A live event of the caller's own
    meanwhile could reach one of a pair and not the other: then all are tried again (up to
    three times)."""
    chunks = [batch[i : i + PER_SOCKET // 2] for i in range(0, len(batch), PER_SOCKET // 2)]

    async def run(chunk: list[Comparison], quiet: float) -> list[tuple[Answer, Answer]]:
        pending = []
        for c in chunk:
            template = calls.call(c.path, PLACEHOLDER)
            pending += [template.with_id(c.unknown_id), template.with_id(c.foreign_id)]
        frames = await first_frames(server.ws_url, caller.member.token, pending, quiet=quiet)
        return [
            (frames[2 * i].without(c.unknown_id), frames[2 * i + 1].without(c.foreign_id))
            for i, c in enumerate(chunk)
        ]

    for attempt in range(3):
        latest = await visible_latest(caller)
        runs = [run(chunk, SUBSCRIPTION_WAIT) for chunk in chunks]
        results = [pair for answers in await asyncio.gather(*runs) for pair in answers]
        for i, (c, (unknown_frame, foreign_frame)) in enumerate(zip(batch, results, strict=True)):
            if unknown_frame != foreign_frame and SILENT in (
                unknown_frame.body,
                foreign_frame.body,
            ):
                [results[i]] = await run([c], CONFIRM_WAIT)
                walk.rechecked += 1
        if await visible_latest(caller) == latest:
            break
        assert attempt < 2, f"our {caller.side} kept having events of its own"
    for c, (unknown_frame, foreign_frame) in zip(batch, results, strict=True):
        walk.compare(c.where, unknown_frame, c.foreign_id, foreign_frame)
        walk.tried[(c.path.name, c.side)] += 1


async def visible_latest(caller: Caller) -> int:
    """The latest event the caller's organisation may see."""
    await all_numbered()
    latest = await visibility.events(caller.viewer).order_by("-seq").first()
    return int(latest.seq) if latest and latest.seq is not None else 0


def test_every_id_path_can_be_called() -> None:
    """Without a server: the schema's id paths are found (ids in arguments, in input objects,
    nested and in lists), and each can be called with valid values around it."""
    schema = create_schema()._schema
    paths = id_paths(schema)
    names = {p.name for p in paths}
    assert {
        "Query.node(id)",
        "Query.nodes(ids)",
        "Query.orders(filter.storeId)",
        "Mutation.createManualOrder(input.lines.skuId)",
        "Mutation.answerQuote(input.prices.skuId)",
        "Subscription.orderStatusChanged(orderIds)",
    } <= names
    calls = Calls(schema, arguments(placeholder_world()))
    for path in paths:
        built = calls.call(path, PROBE)
        assert PROBE in json.dumps(built.variables), path.name
