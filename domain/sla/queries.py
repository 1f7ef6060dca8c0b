"""The breaches and rule settings a caller may see."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.expressions import Q

from domain import visibility
from domain.access import Viewer
from domain.pages import keyset_page
from domain.sla.models import SlaBreach, SlaRule, SlaSetting
from domain.sla.rules import RULES, Rule


async def list_breaches(
    *,
    viewer: Viewer,
    first: int,
    after: int | None = None,
    rules: list[SlaRule] | None = None,
    open_: bool | None = None,
    counterpart_id: int | None = None,
) -> tuple[list[SlaBreach], bool]:
    """A page of the breaches the caller's organisation sees, newest first: of some rules,
    only open (or only cleared) ones, only those whose other party is one organisation."""
    query = visibility.sla_breaches(viewer)
    if rules:
        query = query.filter(rule__in=rules)
    if open_ is not None:
        query = query.filter(cleared_at__isnull=open_)
    if counterpart_id is not None:
        query = query.filter(Q(buyer_id=counterpart_id) | Q(supplier_id=counterpart_id))
    return await keyset_page(query, first=first, after=after, newest_first=True)


async def get_breach(breach_id: int) -> SlaBreach | None:
    """A breach by id, for a stream that was told of it (its audience checked the event)."""
    return await SlaBreach.get_or_none(id=breach_id)


@dataclass(frozen=True)
class RuleSetting:
    """A rule as it applies to the caller's organisation: its own deadline (the default until
    it sets one)."""

    rule: Rule
    minutes: int
    enabled: bool
    customised: bool


def rule_setting(rule: Rule, setting: SlaSetting | None) -> RuleSetting:
    """``rule`` as ``setting`` (an organisation's own, or None: the default) makes it."""
    if setting is None:
        return RuleSetting(rule=rule, minutes=rule.default_minutes, enabled=True, customised=False)
    return RuleSetting(rule=rule, minutes=setting.minutes, enabled=setting.enabled, customised=True)


async def rule_settings(viewer: Viewer) -> list[RuleSetting]:
    """The rules that can concern the caller's organisation, with its deadlines."""
    own = {s.rule: s for s in await SlaSetting.filter(organisation_id=viewer.organisation_id)}
    return [
        rule_setting(rule, own.get(rule.rule))
        for rule in RULES.values()
        if viewer.organisation_kind in rule.sides
    ]
