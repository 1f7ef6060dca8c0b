"""Tracking pushes are claimed (issue 22): ``supply_order.tracking_lease_until``, until when one
instance is pushing the order's tracking to its store. The tracking pusher takes an order by a
conditional UPDATE that matches only while the lease is free (``domain.leases``), so two
instances never POST the same fulfilment; a lease left by an instance that died runs out.

A nullable column without a default: added without rewriting the table on PostgreSQL and
SQLite alike, and no index (the pusher reads due orders through ``supply_order_tracking_open``
and claims them by id), so the orders' updates stay HOT. Back: the column is dropped; on SQLite
by its own ``DROP COLUMN`` (3.35 and later), because Tortoise's way there rebuilds the table and
loses the indexes earlier migrations made on it (0014's), which their own way back then misses.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state import State


class _AddColumn(ops.AddField):
    async def database_backward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        if state_editor is not None and state_editor.client.capabilities.dialect == "sqlite":
            await state_editor.client.execute_script(
                f'ALTER TABLE "supply_order" DROP COLUMN "{self.name}"'
            )
            return
        await super().database_backward(app_label, old_state, new_state, state_editor)


class Migration(migrations.Migration):
    dependencies = [("models", "0015_work_wakeups")]

    initial = False

    operations = [
        _AddColumn(
            model_name="Order",
            name="tracking_lease_until",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
