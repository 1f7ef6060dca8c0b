from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.stock.models import MovementKind, ReservationState
from domain.secrets import SealedTextField
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_distribution')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CloudReceiptCallback',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('warehouse_id', fields.IntField()),
                ('event_id', fields.CharField(max_length=100)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'cloud_receipt_callback', 'app': 'models', 'unique_together': (('warehouse_id', 'event_id'),), 'pk_attr': 'id', 'table_description': "A cloud warehouse's receipt callback already processed (deduplication)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CloudWarehouse',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('supplier_id', fields.IntField(db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('address', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('callback_secret', SealedTextField(unique=False)),
                ('is_active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'cloud_warehouse', 'app': 'models', 'pk_attr': 'id', 'table_description': "A warehouse of the supplier's where buyers keep stock."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StockItem',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('buyer_id', fields.IntField()),
                ('warehouse_id', fields.IntField()),
                ('sku_id', fields.IntField()),
                ('on_hand', fields.IntField(default=0)),
                ('reserved', fields.IntField(default=0)),
                ('available', fields.IntField(default=0)),
                ('in_transit', fields.IntField(default=0)),
                ('low_stock_threshold', fields.IntField(null=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'stock_item', 'app': 'models', 'unique_together': (('buyer_id', 'warehouse_id', 'sku_id'),), 'pk_attr': 'id', 'table_description': "One buyer's stock of one SKU in one warehouse. ``available`` = ``on_hand`` -"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StockMovement',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('stock_item_id', fields.BigIntField()),
                ('kind', fields.CharEnumField(description='IN_TRANSIT: IN_TRANSIT\nRECEIVED: RECEIVED\nSHORTFALL: SHORTFALL\nRESERVED: RESERVED\nRELEASED: RELEASED\nSHIPPED: SHIPPED', enum_type=MovementKind, max_length=16)),
                ('on_hand_delta', fields.IntField(default=0)),
                ('reserved_delta', fields.IntField(default=0)),
                ('in_transit_delta', fields.IntField(default=0)),
                ('order_id', fields.BigIntField(null=True)),
                ('actor_user_id', fields.IntField(null=True)),
                ('reason', fields.CharField(default='', max_length=300)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'stock_movement', 'app': 'models', 'indexes': [Index(fields=['stock_item_id', 'id']), Index(fields=['order_id'])], 'pk_attr': 'id', 'table_description': 'The ledger: every change of a stock item, with its deltas. Summing the deltas of an item'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StockReservation',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('stock_item_id', fields.BigIntField()),
                ('order_id', fields.BigIntField(db_index=True)),
                ('order_line_id', fields.BigIntField()),
                ('quantity', fields.IntField()),
                ('state', fields.CharEnumField(default=ReservationState.HELD, description='HELD: HELD\nRELEASED: RELEASED\nCONSUMED: CONSUMED', enum_type=ReservationState, max_length=10)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'stock_reservation', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Units of a stock item held for one line of a paid order.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Order',
            name='cloud_warehouse_id',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Order',
            name='expected_arrival_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Order',
            name='stock_received_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='OrderLine',
            name='stock_quantity',
            field=fields.IntField(default=0),
        ),
    ]
