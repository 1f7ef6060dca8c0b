from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_task_request_id')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Depute',
            index=Index(fields=['order_id', 'id']),
        ),
        ops.AddIndex(
            model_name='OrderLine',
            index=Index(fields=['order_id', 'id']),
        ),
    ]
