"""Rows inserted without building model instances, for the write paths that insert hundreds at
once (``domain.persistence.intake``).

Tortoise's ``Model.__init__`` validates and converts every field of every instance: for a batch
of store orders (an order, its lines and its timeline entry each) it was most of the cost of
taking an order in. A ``Row`` here gives some attributes of a model; ``Layout`` writes it with
the decisions made once per model, as ``domain.persistence.rows`` reads with them:

- every column but the generated key, in one fixed order;
- a column the row leaves out gets the model's default (``default``, called if callable;
  ``auto_now``/``auto_now_add``: the statement's time);
- each value is converted as ``field.to_db_value`` converts it (validators included), with the
  cheap cases decided once per column: a ``str`` within a character column's length, an ``int``
  for an integer column, a member of an enum column's enum (checked against ``to_db_value`` for
  every model written by ``tests/test_store_inbox_batch.py``).

On PostgreSQL a table's rows travel as one array per column (``unnest``): a statement's text is the
same whatever the number of rows, so the driver's prepared statement is reused. Character
columns travel as ``text`` (a value too long fails on the column rather than being cut short by
a cast) and JSON as its text, cast in the ``SELECT``. On SQLite rows go as ``VALUES`` lists, as
many a statement as its parameters allow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.fields import BigIntField, CharField, Field, IntField
from tortoise.fields.data import CharEnumFieldInstance
from tortoise.models import Model
from tortoise.validators import MaxLengthValidator

from compat import tortoise as orm

Row = Mapping[str, Any]  # attribute → value; attributes left out take the model's default

# the element type of a PostgreSQL array parameter, by the base of the field's column type;
# character columns travel as text, so that a value too long fails on the column, not cut short
ARRAY_TYPES = {
    "VARCHAR": "text",
    "CHAR": "text",
    "TEXT": "text",
    "SMALLINT": "smallint",
    "INT": "integer",
    "BIGINT": "bigint",
    "DECIMAL": "numeric",
    "BOOL": "boolean",
    "TIMESTAMPTZ": "timestamptz",
    "DATE": "date",
    "JSONB": "text",  # the ORM's JSON text, cast in the SELECT
}
SQLITE_PARAMETERS = 30_000  # below SQLite's 32,766 parameters a statement
_MISSING = object()


def _default_of(field: Field) -> Callable[[datetime], Any]:
    """The value a column gets when a row leaves its attribute out, given the statement's time."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda now: now
    default = field.default
    if callable(default):
        return lambda now: default()
    return lambda now: default


def _writer(field: Field) -> Callable[[Any], Any]:
    """``field.to_db_value`` of a value that is not None, the cheap cases decided once."""

    def slow(value: Any) -> Any:
        return field.to_db_value(value, None)

    if isinstance(field, CharEnumFieldInstance):
        enum_type = field.enum_type
        return lambda value: value.value if type(value) is enum_type else slow(value)
    only_length = all(isinstance(v, MaxLengthValidator) for v in field.validators)
    if type(field) is CharField and only_length:
        limit = field.max_length
        return lambda value: value if type(value) is str and len(value) <= limit else slow(value)
    if type(field) in (IntField, BigIntField) and not field.validators:
        return lambda value: value if type(value) is int else slow(value)
    return slow


@dataclass(frozen=True)
class _Column:
    name: str
    attribute: str
    default: Callable[[datetime], Any]
    write: Callable[[Any], Any]  # a value (not None) as the ORM writes it
    array_type: str  # PostgreSQL: the element type of its array parameter
    cast: str  # PostgreSQL: the cast of its element in the SELECT


@dataclass(frozen=True)
class Layout:
    """How rows of one model are written: every column but the generated key."""

    model: type[Model]
    source: object  # ``orm.model_version`` when this was built
    columns: tuple[_Column, ...]

    def values(self, row: Row, now: datetime) -> list[Any]:
        """The column values of ``row`` as the ORM writes them, defaults filled in."""
        out = []
        for column in self.columns:
            value = row.get(column.attribute, _MISSING)
            if value is _MISSING:
                value = column.default(now)
            out.append(None if value is None else column.write(value))
        return out

    def arrays(self, rows: Sequence[Row], now: datetime) -> list[list[Any]]:
        """PostgreSQL: the values of ``rows`` as one list per column (the ``unnest`` arrays)."""
        if not rows:
            return [[] for _ in self.columns]
        return [list(c) for c in zip(*(self.values(r, now) for r in rows), strict=True)]

    def unnest_insert(self, first: int) -> str:
        """PostgreSQL: ``INSERT`` of the rows given as arrays ``$first`` … one per column."""
        names = ", ".join(f'"{c.name}"' for c in self.columns)
        arrays = ", ".join(f"${first + i}::{c.array_type}[]" for i, c in enumerate(self.columns))
        selected = ", ".join(f'u."{c.name}"{c.cast}' for c in self.columns)
        return (
            f'INSERT INTO "{orm.table(self.model)}" ({names}) '
            f"SELECT {selected} FROM unnest({arrays}) AS u({names})"
        )

    def values_insert(self, rows: int) -> str:
        """SQLite: ``INSERT`` of ``rows`` rows of ``?`` parameters."""
        names = ", ".join(f'"{c.name}"' for c in self.columns)
        row = "(" + ",".join("?" * len(self.columns)) + ")"
        return f'INSERT INTO "{orm.table(self.model)}" ({names}) VALUES ' + ",".join([row] * rows)

    def chunks(self, rows: Sequence[Row]) -> list[Sequence[Row]]:
        """SQLite: ``rows`` in runs that fit a statement's parameters."""
        size = max(1, SQLITE_PARAMETERS // len(self.columns))
        return [rows[i : i + size] for i in range(0, len(rows), size)]

    def sqlite_inserts(self, rows: Sequence[Row], now: datetime) -> list[tuple[str, list[Any]]]:
        """SQLite: the statements (with their parameters) that insert ``rows``."""
        return [
            (self.values_insert(len(chunk)), [v for row in chunk for v in self.values(row, now)])
            for chunk in self.chunks(rows)
        ]


_layouts: dict[type[Model], Layout] = {}


def layout(model: type[Model]) -> Layout:
    found = _layouts.get(model)
    if found is not None and found.source is orm.model_version(model):
        return found
    columns = []
    for _, name, attribute, field in orm.columns_by_kind(model):
        if field.generated:
            continue
        sql_type = str(field.get_for_dialect("postgres", "SQL_TYPE"))
        base = sql_type.split("(")[0].strip().upper()
        if base not in ARRAY_TYPES:
            raise ValueError(f"{model.__name__}.{attribute}: no array type for {sql_type}")
        cast = "::jsonb" if base == "JSONB" else ""
        columns.append(
            _Column(name, attribute, _default_of(field), _writer(field), ARRAY_TYPES[base], cast)
        )
    layout = _layouts[model] = Layout(model, orm.model_version(model), tuple(columns))
    return layout
