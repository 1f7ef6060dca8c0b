"""PostgreSQL: work written by another process wakes the background loops (issue 20).

Statement-level triggers ``pg_notify('supplygraph_work', kind)`` after writes to the work
tables, and every served instance LISTENs on that channel (``integrations.wakeups``):

| table | written | kind |
| --- | --- | --- |
| ``event`` (the outbox) | INSERT | ``outbox`` |
| ``webhook_receipt`` (the store inbox) | INSERT, UPDATE | ``inbox`` |
| ``warehouse_task`` | INSERT, UPDATE | ``warehouse_task`` |
| ``supply_order`` | INSERT, UPDATE OF ``tracking_sync`` | ``tracking`` |

FOR EACH STATEMENT, not per row, and PostgreSQL folds identical notifications of one
transaction into one. The sessions of a served instance skip them (``WHEN``, evaluated without
calling the function): they set ``supplygraph.wakes = 'local'`` at connection start, because
that instance wakes its own loops after its commits, and because a NOTIFY takes a cluster-wide
lock at commit that serialises every notifying transaction (32 connections inserting
event-shaped rows: a quarter to a third of the throughput with a NOTIFY in each transaction,
no measurable change with the skipped trigger). What notifies is everybody else: a CLI command,
a loader or a benchmark writing rows, an operator's UPDATE making a task due again.

Also ``supply_order_tracking_open``: a partial index of the orders whose tracking push is still
to be made (PENDING or FAILED, of a store), which the tracking pusher and
``domain.work_due`` read after each round; without it each read scans every order. Keyed by
``id`` alone (the pusher's order), so that the orders' other updates can stay HOT: a change to
any column an index names, its predicate's included, makes an update non-HOT, and
``updated_at`` changes with every save (``tracking_sync`` and ``store_id`` rarely do).

SQLite: nothing. It has no NOTIFY, and one process serves it (its loops are woken in process
only); and its planner cannot prove a partial index's predicate from bound parameters, which
is how every query is sent, so the index would never be read.
Back: the triggers, their function and the index are dropped.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state_apps import StateApps

CHANNEL = "supplygraph_work"  # integrations.wakeups.WORK_CHANNEL when this was written
SKIP = "current_setting('supplygraph.wakes', true) IS DISTINCT FROM 'local'"
TRIGGERS = [  # (trigger, table, events, kind)
    ("event_wakes", "event", "INSERT", "outbox"),
    ("webhook_receipt_wakes", "webhook_receipt", "INSERT OR UPDATE", "inbox"),
    ("warehouse_task_wakes", "warehouse_task", "INSERT OR UPDATE", "warehouse_task"),
    ("supply_order_wakes", "supply_order", "INSERT OR UPDATE OF tracking_sync", "tracking"),
]
FUNCTION = f"""
CREATE OR REPLACE FUNCTION supplygraph_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', TG_ARGV[0]);
    RETURN NULL;
END
$$
"""
INDEX = "supply_order_tracking_open"
CREATE_INDEX = (
    f'CREATE INDEX "{INDEX}" ON "supply_order" ("id") '
    "WHERE \"tracking_sync\" IN ('PENDING', 'FAILED') AND \"store_id\" IS NOT NULL"
)


def _create_trigger(name: str, table: str, events: str, kind: str) -> str:
    return (
        f'CREATE TRIGGER "{name}" AFTER {events} ON "{table}" FOR EACH STATEMENT '
        f"WHEN ({SKIP}) EXECUTE FUNCTION supplygraph_wake('{kind}')"
    )


async def _forward(apps: StateApps, schema_editor: BaseSchemaEditor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    await client.execute_script(CREATE_INDEX)
    await client.execute_script(FUNCTION)
    for trigger in TRIGGERS:
        await client.execute_script(_create_trigger(*trigger))


async def _backward(apps: StateApps, schema_editor: BaseSchemaEditor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    for name, table, _, _ in TRIGGERS:
        await client.execute_script(f'DROP TRIGGER IF EXISTS "{name}" ON "{table}"')
    await client.execute_script("DROP FUNCTION IF EXISTS supplygraph_wake()")
    await client.execute_script(f'DROP INDEX IF EXISTS "{INDEX}"')


class Migration(migrations.Migration):
    dependencies = [("models", "0014_tenant_oracles")]

    initial = False

    operations = [ops.RunPython(_forward, _backward)]
