from tortoise import migrations
from tortoise.migrations import operations as ops
from domain.organisations.models import OrganisationKind
from domain.sla.models import SlaRule
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0012_names')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SlaBreach',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organisation', fields.ForeignKeyField('models.Organisation', source_field='organisation_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('organisation_kind', fields.CharEnumField(description='BUYER: BUYER\nSUPPLIER: SUPPLIER', enum_type=OrganisationKind, max_length=16)),
                ('rule', fields.CharEnumField(description='PAID_NOT_SHIPPED: PAID_NOT_SHIPPED\nSHIPPED_NOT_DELIVERED: SHIPPED_NOT_DELIVERED\nTRACKING_NOT_SYNCED: TRACKING_NOT_SYNCED\nWAREHOUSE_SILENT: WAREHOUSE_SILENT\nWITHDRAW_STUCK: WITHDRAW_STUCK\nWITHDRAW_FAILED_UNRESOLVED: WITHDRAW_FAILED_UNRESOLVED\nUNRECOGNIZED_ORDER: UNRECOGNIZED_ORDER\nQUOTE_UNANSWERED: QUOTE_UNANSWERED\nSTOCK_BELOW_THRESHOLD: STOCK_BELOW_THRESHOLD', enum_type=SlaRule, max_length=32)),
                ('subject_type', fields.CharField(max_length=32)),
                ('subject_id', fields.BigIntField()),
                ('since', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('due_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('cleared_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('clear_reason', fields.CharField(null=True, max_length=200)),
                ('order', fields.ForeignKeyField('models.Order', source_field='order_id', null=True, db_index=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('buyer', fields.ForeignKeyField('models.Organisation', source_field='buyer_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('supplier', fields.ForeignKeyField('models.Organisation', source_field='supplier_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'sla_breach', 'app': 'models', 'unique_together': (('organisation_id', 'rule', 'subject_type', 'subject_id', 'since'),), 'indexes': [Index(fields=['organisation_id', 'id']), Index(fields=['subject_type', 'subject_id', 'cleared_at']), Index(fields=['rule', 'cleared_at'])], 'pk_attr': 'id', 'table_description': "An organisation's deadline for a rule passed for one subject (an order, a withdrawal, a"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SlaSetting',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organisation', fields.ForeignKeyField('models.Organisation', source_field='organisation_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('rule', fields.CharEnumField(description='PAID_NOT_SHIPPED: PAID_NOT_SHIPPED\nSHIPPED_NOT_DELIVERED: SHIPPED_NOT_DELIVERED\nTRACKING_NOT_SYNCED: TRACKING_NOT_SYNCED\nWAREHOUSE_SILENT: WAREHOUSE_SILENT\nWITHDRAW_STUCK: WITHDRAW_STUCK\nWITHDRAW_FAILED_UNRESOLVED: WITHDRAW_FAILED_UNRESOLVED\nUNRECOGNIZED_ORDER: UNRECOGNIZED_ORDER\nQUOTE_UNANSWERED: QUOTE_UNANSWERED\nSTOCK_BELOW_THRESHOLD: STOCK_BELOW_THRESHOLD', enum_type=SlaRule, max_length=32)),
                ('minutes', fields.IntField()),
                ('enabled', fields.BooleanField(default=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'sla_setting', 'app': 'models', 'unique_together': (('organisation_id', 'rule'),), 'pk_attr': 'id', 'table_description': "An organisation's own deadline for a rule, or the rule switched off for it."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SweepLease',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=32)),
                ('holder', fields.CharField(max_length=64)),
                ('until', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sweep_lease', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Which instance runs a periodic sweep, until when (taken by a conditional update).'},
            bases=['Model'],
        ),
    ]
