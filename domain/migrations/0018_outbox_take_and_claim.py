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

from importlib import import_module

from tortoise import migrations

# 0010's operation for a stored function: created forward and dropped back on PostgreSQL only
postgres_only = import_module("domain.migrations.0010_outbox_claim").postgres_only

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


class Migration(migrations.Migration):
    dependencies = [("models", "0017_tracking_lease_owner")]

    initial = False

    operations = [postgres_only(CREATE, DROP)]
