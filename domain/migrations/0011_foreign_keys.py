"""Foreign keys for every column that references another table's row (issue 17).

Until now 71 ``*_id`` columns were bare integers beside 18 real foreign keys. The models
declare them as ``ForeignKeyField``/``OneToOneField`` with the same columns (same names, types,
nullability and indexes), so this migration only adds constraints; no column is dropped,
re-created or retyped. One is renamed: ``withdrawal.requested_by`` becomes
``requested_by_user_id`` (as ``quote.requested_by_user_id``), because Tortoise 1.1.9's
makemigrations cannot state a relation whose column is not ``<name>_id``.

Rows whose reference points nowhere (possible: there were no constraints), checked before
anything is altered, in the same transaction as the change:

- a column whose constraint is ``ON DELETE SET NULL`` (who did something: ``actor_user_id``,
  ``resolved_by_user_id``, ``answered_by_user_id``, ``withdrawal.requested_by``) is set to NULL
  where its user does not exist, exactly what the constraint does when a user is deleted; the
  count per column is logged as a warning;
- any other column: the migration fails with an error listing, per column, how many rows point
  nowhere and some of the missing ids. Nothing is changed (it is all one transaction, and the
  migration is not recorded): repair or remove those rows and run ``migrate`` again.

PostgreSQL: ``ALTER TABLE ... ADD CONSTRAINT <table>_<column>_fkey FOREIGN KEY ...``, the name
PostgreSQL gives the foreign keys created with the tables.

SQLite cannot add a constraint to a table: each table is rebuilt by SQLite's own procedure
(https://www.sqlite.org/lang_altertable.html#otheralter): with ``PRAGMA foreign_keys`` off
(outside a transaction, hence ``atomic = False`` here and one transaction of our own), create
``new__<table>`` from the table's stored DDL with the ``FOREIGN KEY`` clauses appended, copy every
row, drop the table, rename the new one, re-create its indexes from their stored DDL, keep its
AUTOINCREMENT counter; then ``PRAGMA foreign_key_check`` must find nothing before commit.
Single statements only (``executescript`` would commit half-way). Tortoise's own table remake
would drop the tables' indexes, and with foreign keys on, dropping a parent table would cascade
into its children.

``tests/test_migrations_foreign_keys.py`` migrates a filled database from 0010 and checks that
every row is kept and the constraints hold.
"""

from __future__ import annotations

import logging
from typing import Any

from tortoise import fields, migrations
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields.base import OnDelete
from tortoise.migrations.operations import Operation
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state import State
from tortoise.transactions import in_transaction

log = logging.getLogger("supplygraph.migrations")

CASCADE, RESTRICT, SET_NULL = OnDelete.CASCADE, OnDelete.RESTRICT, OnDelete.SET_NULL


def _fk(
    model: str,
    old_name: str,
    new_name: str,
    target: str,
    on_delete: OnDelete,
    *,
    null: bool = False,
    db_index: bool = False,
    one_to_one: bool = False,
    column: str | None = None,
) -> tuple[str, str, str, Any]:
    """(model, the integer field it was, the relation it becomes, the relation field); the
    column stays ``old_name`` (``<new_name>_id``) unless ``column`` renames it."""
    kind = fields.OneToOneField if one_to_one else fields.ForeignKeyField
    field = kind(
        f"models.{target}",
        source_field=column or old_name,
        null=null,
        db_index=db_index,
        related_name=False,
        on_delete=on_delete,
    )
    return model, old_name, new_name, field


