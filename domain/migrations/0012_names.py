"""Names that say what they hold (issue 17): "connection" meant a store-product link, a
third-party warehouse, a WebSocket and a page of a list. The first two get their own names.

- Models and tables: ``ProductConnection`` (``product_connection``) is ``ProductLink``
  (``product_link``); ``WarehouseConnection`` (``warehouse_connection``) is
  ``ThirdPartyWarehouse`` (``third_party_warehouse``).
- Columns: ``variant_mapping.connection_id`` is ``product_link_id``; ``connection_id`` is
  ``third_party_warehouse_id`` on ``distribution_warehouse``, ``warehouse_order``,
  ``after_sales_order``, ``warehouse_task`` and ``warehouse_callback_receipt``.
- Stored values: event types ``CONNECTION_STALE`` and ``PRODUCT_CONNECTION_UPDATED`` are
  ``PRODUCT_LINK_STALE`` and ``PRODUCT_LINK_UPDATED``, those events' payload key ``connectionId``
  is ``productLinkId`` and their subject type ``ProductConnection`` is ``ProductLink``; order
  lines' source ``PRODUCT_CONNECTION`` is ``PRODUCT_LINK``.

Index names follow, so a database migrated here has the names a new one gets, and a later
migration that drops an index by the name Tortoise derives from the table and columns finds
it: ``idx_``/``uid_`` indexes (PostgreSQL: ``ALTER INDEX ... RENAME``; SQLite: dropped and
re-created), and on PostgreSQL the ``<table>_pkey`` and ``<table>_<column>_fkey`` constraints
and the ``<table>_id_seq`` sequences. SQLite keeps a unique constraint written inside its
table's DDL (``warehouse_callback_receipt``'s) under its old name: Tortoise finds such a
constraint by its columns, never by its name.

Everything is undone by migrating back (``tests/test_migrations_names.py`` goes both ways on a
filled database, on both engines).
"""

from __future__ import annotations

from copy import deepcopy
from hashlib import sha256

from tortoise import migrations
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.migrations.operations import Operation
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state import State

# (model before, model after, table before, table after)
TABLES = [
    ("ProductConnection", "ProductLink", "product_connection", "product_link"),
    ("WarehouseConnection", "ThirdPartyWarehouse", "warehouse_connection", "third_party_warehouse"),
]
# (model, table, relation before, relation after): the column is the relation's name + _id
REFERENCES = [
    ("VariantMapping", "variant_mapping", "connection", "product_link"),
    ("DistributionWarehouse", "distribution_warehouse", "connection", "third_party_warehouse"),
    ("WarehouseOrder", "warehouse_order", "connection", "third_party_warehouse"),
    ("AfterSalesOrder", "after_sales_order", "connection", "third_party_warehouse"),
    ("WarehouseTask", "warehouse_task", "connection", "third_party_warehouse"),
    (
        "WarehouseCallbackReceipt",
        "warehouse_callback_receipt",
        "connection",
        "third_party_warehouse",
    ),
]
# (table, column, value before, value after)
VALUES = [
    ("event", "type", "CONNECTION_STALE", "PRODUCT_LINK_STALE"),
    ("event", "type", "PRODUCT_CONNECTION_UPDATED", "PRODUCT_LINK_UPDATED"),
    ("event", "subject_type", "ProductConnection", "ProductLink"),
    ("order_line", "source", "PRODUCT_CONNECTION", "PRODUCT_LINK"),
]
# the payload key of the two event types above
PAYLOAD_KEY = ("connectionId", "productLinkId")
# order_line.source's description (Tortoise lists an enum's members in it): state only
LINE_SOURCE = "UNMAPPED: UNMAPPED\nPRODUCT_LINK: PRODUCT_LINK\nORDER_SKU: ORDER_SKU\nDIRECT: DIRECT"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _index_name(prefix: str, table: str, columns: list[str]) -> str:
    """The name Tortoise 1.1.9 gives an index (``_generate_index_name_for_table``), frozen
    here as the names this migration renames from and to."""
    digest = sha256(";".join([table, *columns]).encode()).hexdigest()[:6]
    return f"{prefix}_{table[:11]}_{columns[0][:7]}_{digest}"


