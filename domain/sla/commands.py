"""Opening and clearing breaches, the organisations' settings, and the sweep's lease.

Time is a parameter (``now``) everywhere: the worker passes its clock, tests pass the moment
they want, and nothing here reads the wall clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q, Subquery

from domain.access import Viewer
from domain.db import transaction
from domain.errors import DomainError, ErrorCode
from domain.events import record_event
from domain.events.catalogue import SlaBreachCleared, SlaBreachOpened, SlaRuleUpdated
from domain.organisations.models import OrganisationKind, Role
from domain.persistence.sla_breaches import open_breaches
from domain.sla.models import SlaBreach, SlaRule, SlaSetting
from domain.sla.rules import RULES, Rule

BATCH = 500  # rows opened per rule and deadline in one round; the next round takes the rest
SETTLE_BATCH = 1_000  # subjects or orders whose open breaches ``settle_many`` reads at once
MAX_MINUTES = 60 * 24 * 365


Deadlines = tuple[dict[int, list[int]], set[int]]


async def _deadlines() -> dict[SlaRule, Deadlines]:
    """For every rule, the organisations with their own deadline for it, by deadline; and
    those who switched it off (every organisation's settings, read in one statement)."""
    by_rule: dict[SlaRule, Deadlines] = {rule: (defaultdict(list), set()) for rule in RULES}
    for setting in await SlaSetting.all():
        if setting.rule not in by_rule:
            continue  # a rule no longer watched
        custom, off = by_rule[setting.rule]
        if not setting.enabled:
            off.add(setting.organisation_id)
        elif setting.minutes != RULES[setting.rule].default_minutes:
            custom[setting.minutes].append(setting.organisation_id)
    return by_rule


def _open_breaches(rule: Rule, kind: OrganisationKind) -> Any:
    """The subjects with an open breach of ``rule`` for their party of ``kind``."""
    return SlaBreach.filter(
        rule=rule.rule,
        subject_type=rule.subject_type,
        cleared_at__isnull=True,
        organisation_kind=kind,
    ).values("subject_id")


def _groups(rule: Rule, kind: OrganisationKind, deadlines: Deadlines) -> list[tuple[int, Q]]:
    """(minutes, the parties of ``kind`` whose deadline that is) for ``rule``: the default for
    everyone without a setting of their own, then each custom deadline."""
    custom, off = deadlines
    special = {org for orgs in custom.values() for org in orgs} | off
    party = rule.party(kind)
    groups = [(rule.default_minutes, Q(**{f"{party}__not_in": list(special)}))]
    groups += [(minutes, Q(**{f"{party}__in": orgs})) for minutes, orgs in custom.items()]
    return groups


def _unbreached(rule: Rule, kind: OrganisationKind, parties: Q) -> Any:
    """Watched rows of ``parties`` (of ``kind``) with no open breach for that party."""
    party = rule.party(kind)
    return (
        rule.watching()
        .filter(parties, **{f"{party}__isnull": False})
        .exclude(**{f"{rule.columns.subject}__in": Subquery(_open_breaches(rule, kind))})
    )


async def _due(
    rule: Rule, kind: OrganisationKind, deadlines: Deadlines, now: datetime
) -> list[tuple[dict, int]]:
    """Watched rows past the deadline of their party of ``kind``, with no open breach for it:
    (row, minutes)."""
    c, party = rule.columns, rule.party(kind)
    fields = {
        "subject_id": c.subject,
        "organisation_id": party,
        "buyer_id": c.buyer,
        "since": rule.since,
        **({"supplier_id": c.supplier} if c.supplier else {}),
        **({"order_id": c.order} if c.order else {}),
    }
    found = []
    for minutes, parties in _groups(rule, kind, deadlines):
        cutoff = now - timedelta(minutes=minutes)
        rows = (
            await _unbreached(rule, kind, parties)
            .filter(**{f"{rule.since}__lte": cutoff})
            .order_by(rule.since)
            .limit(BATCH)
            .values(**fields)
        )
        found += [(row, minutes) for row in rows]
    return found


async def next_deadline(*, now: datetime) -> datetime | None:
    """When the sweep next has a breach to open if nothing changes meanwhile: the earliest
    deadline after ``now`` of a watched row with no open breach for its party. None: no
    deadline to come. (A row past its deadline is the sweep's at ``now``: opened then, or left
    alone for good because that episode had its breach already.) A change to what is watched
    records an event, which is how a sweeper knows this answer is stale."""
    earliest: datetime | None = None
    every_deadline = await _deadlines()
    for rule in RULES.values():
        deadlines = every_deadline[rule.rule]
        for kind in rule.sides:
            for minutes, parties in _groups(rule, kind, deadlines):
                wait = timedelta(minutes=minutes)
                since = (
                    await _unbreached(rule, kind, parties)
                    .filter(**{f"{rule.since}__gt": now - wait})
                    .order_by(rule.since)
                    .first()
                    .values_list(rule.since, flat=True)
                )
                if isinstance(since, datetime):
                    due = since + wait
                    earliest = due if earliest is None else min(earliest, due)
    return earliest


async def _open(
    rule: Rule, kind: OrganisationKind, deadlines: Deadlines, now: datetime
) -> list[SlaBreach]:
    due = await _due(rule, kind, deadlines, now)
    if not due:
        return []
    seen = {
        (b["organisation_id"], b["subject_id"], b["since"])
        for b in await SlaBreach.filter(
            rule=rule.rule,
            subject_type=rule.subject_type,
            subject_id__in=[row["subject_id"] for row, _ in due],
        ).values("organisation_id", "subject_id", "since")
    }
    opened = []
    async with transaction():
        for row, minutes in due:
            if (row["organisation_id"], row["subject_id"], row["since"]) in seen:
                continue  # this episode had its breach: raised once
            breach = await SlaBreach.create(
                organisation_id=row["organisation_id"],
                organisation_kind=kind,
                rule=rule.rule,
                subject_type=rule.subject_type,
                subject_id=row["subject_id"],
                since=row["since"],
                due_at=row["since"] + timedelta(minutes=minutes),
                opened_at=now,
                order_id=row.get("order_id"),
                buyer_id=row["buyer_id"],
                supplier_id=row.get("supplier_id"),
            )
            await record_event(SlaBreachOpened.of(breach))
            opened.append(breach)
    return opened


async def _clear(breaches: list[SlaBreach], now: datetime) -> list[SlaBreach]:
    """Clear ``breaches`` (each once: another instance may be clearing them too)."""
    cleared = []
    async with transaction():
        for breach in breaches:
            reason = RULES[breach.rule].cleared
            done = await SlaBreach.filter(id=breach.id, cleared_at__isnull=True).update(
                cleared_at=now, clear_reason=reason
            )
            if done:
                breach.cleared_at, breach.clear_reason = now, reason
                await record_event(SlaBreachCleared.of(breach))
                cleared.append(breach)
    return cleared


async def _moved_on(rule: Rule) -> list[SlaBreach]:
    """Open breaches of ``rule`` whose subject left the watched state."""
    still = rule.watching().values(rule.columns.subject)
    return (
        await SlaBreach.filter(
            rule=rule.rule, subject_type=rule.subject_type, cleared_at__isnull=True
        )
        .exclude(subject_id__in=Subquery(still))
        .limit(BATCH)
    )


async def sweep(*, now: datetime) -> tuple[list[SlaBreach], list[SlaBreach]]:
    """Open every breach whose deadline has passed by ``now`` and clear those whose subject
    moved on (what ``settle`` missed). Returns (opened, cleared)."""
    opened: list[SlaBreach] = []
    cleared: list[SlaBreach] = []
    every_deadline = await _deadlines()
    for rule in RULES.values():
        cleared += await _clear(await _moved_on(rule), now)
        deadlines = every_deadline[rule.rule]
        for kind in rule.sides:
            opened += await _open(rule, kind, deadlines, now)
    return opened, cleared


async def settle(
    *,
    now: datetime,
    subject_type: str | None = None,
    subject_id: int | None = None,
    order_id: int | None = None,
) -> list[SlaBreach]:
    """After a change: clear the open breaches of one subject, or of everything about one
    order (its withdrawals too), whose rule no longer holds."""
    query = SlaBreach.filter(cleared_at__isnull=True)
    if subject_type is not None:
        query = query.filter(subject_type=subject_type, subject_id=subject_id)
    if order_id is not None:
        query = query.filter(order_id=order_id)
    ended = []
    for breach in await query:
        rule = RULES[breach.rule]
        watched = rule.watching().filter(**{rule.columns.subject: breach.subject_id})
        if not await watched.exists():
            ended.append(breach)
    return await _clear(ended, now) if ended else []


async def settle_many(
    *,
    now: datetime,
    subjects: Collection[tuple[str, int]] = (),
    order_ids: Collection[int] = (),
) -> list[SlaBreach]:
    """``settle`` for many subjects and orders at once (the worker's round after a burst of
    events): their open breaches read in one statement per ``SETTLE_BATCH`` of each kind
    (``domain.persistence.sla_breaches``), then each checked as ``settle`` checks it."""
    by_type: defaultdict[str, set[int]] = defaultdict(set)
    for subject_type, subject_id in subjects:
        by_type[subject_type].add(subject_id)
    orders = sorted(set(order_ids))
    by_type_sorted = {t: sorted(ids) for t, ids in sorted(by_type.items())}
    longest = max([len(orders), *(len(ids) for ids in by_type_sorted.values())])
    found: dict[int, SlaBreach] = {}
    for start in range(0, longest, SETTLE_BATCH):
        end = start + SETTLE_BATCH
        for breach in await open_breaches(
            order_ids=orders[start:end],
            subjects={t: ids[start:end] for t, ids in by_type_sorted.items()},
        ):
            found[breach.id] = breach
    ended = []
    for breach in found.values():
        rule = RULES[breach.rule]
        watched = rule.watching().filter(**{rule.columns.subject: breach.subject_id})
        if not await watched.exists():
            ended.append(breach)
    return await _clear(ended, now) if ended else []


async def set_rule(
    *, viewer: Viewer, rule: SlaRule, minutes: int | None, enabled: bool
) -> SlaSetting:
    """The caller's organisation's own deadline for a rule (None: the default), or the rule
    switched off for it. Its breaches already open stay open."""
    viewer.require_role(Role.ADMIN)
    spec = RULES[rule]
    if viewer.organisation_kind not in spec.sides:
        raise DomainError(
            ErrorCode.INVALID,
            f"{rule.value} concerns buyers only: a supplier never has such a breach.",
            field="rule",
        )
    if minutes is not None and not 0 <= minutes <= MAX_MINUTES:
        raise DomainError(
            ErrorCode.INVALID, f"minutes must be between 0 and {MAX_MINUTES}.", field="minutes"
        )
    async with transaction():
        setting, _ = await SlaSetting.get_or_create(
            organisation_id=viewer.organisation_id,
            rule=rule,
            defaults={"minutes": spec.default_minutes},
        )
        setting.minutes = spec.default_minutes if minutes is None else minutes
        setting.enabled = enabled
        await setting.save()
        await record_event(SlaRuleUpdated.of(setting, actor_user_id=viewer.user_id))
    return setting
