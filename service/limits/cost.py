"""The requested cost of a GraphQL operation, computed on its document before it runs, as
Shopify's Admin API computes it.

- A scalar or enum field costs 0; a field returning an object costs 1 plus what it selects; an
  interface or union, 1 plus the most any of its object types' selections costs.
- A connection (a type with ``edges`` and ``pageInfo``) costs 2 plus, for each item it may
  return, what an item selects: its size is ``first`` or ``last`` (the argument's default when
  the client gives none), or the documented maximum page size (``domain.pages.MAX_PAGE``) when
  neither has a value. Edges and ``pageInfo`` are part of the 2.
- A list sized by a list of ids (``nodes(ids:)``) costs per id. Any other list (an order's
  ``lines``) is priced as one item: the documented maximum of every nested list is enforced
  when it is written (``domain/limits.py``), and sizing by it would price an orders page with
  its lines out of reach.
- A root mutation field costs 10 in place of 1, plus what its payload selects.

Fields skipped by ``@skip``/``@include`` cost nothing. Each (selection set, type, size) is
priced once, so a fragment spread many times (even 2**40 times, through fragments spreading
each other twice) takes the time of pricing it once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    BooleanValueNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLID,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionNode,
    SelectionSetNode,
    TypeMetaFieldDef,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
)

from domain.pages import MAX_PAGE

OBJECT_COST = 1
CONNECTION_COST = 2
MUTATION_COST = 10
MAX_NESTING = 64  # deeper selections (in a document not yet validated) are not priced

PriceKey = tuple[int, str, int | None]  # (selection set, object type, size of its lists)


def operation_of(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    """The operation ``name`` selects (the only one when None), else None."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    named = [o for o in operations if o.name is not None and o.name.value == name]
    return named[0] if len(named) == 1 else None


def requested_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> int | None:
    """What running ``operation_name`` of ``document`` with ``variables`` costs; None when the
    document names no single operation or the schema has no root type for it."""
    operation = operation_of(document, operation_name)
    if operation is None:
        return None
    root = schema.get_root_type(operation.operation)
    if root is None:
        return None
    return _Pricing(schema, document, operation, variables or {}).operation(operation, root)


