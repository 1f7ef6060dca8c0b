"""The open service-level breaches about some orders and subjects, written out: one statement
after every burst of events (``domain.sla.commands.settle_many``), where the ORM built and ran
one per kind of subject."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from compat import tortoise as orm
from domain.persistence.rows import fetch
from domain.persistence.sql import id_in, placeholder
from domain.sla.models import SlaBreach


async def open_breaches(
    *, order_ids: Sequence[int], subjects: Mapping[str, Sequence[int]]
) -> list[SlaBreach]:
    """Open breaches about any of ``order_ids``, or of a subject of ``subjects`` (type → ids)."""
    dialect = str(orm.connection_of(SlaBreach).capabilities.dialect)
    clauses: list[str] = []
    params: list[Any] = []
    if order_ids:
        clause, extra = id_in(dialect, '"order_id"', len(params) + 1, order_ids)
        clauses.append(clause)
        params += extra
    for subject_type, ids in subjects.items():
        if not ids:
            continue
        params.append(subject_type)
        kind = placeholder(dialect, len(params))
        clause, extra = id_in(dialect, '"subject_id"', len(params) + 1, ids)
        clauses.append(f'("subject_type" = {kind} AND {clause})')
        params += extra
    if not clauses:
        return []
    sql = (
        f'SELECT * FROM "{orm.table(SlaBreach)}" '
        f'WHERE "cleared_at" IS NULL AND ({" OR ".join(clauses)})'
    )
    return await fetch(SlaBreach, sql, params)
