from tortoise import migrations
from tortoise.migrations import operations as ops
from domain.orders.models import InboxState
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0008_list_indexes')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='WebhookReceipt',
            options={'table': 'webhook_receipt', 'app': 'models', 'unique_together': (('store_id', 'event_id'),), 'indexes': [Index(fields=['state', 'due_at'])], 'pk_attr': 'id', 'table_description': "A store webhook event accepted (its signature checked), and the store's inbox."},
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='attempts',
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='due_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='last_error',
            field=fields.CharField(null=True, max_length=500),
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='lease_owner',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='lease_until',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='order_id',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='payload',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='processed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='WebhookReceipt',
            name='state',
            field=fields.CharEnumField(default=InboxState.DONE, description='PENDING: PENDING\nDONE: DONE\nFAILED: FAILED', enum_type=InboxState, max_length=8),
        ),
        ops.AddIndex(
            model_name='WebhookReceipt',
            index=Index(fields=['state', 'due_at']),
        ),
    ]
