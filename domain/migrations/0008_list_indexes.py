from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0007_foreign_key_indexes')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='AfterSalesOrder',
            index=Index(fields=['supplier_id', 'id']),
        ),
        ops.AddIndex(
            model_name='EventAudience',
            index=Index(fields=['event_id']),
        ),
        ops.AddIndex(
            model_name='LogisticsMethod',
            index=Index(fields=['supplier_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Order',
            index=Index(fields=['tracking_number']),
        ),
        ops.AddIndex(
            model_name='Order',
            index=Index(fields=['store_order_number']),
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['organisation_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Wallet',
            index=Index(fields=['supplier_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Withdrawal',
            index=Index(fields=['supplier_id', 'id']),
        ),
        ops.AddIndex(
            model_name='Withdrawal',
            index=Index(fields=['distributor_id', 'id']),
        ),
    ]