# ``Withdrawal.requested_by`` becomes ``requested_by_user_id``: Tortoise 1.1.9's makemigrations
# cannot state a relation whose column is not ``<name>_id`` (every run would alter it again).
FOREIGN_KEYS: list[tuple[str, str, str, Any]] = [
    _fk(
        "AfterSalesOrder", "connection_id", "connection", "WarehouseConnection", RESTRICT, null=True
    ),
    _fk("AfterSalesOrder", "distributor_id", "distributor", "Organisation", RESTRICT),
    _fk("AfterSalesOrder", "order_id", "order", "Order", RESTRICT, db_index=True),
    _fk("AfterSalesOrder", "supplier_id", "supplier", "Organisation", RESTRICT),
    _fk("CloudReceiptCallback", "warehouse_id", "warehouse", "CloudWarehouse", CASCADE),
    _fk("CloudWarehouse", "supplier_id", "supplier", "Organisation", RESTRICT, db_index=True),
    _fk("Depute", "opened_by_user_id", "opened_by_user", "User", RESTRICT),
    _fk("Depute", "resolved_by_user_id", "resolved_by_user", "User", SET_NULL, null=True),
    _fk(
        "DistributionSettings", "supplier_id", "supplier", "Organisation", CASCADE, one_to_one=True
    ),
    _fk(
        "DistributionWarehouse",
        "connection_id",
        "connection",
        "WarehouseConnection",
        RESTRICT,
        null=True,
    ),
    _fk(
        "DistributionWarehouse",
        "partnership_id",
        "partnership",
        "Partnership",
        CASCADE,
        db_index=True,
    ),
    _fk("Event", "actor_user_id", "actor_user", "User", SET_NULL, null=True),
    _fk("EventAudience", "organisation_id", "organisation", "Organisation", CASCADE),
    _fk("Order", "buyer_id", "buyer", "Organisation", RESTRICT),
    _fk("Order", "cloud_warehouse_id", "cloud_warehouse", "CloudWarehouse", RESTRICT, null=True),
    _fk("Order", "logistics_method_id", "logistics_method", "LogisticsMethod", RESTRICT, null=True),
    _fk("Order", "store_id", "store", "Store", RESTRICT, null=True),
    _fk("Order", "supplier_id", "supplier", "Organisation", RESTRICT, null=True),
    _fk("OrderLine", "sku_id", "sku", "Sku", RESTRICT, null=True),
    _fk(
        "OrderLine",
        "store_variant_id",
        "store_variant",
        "StoreVariant",
        RESTRICT,
        null=True,
        db_index=True,
    ),
    _fk("OrderTransition", "actor_user_id", "actor_user", "User", SET_NULL, null=True),
    _fk("Partnership", "distributor_id", "distributor", "Organisation", RESTRICT),
    _fk("Partnership", "supplier_id", "supplier", "Organisation", RESTRICT),
    _fk("Partnership", "warehouse_id", "warehouse", "DistributionWarehouse", RESTRICT, null=True),
    _fk("ProductConnection", "buyer_id", "buyer", "Organisation", CASCADE, db_index=True),
    _fk(
        "ProductConnection", "logistics_method_id", "logistics_method", "LogisticsMethod", RESTRICT
    ),
    _fk("ProductConnection", "product_id", "product", "Product", RESTRICT),
    _fk("ProductConnection", "supplier_id", "supplier", "Organisation", RESTRICT, db_index=True),
    _fk("Quote", "answered_by_user_id", "answered_by_user", "User", SET_NULL, null=True),
    _fk("Quote", "buyer_id", "buyer", "Organisation", RESTRICT),
    _fk("Quote", "product_id", "product", "Product", RESTRICT, null=True),
    _fk("Quote", "requested_by_user_id", "requested_by_user", "User", RESTRICT),
    _fk("Quote", "store_product_id", "store_product", "StoreProduct", RESTRICT),
    _fk("Quote", "supplier_id", "supplier", "Organisation", RESTRICT),
    _fk("Sku", "supplier_id", "supplier", "Organisation", CASCADE, db_index=True),
    _fk("StockItem", "buyer_id", "buyer", "Organisation", RESTRICT),
    _fk("StockItem", "sku_id", "sku", "Sku", RESTRICT),
    _fk("StockItem", "warehouse_id", "warehouse", "CloudWarehouse", RESTRICT),
    _fk("StockMovement", "actor_user_id", "actor_user", "User", SET_NULL, null=True),
    _fk("StockMovement", "order_id", "order", "Order", RESTRICT, null=True),
    _fk("StockMovement", "stock_item_id", "stock_item", "StockItem", RESTRICT),
    _fk("StockReservation", "order_id", "order", "Order", RESTRICT, db_index=True),
    _fk("StockReservation", "order_line_id", "order_line", "OrderLine", RESTRICT),
    _fk("StockReservation", "stock_item_id", "stock_item", "StockItem", RESTRICT),
    _fk("StoreVariant", "store_id", "store", "Store", CASCADE, db_index=True),
    _fk("VariantMapping", "sku_id", "sku", "Sku", RESTRICT, db_index=True),
    _fk(
        "VariantMapping",
        "store_variant_id",
        "store_variant",
        "StoreVariant",
        CASCADE,
        db_index=True,
    ),
    _fk("Wallet", "buyer_id", "buyer", "Organisation", RESTRICT),
    _fk("Wallet", "supplier_id", "supplier", "Organisation", RESTRICT),
    _fk("WalletEntry", "actor_user_id", "actor_user", "User", SET_NULL, null=True),
    _fk("WalletEntry", "order_id", "order", "Order", RESTRICT, null=True),
    _fk(
        "WarehouseAttempt",
        "after_sales_id",
        "after_sales",
        "AfterSalesOrder",
        RESTRICT,
        null=True,
        db_index=True,
    ),
    _fk("WarehouseAttempt", "order_id", "order", "Order", RESTRICT, null=True, db_index=True),
    _fk("WarehouseAttempt", "task_id", "task", "WarehouseTask", RESTRICT, db_index=True),
    _fk("WarehouseCallbackReceipt", "connection_id", "connection", "WarehouseConnection", CASCADE),
    _fk("WarehouseConnection", "supplier_id", "supplier", "Organisation", RESTRICT, db_index=True),
    _fk(
        "WarehouseOrder", "connection_id", "connection", "WarehouseConnection", RESTRICT, null=True
    ),
    _fk("WarehouseOrder", "order_id", "order", "Order", CASCADE, one_to_one=True),
    _fk("WarehouseOrder", "supplier_id", "supplier", "Organisation", RESTRICT),
    _fk("WarehouseTask", "actor_user_id", "actor_user", "User", SET_NULL, null=True),
    _fk("WarehouseTask", "after_sales_id", "after_sales", "AfterSalesOrder", RESTRICT, null=True),
    _fk("WarehouseTask", "connection_id", "connection", "WarehouseConnection", RESTRICT, null=True),
    _fk("WarehouseTask", "order_id", "order", "Order", RESTRICT, null=True),
    _fk("WarehouseTask", "withdrawal_id", "withdrawal", "Withdrawal", RESTRICT, null=True),
    _fk("WebhookReceipt", "order_id", "order", "Order", RESTRICT, null=True),
    _fk("WebhookReceipt", "store_id", "store", "Store", CASCADE),
    _fk(
        "Withdrawal",
        "after_sales_id",
        "after_sales",
        "AfterSalesOrder",
        RESTRICT,
        null=True,
        db_index=True,
    ),
    _fk("Withdrawal", "distributor_id", "distributor", "Organisation", RESTRICT),
    _fk("Withdrawal", "order_id", "order", "Order", RESTRICT, null=True, db_index=True),
    _fk(
        "Withdrawal",
        "requested_by",
        "requested_by_user",
        "User",
        SET_NULL,
        null=True,
        column="requested_by_user_id",
    ),
    _fk("Withdrawal", "supplier_id", "supplier", "Organisation", RESTRICT),
]

