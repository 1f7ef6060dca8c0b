"""Leases on work rows (warehouse tasks, the store webhook inbox, tracking pushes): a row is
taken by a conditional UPDATE that only matches while its lease is free, so one instance holds it
at a time and a lease left by an instance that died expires."""

from __future__ import annotations

from datetime import datetime

from tortoise.expressions import Q


def lease_free(now: datetime, *, field: str = "lease_until") -> Q:
    """Rows nobody holds: never leased, or whose lease (``field``) ran out before ``now``."""
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now})