class Renames:
    """The renames in one direction: ``forward`` True from the old names to the new ones."""

    def __init__(self, forward: bool) -> None:
        self.forward = forward

    def pair(self, before: str, after: str) -> tuple[str, str]:
        return (before, after) if self.forward else (after, before)

    def tables(self) -> list[tuple[str, str]]:
        return [self.pair(old, new) for _, _, old, new in TABLES]

    def table_now(self, table: str) -> str:
        """``table``'s name once the tables are renamed (in this direction)."""
        return dict(self.tables()).get(table, table)

    def columns(self) -> list[tuple[str, str, str]]:
        """(table, column from, column to), tables by their name after the table renames."""
        return [
            (self.table_now(table), *self.pair(f"{old}_id", f"{new}_id"))
            for _, table, old, new in REFERENCES
        ]

    def touched(self) -> list[tuple[str, str]]:
        """(table before, table after) of every table whose index names may change."""
        renamed = self.tables()
        others = [(table, table) for _, table, _, _ in REFERENCES]
        return renamed + [t for t in others if t[0] not in dict(renamed)]

    def column_before(self, table_after: str, column: str) -> str:
        for table, before, after in self.columns():
            if table == table_after and column == after:
                return before
        return column


async def _rows(db: BaseDBAsyncClient, sql: str, *args: object) -> list[dict]:
    return [dict(r) for r in (await db.execute_query(sql, list(args)))[1]]


async def _indexes(db: BaseDBAsyncClient, table: str) -> list[tuple[str, bool, list[str]]]:
    """(name, unique, columns) of the named, non-primary indexes of ``table``."""
    if db.capabilities.dialect == "postgres":
        rows = await _rows(
            db,
            "SELECT i.relname AS name, x.indisunique AS uniq, "
            "ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(n, o) "
            "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n "
            "ORDER BY k.o) AS cols "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid "
            "WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace "
            "AND NOT x.indisprimary",
            table,
        )
        return [(r["name"], r["uniq"], list(r["cols"])) for r in rows]
    found = []
    rows = await _rows(
        db,
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL",
        table,
    )
    for r in rows:
        columns = [c["name"] for c in await _rows(db, f"PRAGMA index_info({_q(r['name'])})")]
        found.append((r["name"], r["sql"].lstrip().upper().startswith("CREATE UNIQUE"), columns))
    return found


async def _rename_indexes(db: BaseDBAsyncClient, renames: Renames) -> None:
    postgres = db.capabilities.dialect == "postgres"
    for before, after in renames.touched():
        for name, unique, columns in await _indexes(db, after):
            columns_before = [renames.column_before(after, c) for c in columns]
            for prefix in ("idx", "uid"):
                if name != _index_name(prefix, before, columns_before):
                    continue
                new_name = _index_name(prefix, after, columns)
                if new_name == name:
                    continue
                if postgres:
                    await db.execute_query(f"ALTER INDEX {_q(name)} RENAME TO {_q(new_name)}")
                else:
                    listed = ", ".join(_q(c) for c in columns)
                    kind = "UNIQUE INDEX" if unique else "INDEX"
                    await db.execute_query(f"DROP INDEX {_q(name)}")
                    await db.execute_query(
                        f"CREATE {kind} {_q(new_name)} ON {_q(after)} ({listed})"
                    )


async def _rename_postgres_constraints(db: BaseDBAsyncClient, renames: Renames) -> None:
    """Primary keys, their sequences and foreign keys carry their table's (and column's) name."""
    for before, after in renames.tables():
        await db.execute_query(
            f"ALTER INDEX {_q(before + '_pkey')} RENAME TO {_q(after + '_pkey')}"
        )
        await db.execute_query(
            f"ALTER SEQUENCE {_q(before + '_id_seq')} RENAME TO {_q(after + '_id_seq')}"
        )
    tables = {after for _, after in renames.touched()}
    rows = await _rows(
        db,
        "SELECT c.conname AS name, t.relname AS tbl, a.attname AS col "
        "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE c.contype = 'f' AND t.relnamespace = current_schema()::regnamespace",
    )
    before_of = {after: before for before, after in renames.touched()}
    for r in rows:
        if r["tbl"] not in tables:
            continue
        old = f"{before_of[r['tbl']]}_{renames.column_before(r['tbl'], r['col'])}_fkey"
        new = f"{r['tbl']}_{r['col']}_fkey"
        if r["name"] == old and old != new:
            await db.execute_query(
                f"ALTER TABLE {_q(r['tbl'])} RENAME CONSTRAINT {_q(old)} TO {_q(new)}"
            )


