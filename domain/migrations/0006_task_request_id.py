from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_cloud_stock')]

    initial = False

    operations = [
        ops.AddField(
            model_name='WarehouseTask',
            name='request_id',
            field=fields.CharField(null=True, max_length=64),
        ),
    ]
