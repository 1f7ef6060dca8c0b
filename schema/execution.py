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

Nothing applies when graphql-core middleware is installed (a schema extension with a ``resolve``
hook), so such hooks always see every field.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from graphql import (
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    is_leaf_type,
)
from graphql.pyutils import Path, Undefined

from compat.graphql_core import FieldDetailsList, reset_per_event_memos
from compat.strawberry import StrawberryGraphQLCoreExecutionContext
from schema.shapes import GiveUp, OperationShapes, Shape, ShapeCache, value_access

_MISSING = object()


class _Plan(NamedTuple):
    python_name: str
    coerce: Callable[[Any], Any] | None  # set for plain leaves, None for prefetchable children
    nullable: bool


_NO_PLAN = _Plan("", None, True)
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

    def build_per_event_executor(self, payload: Any) -> Any:
        """The executor of one subscription event, with caches of its own.

        graphql-core copies the subscription's executor per event and the copies share its
        memo of sub-field collections, keyed by the identity of lists rebuilt for every event:
        it would keep a few entries per event for as long as the subscription lives (a
        multiplexed group can live for days).
        """
        executor = super().build_per_event_executor(payload)
        reset_per_event_memos(executor)
        executor._shape_memo = {}
        return executor

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
        if self._operation_shapes is None:
            cache = _SHAPES.get(self.schema)
            if cache is None:
                cache = _SHAPES[self.schema] = ShapeCache(self.schema)
            self._operation_shapes = cache.for_operation(self.operation, self.fragments)
        return self._operation_shapes.shape(return_type, field_details_list, self.variable_values)

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