async def _rename_values(db: BaseDBAsyncClient, renames: Renames) -> None:
    postgres = db.capabilities.dialect == "postgres"

    def p(n: int) -> str:
        return f"${n}" if postgres else "?"

    for table, column, before, after in VALUES:
        old, new = renames.pair(before, after)
        await db.execute_query(
            f"UPDATE {_q(table)} SET {_q(column)} = {p(1)} WHERE {_q(column)} = {p(2)}", [new, old]
        )
    # the events whose payload has the key, by the type they have now (renamed just above)
    types = [renames.pair(b, a)[1] for table, column, b, a in VALUES if column == "type"]
    listed = ", ".join(p(i + 1) for i in range(len(types)))
    old_key, new_key = renames.pair(*PAYLOAD_KEY)
    if postgres:
        sql = (
            f"UPDATE event SET payload = (payload - '{old_key}') || "
            f"jsonb_build_object('{new_key}', payload -> '{old_key}') "
            f"WHERE type IN ({listed}) AND payload ? '{old_key}'"
        )
    else:
        sql = (
            f"UPDATE event SET payload = json_remove(json_set(payload, '$.{new_key}', "
            f"json_extract(payload, '$.{old_key}')), '$.{old_key}') "
            f"WHERE type IN ({listed}) AND json_extract(payload, '$.{old_key}') IS NOT NULL"
        )
    await db.execute_query(sql, types)


class Rename(Operation):
    """Tables, relation columns, index and constraint names, and stored values, both ways."""

    def describe(self) -> str:
        return (
            "Rename product and warehouse connections to product links and third-party warehouses"
        )

    def state_forward(self, app_label: str, state: State) -> None:
        # Tortoise 1.1.9's RenameModel re-renders only the renamed model, so a model holding a
        # backward relation to it (StoreProduct.connections) keeps it and the next render
        # fails as a duplicate: here every model related to the old one is rendered again.
        touched: set[tuple[str, str]] = set()
        for old_name, new_name, _, table in TABLES:
            touched |= state._find_related_models(app_label, old_name)
            touched.discard((app_label, old_name))
            touched.add((app_label, new_name))
            model_state = state.models.pop((app_label, old_name))
            state.apps.unregister_model(app_label, old_name)
            model_state.name = new_name
            model_state.table = table
            model_state.options["table"] = table
            state.models[(app_label, new_name)] = model_state
            for other in state.models.values():
                for name, field in list(other.fields.items()):
                    if getattr(field, "model_name", None) == f"{app_label}.{old_name}":
                        field = deepcopy(field)
                        field.model_name = f"{app_label}.{new_name}"
                        other.fields[name] = field
        for model_name, _, old, new in REFERENCES:
            model_state = state.models[(app_label, model_name)]
            field = deepcopy(model_state.fields.pop(old))
            field.source_field = f"{new}_id"
            model_state.fields[new] = field
            unique = model_state.options.get("unique_together")
            if unique:
                model_state.options["unique_together"] = tuple(
                    tuple(f"{new}_id" if c == f"{old}_id" else c for c in group) for group in unique
                )
            touched.add((app_label, model_name))
            touched.add(state.apps.split_reference(field.model_name))
        # the store product's links, by their new name (``store_product.product_links``)
        link = state.models[(app_label, "ProductLink")]
        link.fields["store_product"] = deepcopy(link.fields["store_product"])
        link.fields["store_product"].related_name = "product_links"
        touched.add((app_label, "StoreProduct"))
        line = state.models[(app_label, "OrderLine")]
        line.fields["source"] = deepcopy(line.fields["source"])
        line.fields["source"].description = LINE_SOURCE
        touched.add((app_label, "OrderLine"))
        state.reload_models(touched)

    async def _run(self, state_editor: BaseSchemaEditor | None, forward: bool) -> None:
        if state_editor is None:
            return
        db = state_editor.client
        renames = Renames(forward)
        for before, after in renames.tables():
            await db.execute_query(f"ALTER TABLE {_q(before)} RENAME TO {_q(after)}")
        for table, before, after in renames.columns():
            await db.execute_query(
                f"ALTER TABLE {_q(table)} RENAME COLUMN {_q(before)} TO {_q(after)}"
            )
        await _rename_indexes(db, renames)
        if db.capabilities.dialect == "postgres":
            await _rename_postgres_constraints(db, renames)
        await _rename_values(db, renames)

    async def database_forward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        await self._run(state_editor, forward=True)

    async def database_backward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        await self._run(state_editor, forward=False)


class Migration(migrations.Migration):
    dependencies = [("models", "0011_foreign_keys")]

    initial = False

    operations = [
        Rename(),
    ]
