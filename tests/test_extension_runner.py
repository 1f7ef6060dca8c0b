"""``schema/extension_runner.py``: extension hooks cost only what they do, and do all they did.

An event without errors skips the masking hook; one with an unexpected error is still masked
(message and code) on a multiplexed subscription; extension results are what Strawberry's own
runner collects."""

from __future__ import annotations

from typing import Any

import pytest
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext

from schema.build import ErrorPolicy
from schema.extension_runner import LeanExtensionsRunner
from tests.conftest import MakeMember
from tests.support.distribution import manual_order, partnered
from tests.support.graphql_client import GraphQLHttp, GraphQLWebSocket
from tests.support.server import RunningServer
from tests.test_order_flow import ok


class Reporting(SchemaExtension):
    def get_results(self) -> dict[str, Any]:
        return {"reported": True}


class Counting(SchemaExtension):
    seen = 0

    def on_stream_result(self, result: Any) -> Any:  # type: ignore[override]
        Counting.seen += 1
        yield


class Result:
    def __init__(self, errors: list[Any] | None = None) -> None:
        self.errors = errors


def context() -> ExecutionContext:
    ctx = ExecutionContext.__new__(ExecutionContext)
    ctx.extensions_results = {"own": 1}
    return ctx


async def test_results_are_those_of_strawberrys_runner() -> None:
    extensions = [ErrorPolicy(), Reporting(), SchemaExtension()]
    ctx = context()
    lean = await LeanExtensionsRunner(ctx, extensions).get_extensions_results(ctx)
    plain = await SchemaExtensionsRunner(ctx, extensions).get_extensions_results(ctx)
    assert lean == plain == {"reported": True, "own": 1}


async def test_a_result_without_errors_skips_masking_but_not_other_hooks() -> None:
    masking_only = LeanExtensionsRunner(context(), [ErrorPolicy(), Reporting()])
    assert masking_only.on_stream_result(Result()) is masking_only.on_stream_result(Result())
    assert type(masking_only.on_stream_result(Result(["boom"]))).__name__ == (
        "StreamResultContextManager"
    )
    Counting.seen = 0
    with_other = LeanExtensionsRunner(context(), [ErrorPolicy(), Counting()])
    async with with_other.on_stream_result(Result()):
        pass
    assert Counting.seen == 1


async def test_an_unexpected_error_in_a_shared_subscription_is_still_masked(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from domain.orders import queries as order_queries

    d = await partnered(client, make_member, None)
    order_id = await manual_order(client, d)
    ws = await GraphQLWebSocket.connect(server.ws_url, token=d.distributor.token)
    await ws.acknowledged()
    await ws.subscribe("subscription { orderStatusChanged { toStatus order { id } } }")
    await server.wait_for_subscribers(1)

    async def broken(**_: Any) -> Any:
        raise RuntimeError("SELECT secret FROM internals")

    monkeypatch.setattr(order_queries, "get_order", broken)
    await ok(
        client,
        'mutation($o: ID!) { cancelOrders(orderIds: [$o], reason: "x") { userErrors { code } } }',
        {"o": order_id},
        token=d.distributor.token,
    )
    message = await ws.receive()
    assert message["type"] == "next", message
    payload = message["payload"]
    assert payload["data"] == {"orderStatusChanged": {"toStatus": "CANCELLED", "order": None}}
    [error] = payload["errors"]
    assert error["message"] == "Unexpected error."
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "SELECT" not in str(message)
    await ws.close()
