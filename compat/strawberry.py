"""strawberry-graphql: internals the schema's fast paths and the live protocol build on.

- ``StrawberryGraphQLCoreExecutionContext``: the base of ``schema.execution``'s context.
- ``SchemaExtensionsRunner`` and ``Schema.create_extensions_runner``: replaced by
  ``schema.extension_runner``'s lean runner.
- A GraphQL field's Strawberry definition (``GraphQLCoreConverter.DEFINITION_BACKREF``) and
  Strawberry's marker on its default resolver (``_is_default``), read by ``schema.shapes``.
- ``await_maybe``, ``is_same_origin``, ``PreExecutionError``, ``CannotGetOperationTypeError``:
  helpers and exceptions the live protocol uses as Strawberry's own handlers do.
"""

from __future__ import annotations

import inspect
from typing import Any

import strawberry
from graphql import GraphQLField, GraphQLSchema
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.http.websocket_origin import is_same_origin
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.execution import PreExecutionError
from strawberry.types.field import StrawberryField
from strawberry.utils.await_maybe import await_maybe

PACKAGE = "strawberry-graphql"
TESTED_WITH = "0.341.2"

__all__ = [
    "CannotGetOperationTypeError",
    "PreExecutionError",
    "SchemaExtensionsRunner",
    "StrawberryField",
    "StrawberryGraphQLCoreExecutionContext",
    "await_maybe",
    "core_schema",
    "has_default_resolver",
    "is_same_origin",
    "probe",
    "strawberry_field",
]


def strawberry_field(field_def: GraphQLField) -> StrawberryField | None:
    """The Strawberry definition behind a graphql-core field, if it has one."""
    found = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return found if isinstance(found, StrawberryField) else None


def core_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema Strawberry built."""
    return schema._schema


def has_default_resolver(field_def: GraphQLField) -> bool:
    """Strawberry resolves the field with its default attribute read."""
    return bool(getattr(field_def.resolve, "_is_default", False))


def probe(schema: strawberry.Schema) -> None:
    """Check each internal on a built ``schema``; raise if one moved."""
    runner = inspect.signature(strawberry.Schema.create_extensions_runner).parameters
    assert tuple(runner) == ("self", "execution_context", "extensions"), tuple(runner)
    for hook in ("on_stream_result", "get_extensions_results"):
        assert hasattr(SchemaExtensionsRunner, hook), f"SchemaExtensionsRunner.{hook} is gone"
    assert hasattr(StrawberryGraphQLCoreExecutionContext, "build_per_event_executor")
    fields: list[Any] = [
        f for t in core_schema(schema).type_map.values() for f in getattr(t, "fields", {}).values()
    ]
    definitions = [strawberry_field(f) for f in fields]
    assert any(d is not None for d in definitions), "no field carries its Strawberry definition"
    assert any(has_default_resolver(f) for f in fields), "no field has the default resolver"
    for definition in filter(None, definitions):
        for attribute in ("python_name", "base_resolver", "extensions"):
            assert hasattr(definition, attribute), f"StrawberryField.{attribute} is gone"
    assert callable(await_maybe) and callable(is_same_origin)
    assert isinstance(PreExecutionError, type)
    assert issubclass(CannotGetOperationTypeError, Exception)
