"""``QueryCost``: the schema extension that prices and charges each operation before it runs.

In ``on_execute`` (the document has parsed and validated) it prices the operation and charges
the caller's token (``Throttle.charge``). A refused query or mutation gets the refusal as its
result, so nothing executes (Strawberry's way of answering without executing), as a
``PreExecutionError``: a request error over HTTP, an ``error`` message over
graphql-transport-ws; a refused subscription raises it, which Strawberry sends as the
subscription's error. The cost goes in the
result's ``extensions.cost``, except for subscriptions (their results can be shared by many
subscribers). An execution whose viewer has no token is a subscription group of
``service/live/``, run once for members each charged when they subscribed: it is not charged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from graphql import OperationType
from strawberry.extensions import SchemaExtension

from compat.strawberry import PreExecutionError, core_schema
from service.limits.throttle import COST_STATE, RETRY_AFTER_STATE, Charge, Throttle


def _http_state(context: Any) -> dict[str, Any] | None:
    """The ``scope["state"]`` of the HTTP request an operation came in, if it came in one."""
    scope = getattr(getattr(context, "request", None), "scope", None)
    if not isinstance(scope, dict) or scope.get("type") != "http":
        return None
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


class QueryCost(SchemaExtension):
    def __init__(self, throttle: Throttle) -> None:
        self._throttle = throttle
        self._report: dict[str, Any] | None = None

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        charge = await self._charge()
        if charge is not None and charge.refusal is not None:
            ctx = self.execution_context
            if ctx.operation_type is OperationType.SUBSCRIPTION:
                raise charge.refusal
            ctx.result = PreExecutionError(data=None, errors=[charge.refusal])
        yield

    async def _charge(self) -> Charge | None:
        ctx = self.execution_context
        viewer = getattr(ctx.context, "viewer", None)
        if viewer is not None and viewer.token_id is None:
            return None  # a subscription group: its members were charged
        cost = self._throttle.price(
            core_schema(ctx.schema),
            ctx.query,
            ctx.operation_name,
            ctx.variables,
            parsed=ctx.graphql_document,
        )
        if cost is None:
            return None
        charge = await self._throttle.charge(viewer.token_id if viewer else None, cost)
        if ctx.operation_type is not OperationType.SUBSCRIPTION:
            self._report = charge.report
        state = _http_state(ctx.context)
        if state is not None:
            state[COST_STATE] = charge.report
            if charge.retry_after is not None:
                state[RETRY_AFTER_STATE] = max(
                    charge.retry_after, state.get(RETRY_AFTER_STATE) or 0.0
                )
        return charge

    def get_results(self) -> dict[str, Any]:
        return {} if self._report is None else {"cost": self._report}


def cost_extensions(throttle: Throttle) -> list[Callable[[], SchemaExtension]]:
    """``QueryCost`` for the schema's extensions, first (a refusal raised by a subscription's
    ``on_execute`` then leaves no other hook entered); none when query cost is off."""
    if not throttle.limits.costs:
        return []
    return [lambda: QueryCost(throttle)]
