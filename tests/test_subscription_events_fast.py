"""A subscription's events completed by its shape (``schema.execution``, issue 20) give exactly
what graphql-core's per-event execution gives, the plan applies only where it should, and a
live subscription keeps its shapes however many other documents run meanwhile."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import GraphQLSchema
from strawberry.schema.config import StrawberryConfig

from schema import execution, shapes
from schema.execution import FastExecutionContext


@strawberry.enum
class Status(Enum):
    OPEN = "open"
    SHUT = "shut"


@strawberry.type
class Change:
    id: strawberry.ID
    status: Status
    reason: str | None
    at: datetime


@strawberry.type
class Query:
    ping: str = "pong"


def _changes(broken: str | None) -> list[Any]:
    at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    changes = [
        Change(id=strawberry.ID(str(n)), status=Status.SHUT, reason=None if n else "x", at=at)
        for n in range(3)
    ]
    if broken == "null_in_non_null":
        changes[1].status = None  # type: ignore[assignment]
    elif broken == "wrong_enum":
        changes[2].status = "purple"  # type: ignore[assignment]
    elif broken == "not_a_change":
        changes[0] = "nothing like it"
    return changes


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def changed(self, info: strawberry.Info, upto: int = 3) -> AsyncGenerator[Change, None]:
        for change in info.context["changes"][:upto]:
            yield change

    @strawberry.subscription
    async def counted(self) -> AsyncGenerator[int, None]:
        for n in range(3):
            yield n


def _schema(fast: bool) -> strawberry.Schema:
    return strawberry.Schema(
        Query,
        subscription=Subscription,
        config=StrawberryConfig(),
        execution_context_class=FastExecutionContext if fast else None,
    )


PLANNED = [
    "subscription { changed { id status reason at } }",
    "subscription S { c: changed(upto: 2) { __typename at id } }",
    "subscription { ...F } fragment F on Subscription { changed { status } }",
    "subscription { counted }",
]
NOT_PLANNED = [
    "subscription($x: Boolean!) { changed { id status @include(if: $x) } }",  # a directive
]


async def _events(schema: strawberry.Schema, document: str, changes: list[Any]) -> list[Any]:
    stream = await schema.subscribe(
        document, variable_values={"x": True}, context_value={"changes": changes}
    )
    got = []
    async for result in stream:  # type: ignore[union-attr]
        got.append(
            (result.data, sorted((e.message, tuple(e.path or ())) for e in result.errors or []))
        )
    return got


@pytest.mark.parametrize("broken", [None, "null_in_non_null", "wrong_enum", "not_a_change"])
async def test_events_answer_exactly_as_graphql_core_does(broken: str | None) -> None:
    fast, plain = _schema(True), _schema(False)
    for document in PLANNED + NOT_PLANNED:
        expected = await _events(plain, document, _changes(broken))
        assert expected, document
        assert await _events(fast, document, _changes(broken)) == expected, document


async def test_the_plan_applies_to_one_shaped_root_field_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned: list[Any] = []
    execute = execution._PlannedEvent.execute_operation

    def counting(self: Any, serially: bool | None = None) -> Any:
        planned.append(self)
        return execute(self, serially)

    monkeypatch.setattr(execution._PlannedEvent, "execute_operation", counting)
    fast = _schema(True)
    for document in PLANNED:
        planned.clear()
        assert len(await _events(fast, document, _changes(None))) >= 2
        assert planned, document
    for document in NOT_PLANNED:
        planned.clear()
        assert await _events(fast, document, _changes(None))
        assert not planned, document


async def test_a_live_subscription_keeps_its_shapes_beyond_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thousands of organisations' documents live at once, each executed in turn: the shared
    cache (here of one operation) must not make each event compile its shapes again."""
    fast = _schema(True)
    graphql_schema: GraphQLSchema = fast._schema
    execution._SHAPES[graphql_schema] = shapes.ShapeCache(graphql_schema, max_documents=1)
    made: list[Any] = []
    init = shapes.OperationShapes.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(shapes.OperationShapes, "__init__", counting)
    documents = [f"subscription S{n} {{ changed(upto: 3) {{ id at }} }}" for n in range(3)]
    streams = [
        await fast.subscribe(d, context_value={"changes": _changes(None)}) for d in documents
    ]
    for _ in range(3):  # one event of each subscription in turn
        for stream in streams:
            result = await stream.__anext__()  # type: ignore[union-attr]
            assert result.errors is None and result.data is not None
    assert len(made) == len(documents)
