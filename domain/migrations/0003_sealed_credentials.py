from tortoise import migrations
from tortoise.migrations import operations as ops
from domain.secrets import SealedTextField

class Migration(migrations.Migration):
    dependencies = [('models', '0002_orders')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Store',
            name='access_token',
            field=SealedTextField(unique=False),
        ),
        ops.AlterField(
            model_name='Store',
            name='webhook_secret',
            field=SealedTextField(unique=False),
        ),
    ]