SHOWN = 10  # missing ids shown per column in the error


class Orphans(RuntimeError):
    """Rows reference rows that do not exist: the constraints cannot be added."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class AddForeignKeys(Operation):
    """Turns integer fields into relations in the state, and adds their constraints."""

    atomic = False  # it opens its own transaction (SQLite: after switching foreign keys off)

    def __init__(self, relations: list[tuple[str, str, str, Any]]) -> None:
        self.relations = relations

    def describe(self) -> str:
        return f"Add {len(self.relations)} foreign keys"

    def state_forward(self, app_label: str, state: State) -> None:
        from copy import deepcopy

        touched = set()
        for model_name, old_name, new_name, field in self.relations:
            model_state = state.models[(app_label, model_name)]
            model_state.fields.pop(old_name)
            model_state.fields[new_name] = deepcopy(field)
            touched.add((app_label, model_name))
            touched.add(state.apps.split_reference(field.model_name))
        state.reload_models(touched)

    def _constraints(self, app_label: str, state: State) -> dict[str, list[dict[str, str]]]:
        """Per table, its new constraints: column, referenced table and column, on delete."""
        tables: dict[str, list[dict[str, str]]] = {}
        for model_name, _, new_name, _ in self.relations:
            model = state.apps.get_model(f"{app_label}.{model_name}")
            fk = model._meta.fields_map[new_name]
            target = fk.to_field_instance
            tables.setdefault(model._meta.db_table, []).append(
                {
                    "table": model._meta.db_table,
                    "column": model._meta.fields_db_projection[fk.source_field],
                    "ref_table": fk.related_model._meta.db_table,
                    "ref_column": target.source_field or target.model_field_name,
                    "on_delete": OnDelete(fk.on_delete).value,
                }
            )
        return tables

    def _renames(self, app_label: str, before: State, after: State) -> list[tuple[str, str, str]]:
        """(table, column before, column after) of the columns this renames."""
        renames = []
        for model_name, old_name, new_name, _ in self.relations:
            old = before.apps.get_model(f"{app_label}.{model_name}")._meta
            new = after.apps.get_model(f"{app_label}.{model_name}")._meta
            old_column = old.fields_db_projection[old_name]
            new_column = new.fields_db_projection[new.fields_map[new_name].source_field]
            if old_column != new_column:
                renames.append((new.db_table, old_column, new_column))
        return renames

    async def database_forward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        if state_editor is None:
            return
        tables = self._constraints(app_label, new_state)
        renames = self._renames(app_label, old_state, new_state)
        client = state_editor.client
        if client.capabilities.dialect == "sqlite":
            await _sqlite(client, tables, renames, add=True)
        else:
            async with in_transaction(client.connection_name) as tx:
                await _rename(tx, renames)
                await _check_orphans(tx, tables)
                for table, keys in tables.items():
                    clauses = ", ".join(
                        f"ADD CONSTRAINT {_q(_name(k))} FOREIGN KEY ({_q(k['column'])}) "
                        f"REFERENCES {_q(k['ref_table'])} ({_q(k['ref_column'])}) "
                        f"ON DELETE {k['on_delete']}"
                        for k in keys
                    )
                    await tx.execute_query(f"ALTER TABLE {_q(table)} {clauses}")

    async def database_backward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        if state_editor is None:
            return
        tables = self._constraints(app_label, old_state)  # the state that has the relations
        renames = [
            (t, after, before)
            for t, before, after in self._renames(app_label, new_state, old_state)
        ]
        client = state_editor.client
        if client.capabilities.dialect == "sqlite":
            await _sqlite(client, tables, renames, add=False)
        else:
            async with in_transaction(client.connection_name) as tx:
                for table, keys in tables.items():
                    clauses = ", ".join(f"DROP CONSTRAINT {_q(_name(k))}" for k in keys)
                    await tx.execute_query(f"ALTER TABLE {_q(table)} {clauses}")
                await _rename(tx, renames)


async def _rename(db: BaseDBAsyncClient, renames: list[tuple[str, str, str]]) -> None:
    for table, before, after in renames:
        await db.execute_query(f"ALTER TABLE {_q(table)} RENAME COLUMN {_q(before)} TO {_q(after)}")


def _name(key: dict[str, str]) -> str:
    return f"{key['table']}_{key['column']}_fkey"[:63]


def _orphans_sql(key: dict[str, str]) -> str:
    return (
        f"FROM {_q(key['table'])} c WHERE c.{_q(key['column'])} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {_q(key['ref_table'])} p "
        f"WHERE p.{_q(key['ref_column'])} = c.{_q(key['column'])})"
    )


async def _check_orphans(db: BaseDBAsyncClient, tables: dict[str, list[dict[str, str]]]) -> None:
    """Fails listing the rows that point nowhere; nulls them where the key is SET NULL."""
    failures: list[str] = []
    nullable: list[dict[str, str]] = []
    for keys in tables.values():
        for key in keys:
            where = _orphans_sql(key)
            _, rows = await db.execute_query(f"SELECT COUNT(*) AS n {where}")
            count = int(dict(rows[0])["n"])
            if not count:
                continue
            if key["on_delete"] == "SET NULL":
                nullable.append(key)
                continue
            _, sample = await db.execute_query(
                f"SELECT DISTINCT c.{_q(key['column'])} AS missing {where} ORDER BY 1 LIMIT {SHOWN}"
            )
            missing = ", ".join(str(dict(r)["missing"]) for r in sample)
            failures.append(
                f"  {key['table']}.{key['column']}: {count} row(s) reference "
                f"{key['ref_table']}.{key['ref_column']} values that do not exist "
                f"(e.g. {missing})"
            )
    if failures:
        raise Orphans(
            "0011_foreign_keys: cannot add the foreign keys, rows point nowhere:\n"
            + "\n".join(failures)
            + "\nNothing was changed. Repair or remove these rows, then migrate again."
        )
    for key in nullable:
        table, column = _q(key["table"]), _q(key["column"])
        sql = (
            f"UPDATE {table} SET {column} = NULL WHERE {column} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {_q(key['ref_table'])} p "
            f"WHERE p.{_q(key['ref_column'])} = {table}.{column})"
        )
        count = await db.execute_query(sql)
        log.warning(
            "0011_foreign_keys: %s.%s set to NULL in %s row(s): the %s they named does not exist",
            key["table"],
            key["column"],
            count[0],
            key["ref_table"],
        )


def _body_end(sql: str) -> int:
    """The index of the parenthesis that closes a CREATE TABLE's column list."""
    depth, i, n = 0, 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "\"'`[":
            close = "]" if ch == "[" else ch
            i = sql.index(close, i + 1)
            while close != "]" and i + 1 < n and sql[i + 1] == close:  # doubled quote
                i = sql.index(close, i + 2)
        elif sql.startswith("/*", i):
            i = sql.index("*/", i + 2) + 1
        elif sql.startswith("--", i):
            i = sql.find("\n", i)
            i = n if i < 0 else i
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"no column list in {sql!r}")


