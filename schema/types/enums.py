"""Domain enums exposed as GraphQL enums (the domain classes stay Strawberry-free)."""

from __future__ import annotations

import strawberry

from domain.errors import ErrorCode as _ErrorCode
from domain.events import EventType as _EventType
from domain.organisations.models import OrganisationKind as _OrganisationKind
from domain.organisations.models import Role as _Role

OrganisationKind = strawberry.enum(
    _OrganisationKind, description="BUYER: sellers and distributors; SUPPLIER: ships the goods."
)
Role = strawberry.enum(_Role, description="A user's role, in increasing order of power.")
ErrorCode = strawberry.enum(_ErrorCode, description="Why a mutation was refused.")
EventType = strawberry.enum(_EventType, description="Kinds of events on the event stream.")
