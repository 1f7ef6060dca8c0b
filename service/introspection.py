"""Introspection for authenticated callers only (unless ``INTROSPECTION=open`` or ``DEBUG``).

The schema is not secret (``schema.graphql`` is in the repository), but an anonymous caller
has no use for it beyond mapping the API for an attack, and a 2,900-field introspection
document costs the server real work. A request without a valid token that asks for
``__schema`` or ``__type`` is refused before validation with one ``UNAUTHENTICATED`` error;
``__typename`` stays open (clients such as Apollo add it everywhere).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from graphql import (
    DefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension

from resolvers.context import Context

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
MESSAGE = "Introspection needs a valid token (Authorization: Bearer <token>)."


class IntrospectionForAuthenticated(SchemaExtension):
    """Refuses ``__schema`` and ``__type`` to a caller without a viewer."""

    def on_validate(self) -> Iterator[None]:  # type: ignore[override]
        ctx = self.execution_context
        context = ctx.context
        if (
            isinstance(context, Context)
            and context.viewer is None
            and ctx.graphql_document is not None
            and _introspects(ctx.graphql_document.definitions)
        ):
            ctx.pre_execution_errors = [
                GraphQLError(MESSAGE, extensions={"code": "UNAUTHENTICATED"})
            ]
        yield


def _introspects(definitions: Sequence[DefinitionNode]) -> bool:
    """Whether any operation selects ``__schema`` or ``__type`` at its root (the only place
    they are valid; fragments spread at the root are followed)."""
    fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
    followed: set[str] = set()

    def selects(selection_set: SelectionSetNode) -> bool:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                found = selection.name.value in INTROSPECTION_FIELDS
            elif isinstance(selection, InlineFragmentNode):
                found = selects(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                found = name not in followed and fragment is not None
                followed.add(name)
                found = found and selects(fragment.selection_set)  # type: ignore[union-attr]
            else:
                found = False
            if found:
                return True
        return False

    return any(
        isinstance(d, OperationDefinitionNode) and selects(d.selection_set) for d in definitions
    )
