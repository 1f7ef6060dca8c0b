"""Service-level breaches: the list, the rules, a rule's deadline, and the live stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry import Info

from domain.events import EventType as DomainEventType
from domain.events.catalogue import SlaBreachChange as SlaBreachChangePayload
from domain.events.catalogue import parse
from domain.pages import MAX_PAGE
from domain.sla import commands as sla
from domain.sla import queries as sla_queries
from domain.sla.rules import RULES
from resolvers.events import event_id_for, event_stream
from resolvers.ids import optional_id, page_arguments
from resolvers.mutations import run_command
from resolvers.permissions import ADMIN, EITHER, requires, viewer_of
from schema.types.pagination import Connection
from schema.types.sla import (
    SlaBreach,
    SlaBreachChange,
    SlaBreachFilter,
    SlaRule,
    SlaRuleInput,
    SlaRulePayload,
    SlaRuleSetting,
)

_CHANGES = [DomainEventType.SLA_BREACH_OPENED.value, DomainEventType.SLA_BREACH_CLEARED.value]


@strawberry.type
class SlaQueries:
    @strawberry.field(
        extensions=[requires(EITHER)],
        description="The caller's organisation's breaches of service-level rules (by its own "
        f"deadlines), newest first, at most {MAX_PAGE} per page.",
    )
    async def sla_breaches(
        self,
        info: Info,
        filter: SlaBreachFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[SlaBreach]:
        paging = page_arguments(first, after)
        f = filter or SlaBreachFilter()
        rows, more = await sla_queries.list_breaches(
            viewer=viewer_of(info),
            rules=list(f.rules) if f.rules else None,
            open_=f.open,
            counterpart_id=optional_id(f.counterpart_id, "Organisation", field="counterpartId"),
            **paging,
        )
        return Connection.of(rows, SlaBreach.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(EITHER)],
        description="The service-level rules that can concern the caller's organisation (9 for "
        "a buyer, 7 for a supplier), each with its deadline for it.",
    )
    async def sla_rules(self, info: Info) -> list[SlaRuleSetting]:
        return [SlaRuleSetting.of(s) for s in await sla_queries.rule_settings(viewer_of(info))]


@strawberry.type
class SlaMutations:
    @strawberry.mutation(
        extensions=[requires(EITHER, ADMIN)],
        description="Set the caller's organisation's own deadline for a rule, back to the "
        "default (`minutes: null`), or switch the rule off. Its breaches already open stay "
        "open; the next sweep uses the new deadline.",
    )
    async def set_sla_rule(self, info: Info, input: SlaRuleInput) -> SlaRulePayload:
        async def command() -> dict:
            setting = await sla.set_rule(
                viewer=viewer_of(info),
                rule=input.rule,
                minutes=input.minutes,
                enabled=input.enabled,
            )
            return {
                "setting": SlaRuleSetting.of(sla_queries.rule_setting(RULES[input.rule], setting))
            }

        return await run_command(SlaRulePayload, command, in_input=True)


@strawberry.type
class SlaSubscriptions:
    @strawberry.subscription(
        extensions=[requires(EITHER)],
        description="Breaches opening and clearing, for the caller's organisation (optionally "
        "of some rules only). Resume with `afterEventId` like `events`.",
    )
    async def sla_breach_changed(
        self,
        info: Info,
        rules: list[SlaRule] | None = None,
        after_event_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[SlaBreachChange, None]:
        wanted = {r.value for r in rules} if rules else None
        async for event in event_stream(info, _CHANGES, after_event_id):
            change = parse(event)
            assert isinstance(change, SlaBreachChangePayload)
            if wanted is not None and change.rule not in wanted:
                continue
            breach = await sla_queries.get_breach(change.sla_breach_id)
            if breach is None:
                continue
            yield SlaBreachChange(
                event_id=event_id_for(info, event),
                opened=event.type == DomainEventType.SLA_BREACH_OPENED.value,
                breach=SlaBreach.from_model(breach),
                at=event.created_at,
            )