def _clause(key: dict[str, str]) -> str:
    return (
        f", FOREIGN KEY ({_q(key['column'])}) REFERENCES {_q(key['ref_table'])} "
        f"({_q(key['ref_column'])}) ON DELETE {key['on_delete']}"
    )


async def _sqlite(
    client: BaseDBAsyncClient,
    tables: dict[str, list[dict[str, str]]],
    renames: list[tuple[str, str, str]],
    *,
    add: bool,
) -> None:
    await client.execute_script("PRAGMA foreign_keys=OFF")
    try:
        async with in_transaction(client.connection_name) as tx:
            if add:
                await _rename(tx, renames)
                await _check_orphans(tx, tables)
            for table, keys in tables.items():
                await _rebuild(tx, table, keys, add=add)
            if not add:
                await _rename(tx, renames)
            _, broken = await tx.execute_query("PRAGMA foreign_key_check")
            if broken:
                raise Orphans(f"0011_foreign_keys: foreign_key_check failed: {broken[:SHOWN]}")
    finally:
        await client.execute_script("PRAGMA foreign_keys=ON")


async def _rebuild(
    db: BaseDBAsyncClient, table: str, keys: list[dict[str, str]], *, add: bool
) -> None:
    """SQLite: ``table`` again, with ``keys``' clauses appended (``add``) or taken out."""
    _, [row] = await db.execute_query(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
    )
    ddl = dict(row)["sql"]
    _, index_rows = await db.execute_query(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        [table],
    )
    indexes = [dict(r)["sql"] for r in index_rows]
    _, has_sequence = await db.execute_query(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    )
    seq_rows: list[Any] = []
    if has_sequence:  # AUTOINCREMENT's counter, which the copy would set to the highest id
        _, seq_rows = await db.execute_query(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", [table]
        )
    _, column_rows = await db.execute_query(f"PRAGMA table_info({_q(table)})")
    columns = ", ".join(_q(dict(r)["name"]) for r in column_rows)

    start = ddl.index("(")
    end = _body_end(ddl)
    body = ddl[start + 1 : end]
    clauses = "".join(_clause(k) for k in keys)
    if add:
        body += clauses
    else:
        if not body.endswith(clauses):
            raise ValueError(f"{table}: the foreign keys of 0011 are not where it put them")
        body = body[: -len(clauses)]
    temporary = f"new__{table}"
    await db.execute_query(f"CREATE TABLE {_q(temporary)} ({body}){ddl[end + 1 :]}")
    await db.execute_query(
        f"INSERT INTO {_q(temporary)} ({columns}) SELECT {columns} FROM {_q(table)}"
    )
    await db.execute_query(f"DROP TABLE {_q(table)}")
    await db.execute_query(f"ALTER TABLE {_q(temporary)} RENAME TO {_q(table)}")
    for index in indexes:
        await db.execute_query(index)
    if seq_rows:
        await db.execute_query(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", [dict(seq_rows[0])["seq"], table]
        )


class Migration(migrations.Migration):
    dependencies = [("models", "0010_outbox_claim")]

    initial = False
    atomic = False  # see AddForeignKeys: SQLite's foreign keys go off outside a transaction

    operations = [AddForeignKeys(FOREIGN_KEYS)]
