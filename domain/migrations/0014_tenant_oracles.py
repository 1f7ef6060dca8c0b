"""No cross-tenant oracles (issue 19; ``tests/test_tenant_oracles.py``):

- ``user.email`` is unique within its organisation only: the column's own UNIQUE goes, a unique
  constraint on ``(email, organisation_id)`` comes (``User.Meta.unique_together``). A
  platform-wide unique e-mail told one tenant, through ``addUser``'s ALREADY_EXISTS, which
  addresses other tenants use, and let it squat an address another tenant would need. E-mail
  first, so the operator's look-ups by e-mail alone (``create-token``) are served by it too.
- ``supply_order`` gets an index on ``(supplier_id, buyer_id)``, which ``domain.trading``'s
  "do these two trade?" (asked by ``topUpWallet``) seeks.

Names are Tortoise 1.1.9's (``uid_``/``idx_`` + table + first column + hash, frozen below), so a
later migration that drops them by the name Tortoise derives finds them.

PostgreSQL, in one transaction: drop the unique constraint on ``email`` alone (found by its
column: ``user_email_key`` since 0001), add ``uid_user_email_…``, create the index.

SQLite cannot drop a column's UNIQUE: the ``user`` table is rebuilt by SQLite's own procedure,
as 0011 does (https://www.sqlite.org/lang_altertable.html#otheralter): with ``PRAGMA
foreign_keys`` off (outside a transaction, hence ``atomic = False`` here and one transaction of
our own), create ``new__user`` from the stored DDL without the UNIQUE, copy every row, drop
``user``, rename, re-create its indexes from their stored DDL, keep its AUTOINCREMENT counter;
``PRAGMA foreign_key_check`` must find nothing before commit. Tortoise's own table remake would
drop the table's indexes and, with foreign keys on, dropping ``user`` would delete every API
token and null every ``actor_user_id``.

Back: refused, with nothing changed, while an e-mail is used in more than one organisation (the
error lists how many and some of them: give those users other addresses, or remove them, and
migrate back again); otherwise everything is as 0013 left it, names included
(``tests/test_migrations_tenant_oracles.py`` goes both ways on a filled database, on both
engines).
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any

from tortoise import fields, migrations
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.indexes import Index
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint
from tortoise.migrations.operations import Operation
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state import State
from tortoise.transactions import in_transaction

USER = "user"
EMAIL_COLUMN = '"email" VARCHAR(254) NOT NULL'  # as 0001 wrote it, with " UNIQUE" after it
PER_ORGANISATION = ["email", "organisation_id"]
ORDERS = "supply_order"
TRADING = ["supplier_id", "buyer_id"]
POSTGRES_EMAIL_KEY = "user_email_key"  # the name PostgreSQL gave 0001's column constraint
SHOWN = 10  # e-mails shown in the error


class SharedEmails(RuntimeError):
    """Migrating back: an e-mail is used in more than one organisation."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _index_name(prefix: str, table: str, columns: list[str]) -> str:
    """The name Tortoise 1.1.9 gives an index or unique constraint (``_generate_index_name``)."""
    digest = sha256(";".join([table, *columns]).encode()).hexdigest()[:6]
    return f"{prefix}_{table[:11]}_{columns[0][:7]}_{digest}"


UNIQUE_NAME = _index_name("uid", USER, PER_ORGANISATION)
INDEX_NAME = _index_name("idx", ORDERS, TRADING)

# What the models say now, for the migration state (makemigrations wrote these three).
STATE = [
    ops.AddIndex(model_name="Order", index=Index(fields=TRADING)),
    ops.AlterField(model_name="User", name="email", field=fields.CharField(max_length=254)),
    ops.AddConstraint(
        model_name="User", constraint=UniqueConstraint(fields=tuple(PER_ORGANISATION), name=None)
    ),
]


async def _rows(db: BaseDBAsyncClient, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in (await db.execute_query(sql, list(args)))[1]]


async def _refuse_shared_emails(db: BaseDBAsyncClient) -> None:
    shared = await _rows(
        db,
        f"SELECT email, COUNT(*) AS n FROM {_q(USER)} GROUP BY email HAVING COUNT(*) > 1 "
        f"ORDER BY email LIMIT {SHOWN + 1}",
    )
    if shared:
        listed = ", ".join(f"{r['email']} ({r['n']} organisations)" for r in shared[:SHOWN])
        more = " and more" if len(shared) > SHOWN else ""
        raise SharedEmails(
            "0014_tenant_oracles: cannot migrate back, e-mails are used in more than one "
            f"organisation: {listed}{more}.\nNothing was changed. Give those users other "
            "addresses (or remove them), then migrate back again."
        )