class _Pricing:
    """One document's pricing: its fragments and variables, and the selection sets priced."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        defaults = {
            v.variable.name.value: _literal(v.default_value, {})
            for v in operation.variable_definitions or ()
            if v.default_value is not None
        }
        self.variables = {**defaults, **variables}
        self.priced: dict[PriceKey, int] = {}
        self.open: set[PriceKey] = set()  # being priced (a fragment cycle ends there)

    def operation(self, operation: OperationDefinitionNode, root: GraphQLObjectType) -> int:
        return self.selections(operation.selection_set, root, None, 0)

    def selections(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType,
        size: int | None,
        depth: int,
    ) -> int:
        """What ``selection_set`` costs on one value of ``parent`` (the most over an abstract
        type's object types), through the fragments that apply to it; ``size`` sizes the item
        lists of a connection."""
        if depth > MAX_NESTING:
            return 0
        if isinstance(parent, GraphQLInterfaceType | GraphQLUnionType):
            possible = self.schema.get_possible_types(parent)
            costs = (self.selections(selection_set, t, size, depth) for t in possible)
            return max(costs, default=0)
        if not isinstance(parent, GraphQLObjectType):
            return 0
        key = (id(selection_set), parent.name, size)
        found = self.priced.get(key)
        if found is not None:
            return found
        if key in self.open:
            return 0  # a fragment cycle (refused by validation): priced nothing here
        self.open.add(key)
        try:
            total = sum(
                self.selection_cost(s, parent, size, depth) for s in selection_set.selections
            )
        finally:
            self.open.discard(key)
        self.priced[key] = total
        return total

    def selection_cost(
        self, selection: SelectionNode, parent: GraphQLObjectType, size: int | None, depth: int
    ) -> int:
        if not self.included(selection):
            return 0
        if isinstance(selection, FieldNode):
            field = self.field(parent, selection.name.value)
            return 0 if field is None else self.field_cost(selection, field, parent, size, depth)
        if isinstance(selection, InlineFragmentNode):
            condition, inner = selection.type_condition, selection.selection_set
        elif isinstance(selection, FragmentSpreadNode):
            fragment = self.fragments.get(selection.name.value)
            if fragment is None:
                return 0
            condition, inner = fragment.type_condition, fragment.selection_set
        else:
            return 0
        if condition is not None and not self.applies(condition.name.value, parent):
            return 0
        return self.selections(inner, parent, size, depth)

    def field_cost(
        self,
        node: FieldNode,
        field: GraphQLField,
        parent: GraphQLObjectType,
        size: int | None,
        depth: int,
    ) -> int:
        returned = get_nullable_type(field.type)
        named = get_named_type(returned)
        selected = node.selection_set
        if parent is self.schema.mutation_type:
            inner = 0 if selected is None else self.selections(selected, named, None, depth + 1)
            return MUTATION_COST + inner
        if is_leaf_type(named) or selected is None:
            return 0
        if is_list_type(returned):
            count = self.list_size(node, field) if size is None else size
            return count * self.item_cost(selected, named, depth)
        if _is_connection(named):
            pages = self.page_size(node, field)
            return CONNECTION_COST + self.selections(selected, named, pages, depth + 1)
        return self.item_cost(selected, named, depth)

    def item_cost(
        self, selection_set: SelectionSetNode, named: GraphQLNamedType, depth: int
    ) -> int:
        """One object: 1 and its selections; an edge of a connection or its ``pageInfo`` is part
        of the connection's cost."""
        own = 0 if _is_wrapper(named) else OBJECT_COST
        return own + self.selections(selection_set, named, None, depth + 1)

    def page_size(self, node: FieldNode, field: GraphQLField) -> int:
        for name in ("first", "last"):
            value = self.argument(node, field, name)
            if isinstance(value, int) and not isinstance(value, bool):
                return min(max(value, 0), MAX_PAGE)
        return MAX_PAGE

    def list_size(self, node: FieldNode, field: GraphQLField) -> int:
        """A list is sized by its longest list-of-ids argument, else priced as one item."""
        size = 1
        for name, argument in field.args.items():
            kind = get_nullable_type(argument.type)
            if not isinstance(kind, GraphQLList) or get_named_type(kind) is not GraphQLID:
                continue
            value = self.argument(node, field, name)
            if isinstance(value, list):
                size = max(size, len(value))
        return size

    def argument(self, node: FieldNode, field: GraphQLField, name: str) -> Any:
        """The argument ``name`` of ``node`` as far as it can be read (a literal or a variable),
        else its default; None when neither gives a value."""
        for given in node.arguments or ():
            if given.name.value == name:
                value = _literal(given.value, self.variables)
                if value is not None:
                    return value
                break
        definition = field.args.get(name)
        if definition is None or definition.default_value is None:
            return None
        default = definition.default_value
        return default if isinstance(default, int | list) else None

    def field(self, parent: GraphQLObjectType, name: str) -> GraphQLField | None:
        if parent is self.schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        return parent.fields.get(name)

    def applies(self, condition: str, parent: GraphQLObjectType) -> bool:
        """Whether a fragment on the type named ``condition`` applies to a ``parent``."""
        if condition == parent.name:
            return True
        kind = self.schema.get_type(condition)
        if not isinstance(kind, GraphQLInterfaceType | GraphQLUnionType):
            return False
        return self.schema.is_sub_type(kind, parent)

    def included(self, selection: Any) -> bool:
        """``@skip(if:)`` and ``@include(if:)``, read from literals and variables."""
        for directive in selection.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                continue
            condition = next((a.value for a in directive.arguments if a.name.value == "if"), None)
            value = _literal(condition, self.variables) if condition is not None else None
            if isinstance(value, bool) and value == (name == "skip"):
                return False
        return True


def _literal(node: ValueNode | None, variables: Mapping[str, Any]) -> Any:
    """The value of the literals pricing reads: integers, booleans, lists (for their length),
    variables; anything else is None."""
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, BooleanValueNode):
        return node.value
    if isinstance(node, ListValueNode):
        return list(node.values)
    return None


def _is_connection(named: GraphQLNamedType) -> bool:
    return isinstance(named, GraphQLObjectType) and {"edges", "pageInfo"} <= named.fields.keys()


def _is_wrapper(named: GraphQLNamedType) -> bool:
    """An edge (``cursor`` and ``node``) or a connection's ``PageInfo``."""
    if not isinstance(named, GraphQLObjectType):
        return False
    fields = named.fields.keys()
    return {"cursor", "node"} <= fields or {"hasNextPage", "endCursor"} <= fields
