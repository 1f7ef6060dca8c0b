"""A long-lived subscription keeps no memory per event (graphql-core's per-event executors
share a memo keyed by lists rebuilt for every event; ours get their own)."""

from __future__ import annotations

import gc
from collections.abc import AsyncGenerator

import strawberry

from schema.execution import FastExecutionContext


@strawberry.type
class Tick:
    a: int
    b: str


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def tick(self, count: int) -> AsyncGenerator[Tick, None]:
        for i in range(count):
            yield Tick(a=i, b=str(i))


def _field_details() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "FieldDetails")


async def _objects_alive_after(events: int, context_class: type | None) -> int:
    schema = strawberry.Schema(
        query=Query, subscription=Subscription, execution_context_class=context_class
    )
    stream = await schema.subscribe(
        "subscription($n: Int!) { tick(count: $n) { a b } }", variable_values={"n": events}
    )
    seen = 0
    async for result in stream:  # type: ignore[union-attr]
        assert not result.errors
        seen += 1
        if seen == events:
            alive = _field_details()  # the subscription is still open here
    await stream.aclose()  # type: ignore[union-attr]
    return alive


async def test_events_of_one_subscription_leave_nothing_behind() -> None:
    baseline = _field_details()
    few = await _objects_alive_after(10, FastExecutionContext) - baseline
    many = await _objects_alive_after(2_000, FastExecutionContext) - baseline
    assert many - few < 20, (few, many)