async def _postgres(db: BaseDBAsyncClient, *, forward: bool) -> None:
    async with in_transaction(db.connection_name) as tx:
        if forward:
            own = await _rows(
                tx,
                "SELECT c.conname AS name FROM pg_constraint c "
                "JOIN pg_class t ON t.oid = c.conrelid "
                "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
                "WHERE c.contype = 'u' AND t.relname = $1 AND cardinality(c.conkey) = 1 "
                "AND a.attname = 'email' AND t.relnamespace = current_schema()::regnamespace",
                USER,
            )
            for row in own:
                await tx.execute_query(f"ALTER TABLE {_q(USER)} DROP CONSTRAINT {_q(row['name'])}")
            listed = ", ".join(_q(c) for c in PER_ORGANISATION)
            await tx.execute_query(
                f"ALTER TABLE {_q(USER)} ADD CONSTRAINT {_q(UNIQUE_NAME)} UNIQUE ({listed})"
            )
            trading = ", ".join(_q(c) for c in TRADING)
            await tx.execute_query(f"CREATE INDEX {_q(INDEX_NAME)} ON {_q(ORDERS)} ({trading})")
        else:
            await _refuse_shared_emails(tx)
            await tx.execute_query(f"DROP INDEX {_q(INDEX_NAME)}")
            await tx.execute_query(f"ALTER TABLE {_q(USER)} DROP CONSTRAINT {_q(UNIQUE_NAME)}")
            await tx.execute_query(
                f"ALTER TABLE {_q(USER)} ADD CONSTRAINT {_q(POSTGRES_EMAIL_KEY)} UNIQUE (email)"
            )


async def _sqlite(db: BaseDBAsyncClient, *, forward: bool) -> None:
    await db.execute_script("PRAGMA foreign_keys=OFF")
    try:
        async with in_transaction(db.connection_name) as tx:
            if forward:
                await _rebuild_user(tx, unique_email=False)
                listed = ", ".join(_q(c) for c in PER_ORGANISATION)
                await tx.execute_query(
                    f"CREATE UNIQUE INDEX {_q(UNIQUE_NAME)} ON {_q(USER)} ({listed})"
                )
                trading = ", ".join(_q(c) for c in TRADING)
                await tx.execute_query(f"CREATE INDEX {_q(INDEX_NAME)} ON {_q(ORDERS)} ({trading})")
            else:
                await _refuse_shared_emails(tx)
                await tx.execute_query(f"DROP INDEX {_q(INDEX_NAME)}")
                await tx.execute_query(f"DROP INDEX {_q(UNIQUE_NAME)}")
                await _rebuild_user(tx, unique_email=True)
            broken = await _rows(tx, "PRAGMA foreign_key_check")
            if broken:
                raise RuntimeError(f"0014_tenant_oracles: foreign_key_check failed: {broken[:10]}")
    finally:
        await db.execute_script("PRAGMA foreign_keys=ON")


async def _rebuild_user(db: BaseDBAsyncClient, *, unique_email: bool) -> None:
    """SQLite: the ``user`` table again, its ``email`` column with or without UNIQUE."""
    [row] = await _rows(db, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", USER)
    ddl: str = row["sql"]
    unique, plain = f"{EMAIL_COLUMN} UNIQUE,", f"{EMAIL_COLUMN},"
    before, after = (plain, unique) if unique_email else (unique, plain)
    if ddl.count(before) != 1:
        raise RuntimeError(f"0014_tenant_oracles: the user table's e-mail is not {before!r}")
    indexes = [
        r["sql"]
        for r in await _rows(
            db,
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            USER,
        )
    ]
    [sequence] = await _rows(db, "SELECT seq FROM sqlite_sequence WHERE name = ?", USER) or [None]
    columns = ", ".join(_q(r["name"]) for r in await _rows(db, f"PRAGMA table_info({_q(USER)})"))
    temporary = f"new__{USER}"
    rebuilt = ddl.replace(before, after).replace(_q(USER), _q(temporary), 1)
    await db.execute_query(rebuilt)
    await db.execute_query(
        f"INSERT INTO {_q(temporary)} ({columns}) SELECT {columns} FROM {_q(USER)}"
    )
    await db.execute_query(f"DROP TABLE {_q(USER)}")
    await db.execute_query(f"ALTER TABLE {_q(temporary)} RENAME TO {_q(USER)}")
    for index in indexes:
        await db.execute_query(index)
    if sequence is not None:  # AUTOINCREMENT's counter, which the copy set to the highest id
        await db.execute_query(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", [sequence["seq"], USER]
        )


class EmailPerOrganisation(Operation):
    """The state of ``STATE``; the database changed by hand on both engines (see above)."""

    atomic = False  # it opens its own transaction (SQLite: after switching foreign keys off)

    def describe(self) -> str:
        return "User e-mails unique per organisation; index orders by supplier and buyer"

    def state_forward(self, app_label: str, state: State) -> None:
        for operation in STATE:
            operation.state_forward(app_label, state)

    async def _run(self, state_editor: BaseSchemaEditor | None, *, forward: bool) -> None:
        if state_editor is None:
            return
        db = state_editor.client
        if db.capabilities.dialect == "postgres":
            await _postgres(db, forward=forward)
        else:
            await _sqlite(db, forward=forward)

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
    dependencies = [("models", "0013_sla")]

    initial = False
    atomic = False  # see EmailPerOrganisation: SQLite's foreign keys go off outside a transaction

    operations = [EmailPerOrganisation()]
