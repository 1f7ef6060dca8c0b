"""PostgreSQL: ``outbox_take_and_claim(...)``, the publisher's lease and claim in one statement.

It takes the publishing round's named lease (the row of ``sweep_lease`` by name: free, or this
holder's already; ``domain.persistence.named_leases``' ``take``) and, if it got it, runs
``outbox_claim`` (migration 0010) in the same call. It returns one row per claimed event with
``taken`` true; one row with ``taken`` true and no event when nothing waits; one row with
``taken`` false and the holder's ``held_until`` when another holds the round; and no row when
the lease's row does not exist yet (the caller makes it). The publisher made two round trips
before every burst's fan-out: the lease, then the claim. SQLite has no stored functions: there
the publisher runs the statements one by one.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state_apps import StateApps

CREATE = """
CREATE OR REPLACE FUNCTION outbox_take_and_claim(
    p_name text, p_holder text, p_until timestamptz, p_now timestamptz, p_batch integer
)
RETURNS TABLE (
    taken boolean, held_until timestamptz,
    seq bigint, type text, subject_type text, subject_id text, payload text,
    actor_user_id integer, created_at timestamptz, audience integer[]
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE sweep_lease SET holder = p_holder, until = p_until
    WHERE name = p_name AND (until < p_now OR holder = p_holder);
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT false, l.until, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text,
               NULL::integer, NULL::timestamptz, NULL::integer[]
        FROM sweep_lease l WHERE l.name = p_name;
        RETURN;
    END IF;
    RETURN QUERY SELECT true, NULL::timestamptz, c.* FROM outbox_claim(p_batch) c;
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT true, NULL::timestamptz, NULL::bigint, NULL::text, NULL::text, NULL::text,
               NULL::text, NULL::integer, NULL::timestamptz, NULL::integer[];
    END IF;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS outbox_take_and_claim(text, text, timestamptz, timestamptz, integer)"


async def _create(apps: StateApps, schema_editor: BaseSchemaEditor) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(CREATE)


async def _drop(apps: StateApps, schema_editor: BaseSchemaEditor) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(DROP)


class Migration(migrations.Migration):
    dependencies = [("models", "0017_tracking_lease_owner")]

    initial = False

    operations = [ops.RunPython(_create, _drop)]
