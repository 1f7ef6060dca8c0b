"""Compiled completion of whole subtrees whose values are already in memory.

Once a page's root resolver has loaded everything the client selected (plain attributes, and
children in each object's ``prefetched`` dict, see ``schema.types.prefetch``), completing it is
pure bookkeeping, and graphql-core's general machinery (a path, a resolve-info and two
awaitable checks per field) costs more than reading the values. A *shape* is that completion
compiled for one selection of one type: a function from the value to the JSON-ready result,
built once per (document, selection) and reused by every request that sends the document.

A shape covers a selection only if every field in it is one of:

- ``__typename``;
- a field without arguments, resolver or extensions (its value is an attribute), of a leaf
  type (coerced by the type) or of an object type or list whose selection is covered too;
- a field without arguments or extensions whose resolver is skipped because the value is in
  the source's ``prefetched`` dict (at run time; a missing entry gives up, below).

and the document has no directives at all (so the fields collected never depend on
variables), no abstract types are involved, and the selection defers nothing.

At run time a shape gives up (``GiveUp``) on anything unusual: a missing attribute or
prefetched entry, null where the type forbids it, a value the type cannot coerce, an object
that is not of the expected type. The caller then completes the same value the normal way,
which reports any error exactly as it always did; shapes only read, so running them twice is
harmless.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from graphql import (
    DirectiveNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    Node,
    OperationDefinitionNode,
    is_leaf_type,
    visit,
)
from graphql.language import BREAK, Visitor
from graphql.pyutils import Undefined

from compat.graphql_core import FieldDetails, FragmentDetails, collect_subfields
from compat.strawberry import has_default_resolver, strawberry_field

Shape = Callable[[Any], Any]
MAX_DOCUMENTS = 512  # operations whose shapes are kept (least recently used dropped first)

_MISSING = object()


class Access(NamedTuple):
    python_name: str
    prefetched: bool  # True: read from the source's ``prefetched`` dict, when it is there


def value_access(field_def: GraphQLField | None) -> Access | None:
    """How a field's value can be read without running its resolution, or None.

    - An attribute: a Strawberry field without resolver, extensions or arguments (Strawberry's
      own resolution of it is ``getattr``).
    - A prefetched value: a field with a resolver but without extensions or arguments, whose
      source may carry the value in its ``prefetched`` dict (``schema.types.prefetch``).

    Fields with extensions (permission checks among them) or arguments always run normally.
    """
    if field_def is None or field_def.args:
        return None
    definition = strawberry_field(field_def)
    if definition is None or definition.extensions:
        return None
    if definition.base_resolver is not None:
        return Access(definition.python_name, prefetched=True)
    if has_default_resolver(field_def):
        return Access(definition.python_name, prefetched=False)
    return None


class GiveUp(Exception):
    """The value is not what the shape expects; complete it the normal way."""


class _FindDirective(Visitor):
    found = False

    def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
        self.found = True
        return BREAK


def _has_directives(nodes: Sequence[Node]) -> bool:
    for node in nodes:
        finder = _FindDirective()
        visit(node, finder)
        if finder.found:
            return True
    return False


class OperationShapes:
    """The shapes of one operation. Holds the operation (and so its nodes) alive: shapes are
    keyed by node identities, which stay unique only while the nodes live."""

    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDetails],
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = fragments
        definitions = [operation, *(f.definition for f in fragments.values())]
        self.usable = not _has_directives(definitions)
        self._shapes: dict[tuple[GraphQLOutputType, tuple[int, ...]], Shape | None] = {}
        self._variables: Any = None

    def shape(
        self, return_type: GraphQLOutputType, details: Sequence[FieldDetails], variables: Any
    ) -> Shape | None:
        """The shape completing values of ``return_type`` selected by ``details``, or None.

        ``variables`` (the executor's variable values) only satisfy graphql-core's field
        collection: with no directives in the document, the fields collected never read them.
        """
        if not self.usable:
            return None
        key = (return_type, tuple(id(d.node) for d in details))
        try:
            return self._shapes[key]
        except KeyError:
            self._variables = variables
            made = self._shapes[key] = self._compile(return_type, details)
            return made

    def _compile(self, t: GraphQLOutputType, details: Sequence[FieldDetails]) -> Shape | None:
        if isinstance(t, GraphQLNonNull):
            inner = self._compile(t.of_type, details)
            return None if inner is None else _non_null(inner)
        if isinstance(t, GraphQLList):
            inner = self._compile(t.of_type, details)
            return None if inner is None else _list(inner)
        if is_leaf_type(t):
            return _leaf(t.coerce_output_value)  # type: ignore[union-attr]
        if isinstance(t, GraphQLObjectType):
            return self._compile_object(t, details)
        return None  # interfaces and unions: the runtime type is decided per value

    def _compile_object(
        self, t: GraphQLObjectType, details: Sequence[FieldDetails]
    ) -> Shape | None:
        if any(d.defer_usage is not None or d.fragment_variable_values for d in details):
            return None
        collected = collect_subfields(
            self.schema, self.fragments, self._variables, self.operation, t, list(details)
        )
        if collected.new_defer_usages:
            return None
        fields: list[tuple[str, bool, str, Shape]] = []  # key, prefetched?, attribute, shape
        for key, field_details in collected.grouped_field_set.items():
            first = field_details[0].node
            if first.name.value == "__typename":
                fields.append((key, False, "", _constant(t.name)))
                continue
            if any(d.node.arguments for d in field_details):
                return None
            made = self._compile_field(t, first.name.value, field_details)
            if made is None:
                return None
            fields.append((key, *made))
        return _object(tuple(fields), t.is_type_of)

    def _compile_field(
        self, parent: GraphQLObjectType, name: str, details: Sequence[FieldDetails]
    ) -> tuple[bool, str, Shape] | None:
        field_def = parent.fields.get(name)
        access = value_access(field_def)
        if field_def is None or access is None:
            return None
        shape = self._compile(field_def.type, details)
        return None if shape is None else (access.prefetched, access.python_name, shape)


class ShapeCache:
    """The shapes of recently executed operations of one schema."""

    def __init__(self, schema: GraphQLSchema, max_documents: int = MAX_DOCUMENTS) -> None:
        self.schema = schema
        self.max_documents = max_documents
        self._operations: OrderedDict[int, OperationShapes] = OrderedDict()

    def for_operation(
        self, operation: OperationDefinitionNode, fragments: dict[str, FragmentDetails]
    ) -> OperationShapes:
        found = self._operations.get(id(operation))
        if found is not None and found.operation is operation:
            self._operations.move_to_end(id(operation))
            return found
        made = OperationShapes(self.schema, operation, fragments)
        self._operations[id(operation)] = made
        while len(self._operations) > self.max_documents:
            self._operations.popitem(last=False)
        return made


def _constant(value: str) -> Shape:
    return lambda _source: value


def _leaf(coerce: Callable[[Any], Any]) -> Shape:
    def complete(value: Any) -> Any:
        if value is None:
            return None
        try:
            coerced = coerce(value)
        except Exception as error:
            raise GiveUp from error
        if coerced is None or coerced is Undefined:
            raise GiveUp
        return coerced

    return complete


def _non_null(inner: Shape) -> Shape:
    def complete(value: Any) -> Any:
        if value is None:
            raise GiveUp
        return inner(value)

    return complete


def _list(inner: Shape) -> Shape:
    def complete(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise GiveUp
        return [inner(item) for item in value]

    return complete


def _object(
    fields: tuple[tuple[str, bool, str, Shape], ...],
    is_type_of: Callable[[Any, Any], Any] | None,
) -> Shape:
    def complete(source: Any) -> Any:
        if source is None:
            return None
        if is_type_of is not None:
            try:
                fits = is_type_of(source, None)
            except Exception as error:
                raise GiveUp from error
            if fits is not True:
                raise GiveUp
        result: dict[str, Any] = {}
        for key, prefetched, attribute, shape in fields:
            if not attribute:
                result[key] = shape(None)
                continue
            if prefetched:
                store = getattr(source, "prefetched", None)
                if type(store) is not dict or attribute not in store:
                    raise GiveUp
                value = store[attribute]
            else:
                value = getattr(source, attribute, _MISSING)
                if value is _MISSING:
                    raise GiveUp
            result[key] = shape(value)
        return result

    return complete
