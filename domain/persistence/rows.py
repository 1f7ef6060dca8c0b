"""Model instances from raw rows, for the read paths that load hundreds per request.

Tortoise's ``Model._init_from_db`` takes a row as keyword arguments, walks three field lists
and converts every complex value through the field's ``to_python_value``: for a page of
orders (about 260 instances of 44-column orders, lines, SKUs and products) that was the
largest single cost of the request. ``RowBuilder`` does the same work with the decisions made
once per model: the column → attribute pairs, and for each column the cheapest conversion
that gives what ``to_python_value`` gives (asserted for every model by
``tests/test_rows.py``):

- the driver's own value where Tortoise leaves it alone ("native" fields);
- the field's Python type applied to it where Tortoise does only that ("default" fields);
- for an aware datetime, ``astimezone`` to Tortoise's default time zone, which is all
  ``DatetimeField.to_python_value`` does to one;
- for a ``CharEnumField``, a dict lookup of the member by value;
- otherwise the field's own ``to_python_value``.

The instance is marked loaded from the database exactly as ``_init_from_db`` marks it, so it
can be saved, compared and related as any other.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from tortoise.fields import Field
from tortoise.fields.data import CharEnumFieldInstance, DatetimeField
from tortoise.models import Model
from tortoise.queryset import QuerySet
from tortoise.timezone import get_default_timezone, get_use_tz

from compat import tortoise as orm

M = TypeVar("M", bound=Model)
Convert = Callable[[Any], Any]


def _datetime(field: Field) -> Convert:
    if not get_use_tz():
        return field.to_python_value
    zone = get_default_timezone()
    slow = field.to_python_value

    def convert(value: Any) -> Any:
        if type(value) is datetime.datetime and value.tzinfo is not None:
            return value.astimezone(zone)
        return slow(value)

    return convert


def _enum(field: CharEnumFieldInstance) -> Convert:
    members = {member.value: member for member in field.enum_type}
    slow = field.to_python_value

    def convert(value: Any) -> Any:
        member = members.get(value)
        return member if member is not None else slow(value)

    return convert


def _converter(field: Field, kind: str) -> Convert | None:
    if kind == "native":
        return None
    if kind == "default":
        return field.field_type  # type: ignore[return-value]
    if isinstance(field, DatetimeField):
        return _datetime(field)
    if isinstance(field, CharEnumFieldInstance):
        return _enum(field)
    return field.to_python_value


class RowBuilder(Generic[M]):
    """Builds instances of ``model`` from rows keyed by its column names (every column)."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self.source = orm.model_version(model)  # the metadata this was built from
        self._loaded = orm.loaded_state(model)
        self._columns: list[tuple[str, str, Convert | None]] = [
            (column, attribute, _converter(field, kind))
            for kind, column, attribute, field in orm.columns_by_kind(model)
        ]

    def build(self, row: Mapping[str, Any], prefix: str = "") -> M:
        """An instance from ``row``; with ``prefix``, its columns are read as ``prefix + column``
        (the aliases of a joined SELECT)."""
        instance = self.model.__new__(self.model)
        values = instance.__dict__
        values.update(self._loaded)
        values["_await_when_save"] = {}  # a dict of its own per instance
        for column, attribute, convert in self._columns:
            value = row[prefix + column] if prefix else row[column]
            if convert is not None and value is not None:
                value = convert(value)
            values[attribute] = value
        return instance

    def build_all(self, rows: Iterable[Mapping[str, Any]]) -> list[M]:
        build = self.build
        return [build(row) for row in rows]


_builders: dict[type[Model], RowBuilder[Any]] = {}


def builder(model: type[M]) -> RowBuilder[M]:
    """The model's builder, made on first use (after Tortoise has initialised the model)."""
    found = _builders.get(model)
    if found is None or found.source is not orm.model_version(model):  # re-initialised
        found = _builders[model] = RowBuilder(model)
    return found


async def fetch(model: type[M], sql: str, values: list[Any] | None = None) -> list[M]:
    """Run ``sql`` (selecting every column of ``model``) and build its rows as instances."""
    _, rows = await orm.connection_of(model).execute_query(sql, values)
    return builder(model).build_all(rows)


async def fetch_query(query: QuerySet[M]) -> list[M]:
    """``await query``, for a plain query (every column of its model: no ``only``,
    ``values``, annotations or ``select_related``), with the rows built by the model's
    ``RowBuilder``."""
    db, sql, values = orm.compiled(query)
    _, rows = await db.execute_query(sql, values)
    return builder(query.model).build_all(rows)
