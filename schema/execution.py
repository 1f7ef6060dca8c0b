"""The execution context: plain leaf fields and prefetched children without per-field machinery.

graphql-core resolves every field the same way: it builds a resolve-info object, reads the
arguments, calls the resolver (for Strawberry's plain fields a wrapper around ``getattr``) and
completes the value, checking twice whether it must be awaited. For a page of orders that is
most of the server's work, spent on fields that only read an attribute.

``FastExecutionContext`` keeps that path for everything but two cases, decided once per
(type, field) and cached on the schema:

- a *plain leaf*: a Strawberry field without resolver, extensions or arguments whose type is a
  scalar or enum. Its value is ``getattr(source, python_name)`` coerced by the type. Anything
  unusual (a missing attribute, a value the type cannot coerce, null where null is not allowed)
  falls back to the normal path, which reports the error exactly as before.
- a *prefetched child*: a field without arguments whose source carries the value in its
  ``prefetched`` dict (see ``schema.types.prefetch``). The value is completed as usual, but the
  resolver and its wrappers are skipped.

Beyond single fields, a value whose whole selection is covered by a *shape*
(``schema.shapes``: plain attributes and prefetched children all the way down) is completed by
the shape compiled for that selection, in one call, without graphql-core's per-field
machinery; anything the shape does not expect sends the value down the normal path.

A subscription's event goes further (``build_per_event_executor`` hands graphql-core a
stand-in, ``_PlannedEvent``): when the document selects one root field, whose per-event
resolver hands the event on unchanged (every Strawberry subscription field's), and a shape
covers its selection, the result is that shape applied to the event, without copying the
executor, collecting the root fields again, a path, a resolve-info or the arguments the
resolver ignores. A live server executes the subscriptions of thousands of organisations once
per event each, and that machinery was about half of the execution's cost.

Nothing applies when graphql-core middleware is installed (a schema extension with a ``resolve``
hook), so such hooks always see every field.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from graphql import (
    ExecutionResult,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationType,
    is_leaf_type,
)
from graphql.pyutils import Path, Undefined

from compat.graphql_core import FieldDetailsList, collect_fields, reset_per_event_memos
from compat.strawberry import StrawberryGraphQLCoreExecutionContext, strawberry_field
from schema.shapes import GiveUp, OperationShapes, Shape, ShapeCache, value_access

_MISSING = object()


class _Plan(NamedTuple):
    python_name: str
    coerce: Callable[[Any], Any] | None  # set for plain leaves, None for prefetchable children
    nullable: bool


_NO_PLAN = _Plan("", None, True)


class _EventPlan(NamedTuple):
    """A subscription's events completed in one call: the root field's response key and the
    shape of its selection, applied to the event itself."""

    key: str
    shape: Shape


_UNDECIDED: Any = object()


class _PlannedEvent:
    """What graphql-core executes for one event of a planned subscription: the event's result
    by the plan's shape; if the shape gives up, a real per-event executor's (which reports what
    is wrong as always)."""

    __slots__ = ("_executor", "_payload", "_plan")

    def __init__(self, executor: FastExecutionContext, plan: _EventPlan, payload: Any) -> None:
        self._executor, self._plan, self._payload = executor, plan, payload

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = self._plan
        try:
            return ExecutionResult({plan.key: plan.shape(self._payload)}, None)
        except GiveUp:
            return self._executor.executor_for_event(self._payload).execute_operation(serially)


_PLANS: weakref.WeakKeyDictionary[GraphQLSchema, dict[tuple[GraphQLObjectType, str], _Plan]] = (
    weakref.WeakKeyDictionary()
)
_SHAPES: weakref.WeakKeyDictionary[GraphQLSchema, ShapeCache] = weakref.WeakKeyDictionary()


def _make_plan(schema: GraphQLSchema, parent_type: GraphQLObjectType, name: str) -> _Plan:
    field_def = schema.get_field(parent_type, name)
    access = value_access(field_def)
    if field_def is None or access is None:
        return _NO_PLAN
    nullable = not isinstance(field_def.type, GraphQLNonNull)
    named = field_def.type.of_type if isinstance(field_def.type, GraphQLNonNull) else field_def.type
    if access.prefetched:
        return _Plan(access.python_name, None, nullable)
    if is_leaf_type(named):
        return _Plan(access.python_name, named.coerce_output_value, nullable)
    return _NO_PLAN


class FastExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._shortcuts = manager is None or not manager.middlewares
        self._plans = _PLANS.setdefault(self.schema, {})
        self._operation_shapes: OperationShapes | None = None
        # (type, id of the field list) → (the list, kept alive so its id stays unique; shape)
        self._shape_memo: dict[tuple[Any, int], tuple[Any, Shape | None]] = {}
        self._events_plan: _EventPlan | None = _UNDECIDED  # a subscription's, decided once

    def build_per_event_executor(self, payload: Any) -> Any:
        """The executor of one subscription event, with caches of its own; for a planned
        subscription (module docstring) a lighter stand-in that copies nothing unless its
        shape gives up.

        graphql-core copies the subscription's executor per event and the copies share its
        memo of sub-field collections, keyed by the identity of lists rebuilt for every event:
        it would keep a few entries per event for as long as the subscription lives (a
        multiplexed group can live for days).
        """
        # The subscription's shapes, found once and handed to every event's executor: through
        # the shared cache (its last ``MAX_DOCUMENTS`` operations) 2,000 live subscriptions of
        # distinct documents, executed in turn, compiled them again for every event.
        self._shapes_of_operation()
        if self._events_plan is _UNDECIDED:
            self._events_plan = self._plan_events()
        if self._events_plan is not None:
            return _PlannedEvent(self, self._events_plan, payload)
        return self.executor_for_event(payload)

    def executor_for_event(self, payload: Any) -> Any:
        """A copy of this executor for one event, as graphql-core makes it, memos its own."""
        executor = super().build_per_event_executor(payload)
        reset_per_event_memos(executor)
        executor._shape_memo = {}
        return executor

    def _plan_events(self) -> _EventPlan | None:
        """The fast path for this subscription's events (module docstring), or None."""
        shapes = self._shapes_of_operation()
        root_type = self.schema.subscription_type
        if (
            not self._shortcuts
            or not shapes.usable
            or root_type is None
            or self.operation.operation is not OperationType.SUBSCRIPTION
        ):
            return None
        grouped, deferred, _ = collect_fields(
            self.schema,
            self.fragments,
            self.variable_values,
            root_type,
            self.operation,
            self.hide_suggestions,
        )
        if len(grouped) != 1 or deferred:
            return None
        ((key, details),) = grouped.items()
        field_def = self.schema.get_field(root_type, details[0].node.name.value)
        definition = strawberry_field(field_def) if field_def is not None else None
        if field_def is None or definition is None or not definition.is_subscription:
            return None
        marker = object()
        try:  # Strawberry's per-event resolver of a subscription field: the event itself
            hands_on = field_def.resolve is not None and field_def.resolve(marker, None) is marker
        except Exception:
            hands_on = False
        shape = shapes.shape(field_def.type, details, self.variable_values) if hands_on else None
        return None if shape is None else _EventPlan(key, shape)

    def _shapes_of_operation(self) -> OperationShapes:
        if self._operation_shapes is None:
            cache = _SHAPES.get(self.schema)
            if cache is None:
                cache = _SHAPES[self.schema] = ShapeCache(self.schema)
            self._operation_shapes = cache.for_operation(self.operation, self.fragments)
        return self._operation_shapes

    def complete_value(
        self,
        return_type: Any,
        field_details_list: FieldDetailsList,
        info: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        if self._shortcuts and result is not None and not isinstance(result, Exception):
            memo_key = (return_type, id(field_details_list))
            found = self._shape_memo.get(memo_key)
            if found is None:
                found = (field_details_list, self._shape(return_type, field_details_list))
                self._shape_memo[memo_key] = found
            shape = found[1]
            if shape is not None:
                # on GiveUp the normal path below completes the value, and reports what is wrong
                with contextlib.suppress(GiveUp):
                    return shape(result)
        return super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _shape(self, return_type: Any, field_details_list: FieldDetailsList) -> Shape | None:
        named = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
        if is_leaf_type(named):
            return None  # a single leaf: the normal completion is as cheap
        shapes = self._shapes_of_operation()
        return shapes.shape(return_type, field_details_list, self.variable_values)

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        if self._shortcuts and not node.arguments:
            name = node.name.value
            plan = self._plans.get((parent_type, name))
            if plan is None:
                plan = self._plans[(parent_type, name)] = _make_plan(self.schema, parent_type, name)
            if plan.coerce is not None:
                value = getattr(source, plan.python_name, _MISSING)
                if value is None and plan.nullable:
                    return None
                if value is not _MISSING and value is not None:
                    try:
                        coerced = plan.coerce(value)
                    except Exception:  # the normal path reports it
                        coerced = None
                    if coerced is not None and coerced is not Undefined:
                        return coerced
            elif plan.python_name:
                prefetched = getattr(source, "prefetched", None)
                if isinstance(prefetched, dict) and plan.python_name in prefetched:
                    value = prefetched[plan.python_name]
                    if value is not None or plan.nullable:
                        return self._complete_prefetched(
                            parent_type, field_details_list, path, position_context, value
                        )
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def _complete_prefetched(
        self,
        parent_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
        value: Any,
    ) -> Any:
        """Complete an already-resolved value the way ``execute_field`` completes a result."""
        field_def = self.schema.get_field(parent_type, field_details_list[0].node.name.value)
        assert field_def is not None
        info = self.build_resolve_info(
            field_def, [d.node for d in field_details_list], parent_type, path
        )
        try:
            completed = self.complete_value(
                field_def.type, field_details_list, info, path, value, position_context
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, field_def.type, field_details_list, path)
            return None
        if not self.is_awaitable(completed):
            return completed

        async def await_completed() -> Any:
            try:
                return await completed
            except Exception as raw_error:
                self.handle_field_error(raw_error, field_def.type, field_details_list, path)
                return None

        return await_completed()
