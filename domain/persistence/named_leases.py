"""The statements of a named lease (``domain.leases.NamedLease``): one row of ``sweep_lease``
by name, taken, renewed and given back by conditional updates.

Written out, not built through the ORM: the outbox publisher takes and gives back its round's
lease around every burst of events, and building each statement cost more than running it."""

from __future__ import annotations

from datetime import datetime

from compat import tortoise as orm
from domain.persistence.sql import placeholder
from domain.sla.models import SweepLease

_SQL: dict[str, dict[str, str]] = {}  # per dialect: each statement's text


def _sql(dialect: str, statement: str) -> str:
    texts = _SQL.get(dialect)
    if texts is None:
        p = [placeholder(dialect, i) for i in range(1, 6)]
        table = orm.table(SweepLease)
        texts = _SQL[dialect] = {
            # holder, until, name, now, holder: free (ran out before now) or this holder's
            "take": f'UPDATE "{table}" SET "holder" = {p[0]}, "until" = {p[1]} '
            f'WHERE "name" = {p[2]} AND ("until" < {p[3]} OR "holder" = {p[4]})',
            # until, name, holder: only this holder's
            "renew": f'UPDATE "{table}" SET "until" = {p[0]} '
            f'WHERE "name" = {p[1]} AND "holder" = {p[2]}',
        }
    return texts[statement]


def _until(value: datetime) -> object:
    return orm.to_db(SweepLease, "until", value)


async def take(*, name: str, holder: str, until: datetime, now: datetime) -> bool:
    """Hold ``name`` until ``until`` if it is free at ``now`` or ``holder``'s already; whether
    it is held now. (A lease whose row does not exist yet is not taken here.)"""
    db = orm.connection_of(SweepLease)
    count, _ = await db.execute_query(
        _sql(db.capabilities.dialect, "take"), [holder, _until(until), name, _until(now), holder]
    )
    return bool(count)


async def renew(*, name: str, holder: str, until: datetime) -> int:
    """Set the end of ``holder``'s lease on ``name`` to ``until`` (given back: a time past);
    how many leases that changed (0: ``holder`` does not hold it)."""
    db = orm.connection_of(SweepLease)
    count, _ = await db.execute_query(
        _sql(db.capabilities.dialect, "renew"), [_until(until), name, holder]
    )
    return int(count or 0)
