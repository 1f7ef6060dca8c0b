"""Tracking pushes are held by a named instance (issue 22): ``supply_order.tracking_lease_owner``
beside 0016's ``tracking_lease_until``. The lease is short and renewed while the push is made
(``integrations.heartbeat``, by owner in one statement), and the push's result is recorded only
by the instance that still holds it, so an instance that hung past its lease does not record a
second result. Added and dropped as 0016's column is (the same operation).
"""

from importlib import import_module

from tortoise import fields, migrations

# 0016's AddField, whose way back on SQLite keeps the table's indexes
_AddColumn = import_module("domain.migrations.0016_tracking_leases")._AddColumn


class Migration(migrations.Migration):
    dependencies = [("models", "0016_tracking_leases")]

    initial = False

    operations = [
        _AddColumn(
            model_name="Order",
            name="tracking_lease_owner",
            field=fields.CharField(max_length=64, null=True),
        ),
    ]
