"""Compiled completion (``schema.shapes``) gives exactly what graphql-core's own completion
gives, for every document, and is used where it applies.

The resolvers of prefetched children return the prefetched value, so a default Strawberry
schema (which knows nothing of prefetching) is the reference for every answer and error."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import GraphQLSchema
from strawberry.extensions import ParserCache
from strawberry.schema.config import StrawberryConfig

from schema import execution
from schema.execution import FastExecutionContext


@strawberry.enum
class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Product:
    id: strawberry.ID
    title: str
    price: Decimal
    colour: Colour
    note: str | None = None


@strawberry.type
class Line:
    quantity: int
    sku_code: str | None
    prefetched: strawberry.Private[dict[str, Any]] = field(default_factory=dict)

    @strawberry.field
    async def product(self) -> Product | None:  # the value a root resolver prefetched
        return self.prefetched["product"]

    @strawberry.field
    def doubled(self, times: int = 2) -> int:
        return self.quantity * times


@strawberry.type
class Order:
    id: strawberry.ID
    number: str
    lines: list[Line]
    tags: list[str | None]
    flagged: bool
    prefetched: strawberry.Private[dict[str, Any]] = field(default_factory=dict)

    @strawberry.field
    async def main_product(self) -> Product:
        return self.prefetched["main_product"]


@dataclass
class Page:
    orders: list[Any]


@strawberry.type
class Query:
    @strawberry.field
    async def orders(self, info: strawberry.Info) -> list[Order]:
        return info.context["orders"]


def _product(n: int, **extra: Any) -> Product:
    return Product(
        id=strawberry.ID(str(n)),
        title=f"P{n}",
        price=Decimal("12.50"),
        colour=Colour.BLUE,
        **extra,
    )


def _orders(broken: str | None = None) -> list[Any]:
    orders = []
    for n in range(3):
        lines = []
        for k in range(2):
            line = Line(quantity=k + 1, sku_code=None if k else f"S{n}{k}")
            line.prefetched["product"] = _product(n * 10 + k, note="n" if k else None)
            lines.append(line)
        order = Order(
            id=strawberry.ID(str(n)),
            number=f"#{n}",
            lines=lines,
            tags=["a", None],
            flagged=n == 1,
        )
        order.prefetched["main_product"] = _product(n)
        orders.append(order)
    if broken == "null_in_non_null":
        orders[1].number = None  # type: ignore[assignment]
    elif broken == "missing_prefetch":
        del orders[2].lines[0].prefetched["product"]
    elif broken == "wrong_enum":
        orders[0].prefetched["main_product"].colour = "purple"
    elif broken == "not_a_list":
        orders[2].tags = "ab"  # type: ignore[assignment]
    return orders


def _schema(fast: bool) -> strawberry.Schema:
    return strawberry.Schema(
        Query,
        config=StrawberryConfig(),
        execution_context_class=FastExecutionContext if fast else None,
        extensions=[lambda: ParserCache(maxsize=100)],  # as the API's schema: shapes are kept
    )  # per parsed document


DOCUMENTS = [
    "{ orders { id number flagged tags lines { quantity skuCode product { id title price colour note } } } }",
    "{ orders { __typename id lines { __typename q: quantity product { t: title } } mainProduct { title } } }",
    "query { orders { ...O } } fragment O on Order { id lines { ...L } } fragment L on Line { quantity product { id } }",
    "{ orders { id ... on Order { number lines { product { title } } } } }",
    "{ orders { id lines { doubled(times: 3) product { title } } } }",  # a field with arguments
    "query($x: Boolean!) { orders { id number @include(if: $x) lines { quantity @skip(if: $x) } } }",
    "{ orders { id number } orders2: orders { number lines { quantity } } }",
]


async def _run(schema: strawberry.Schema, document: str, orders: list[Any]) -> dict[str, Any]:
    result = await schema.execute(
        document, variable_values={"x": True}, context_value={"orders": orders}
    )
    return {
        "data": result.data,
        "errors": sorted((e.message, tuple(e.path or ())) for e in result.errors or []),
    }


@pytest.mark.parametrize(
    "broken", [None, "null_in_non_null", "missing_prefetch", "wrong_enum", "not_a_list"]
)
async def test_shapes_answer_exactly_as_graphql_core_does(broken: str | None) -> None:
    fast, plain = _schema(True), _schema(False)
    for document in DOCUMENTS:
        for _ in range(2):  # compiled on the first run, reused on the second
            expected = await _run(plain, document, _orders(broken))
            assert await _run(fast, document, _orders(broken)) == expected, document


def _compiled(schema: strawberry.Schema) -> list[Any]:
    graphql_schema: GraphQLSchema = schema._schema
    cache = execution._SHAPES.get(graphql_schema)
    if cache is None:
        return []
    return [
        shape
        for operation in cache._operations.values()
        for shape in operation._shapes.values()
        if shape is not None
    ]


async def test_a_covered_selection_is_compiled_once_and_an_uncovered_one_is_not() -> None:
    fast = _schema(True)
    covered = "{ orders { id number lines { quantity product { title } } mainProduct { id } } }"
    for _ in range(3):
        await _run(fast, covered, _orders())
    shapes = _compiled(fast)
    assert len(shapes) == 1  # the whole list of orders, compiled once

    fresh = _schema(True)
    await _run(fresh, DOCUMENTS[5], _orders())  # directives: nothing is compiled
    assert _compiled(fresh) == []


async def test_shapes_of_concurrent_requests_do_not_mix() -> None:
    fast, plain = _schema(True), _schema(False)
    runs = [
        (DOCUMENTS[n % 4], _orders("null_in_non_null" if n % 3 == 0 else None)) for n in range(24)
    ]
    got = await asyncio.gather(*(_run(fast, d, o) for d, o in runs))
    expected = [await _run(plain, d, o) for d, o in runs]
    assert got == expected
