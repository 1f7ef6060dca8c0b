"""The warehouse task queue's claim, written out: one statement takes the lease of a batch of
due tasks and returns them (the ORM needed a read, an update per task and a read again).

PostgreSQL locks the candidates with ``FOR UPDATE SKIP LOCKED``: instances claiming at the same
moment each take other tasks instead of queueing on one another's rows, and the lease condition
is checked again on the row it locked, so a task is never leased twice. SQLite has one writer:
the same UPDATE, with its candidates in a subquery, is atomic there by itself.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from compat import tortoise as orm
from domain.distribution.models import TaskState, WarehouseTask
from domain.persistence.dialects import DialectSwitch
from domain.persistence.rows import builder
from domain.persistence.sql import int_list

claim_tasks: DialectSwitch[list[WarehouseTask]] = DialectSwitch("warehouse_tasks.claim")

_FREE = '("lease_until" IS NULL OR "lease_until" < {now})'  # as ``domain.leases.lease_free``
_CLAIM_POSTGRES: str | None = None


def _claim_postgres_sql() -> str:
    table = orm.table(WarehouseTask)
    free = _FREE.format(now="$3")
    return f"""WITH candidates AS (
    SELECT "id" FROM "{table}"
    WHERE "state" = $4 AND "due_at" <= $3 AND {free} AND NOT ("id" = ANY($6::bigint[]))
    ORDER BY "id" LIMIT $5
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE "{table}" AS t SET "lease_owner" = $1, "lease_until" = $2,
        "attempts" = t."attempts" + 1
    FROM candidates WHERE t."id" = candidates."id" AND t."state" = $4 AND {free}
    RETURNING t.*
)
SELECT * FROM claimed ORDER BY "id\""""


@claim_tasks.postgres
async def _claim_postgres(
    *, owner: str, until: datetime, now: datetime, limit: int, exclude: Collection[int]
) -> list[WarehouseTask]:
    """Lease up to ``limit`` due tasks (oldest first) to ``owner`` until ``until``, counting the
    run; ``exclude``: tasks not to take (those this worker is still running)."""
    global _CLAIM_POSTGRES
    if _CLAIM_POSTGRES is None:
        _CLAIM_POSTGRES = _claim_postgres_sql()
    values = [owner, until, now, TaskState.PENDING.value, limit, [int(i) for i in exclude]]
    _, rows = await orm.connection_of(WarehouseTask).execute_query(_CLAIM_POSTGRES, values)
    return builder(WarehouseTask).build_all(rows)


@claim_tasks.other
async def _claim_other(
    *, owner: str, until: datetime, now: datetime, limit: int, exclude: Collection[int]
) -> list[WarehouseTask]:
    table = orm.table(WarehouseTask)
    free = _FREE.format(now="?")
    excluded = f'AND "id" NOT IN ({int_list(exclude)}) ' if exclude else ""
    sql = (
        f'UPDATE "{table}" SET "lease_owner" = ?, "lease_until" = ?, "attempts" = "attempts" + 1 '
        f'WHERE "id" IN (SELECT "id" FROM "{table}" WHERE "state" = ? AND "due_at" <= ? '
        f'AND {free} {excluded}ORDER BY "id" LIMIT ?) RETURNING *'
    )
    values = [owner, until, TaskState.PENDING.value, now, now, limit]
    _, rows = await orm.connection_of(WarehouseTask).execute_query(sql, values)
    tasks = builder(WarehouseTask).build_all(rows)
    return sorted(tasks, key=lambda task: task.id)
