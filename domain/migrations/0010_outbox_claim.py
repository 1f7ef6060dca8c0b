"""PostgreSQL: ``outbox_claim(batch)``, the publisher's round in one statement.

Under the outbox's advisory lock it numbers up to ``batch`` committed events (the same
statement as ``domain.outbox.assign_sequence``) and returns up to ``batch`` numbered events
not yet published, oldest first, each with its audience. A VOLATILE PL/pgSQL function takes a
fresh snapshot for each of its statements, so the numbering reads ``MAX(seq)`` after the lock
is held, as the separate statements did. SQLite has no stored functions: there the publisher
runs the statements one by one.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state_apps import StateApps

CREATE = """
CREATE OR REPLACE FUNCTION outbox_claim(batch integer)
RETURNS TABLE (
    seq bigint, type text, subject_type text, subject_id text, payload text,
    actor_user_id integer, created_at timestamptz, audience integer[]
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(1592590337);
    UPDATE event SET seq = numbered.new_seq
    FROM (
        SELECT id, ROW_NUMBER() OVER (ORDER BY id)
               + (SELECT COALESCE(MAX(e.seq), 0) FROM event e) AS new_seq
        FROM event WHERE event.seq IS NULL ORDER BY id LIMIT batch
    ) AS numbered
    WHERE event.id = numbered.id;
    RETURN QUERY
    SELECT e.seq, e.type::text, e.subject_type::text, e.subject_id::text, e.payload::text,
           e.actor_user_id, e.created_at,
           ARRAY(SELECT a.organisation_id FROM event_audience a WHERE a.event_id = e.id)
    FROM event e
    WHERE e.published_at IS NULL AND e.seq IS NOT NULL
    ORDER BY e.seq LIMIT batch;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS outbox_claim(integer)"


def postgres_only(create: str, drop: str) -> ops.RunPython:
    """An operation running the script ``create`` forward and ``drop`` back on PostgreSQL, and
    nothing on SQLite (stored functions; later migrations of such functions use it too)."""

    async def forward(apps: StateApps, schema_editor: BaseSchemaEditor) -> None:
        if schema_editor.client.capabilities.dialect == "postgres":
            await schema_editor.client.execute_script(create)

    async def backward(apps: StateApps, schema_editor: BaseSchemaEditor) -> None:
        if schema_editor.client.capabilities.dialect == "postgres":
            await schema_editor.client.execute_script(drop)

    return ops.RunPython(forward, backward)


class Migration(migrations.Migration):
    dependencies = [("models", "0009_store_inbox")]

    initial = False

    operations = [postgres_only(CREATE, DROP)]
