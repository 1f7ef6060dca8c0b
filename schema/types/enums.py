"""Domain enums exposed as GraphQL enums (the domain classes stay Strawberry-free).

A renamed value stays in the schema under its old name for a release, deprecated (the README's
changelog lists them): ``renamed_enum`` adds those values, and ``current`` turns an argument
given by its old name into the domain's value.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Any

import strawberry

from domain.errors import ErrorCode as _ErrorCode
from domain.events import EventType as _EventType
from domain.orders.models import LineSource as _LineSource
from domain.organisations.models import OrganisationKind as _OrganisationKind
from domain.organisations.models import Role as _Role

# old name -> the domain value that replaced it
RENAMED_VALUES: dict[str, StrEnum] = {
    "CONNECTION_STALE": _EventType.PRODUCT_LINK_STALE,
    "PRODUCT_CONNECTION_UPDATED": _EventType.PRODUCT_LINK_UPDATED,
    "PRODUCT_CONNECTION": _LineSource.PRODUCT_LINK,
}


def renamed_enum(domain: type[StrEnum], *, description: str | None = None) -> Any:
    """``domain`` as a GraphQL enum, with its renamed values under their old names, deprecated."""
    members: dict[str, Any] = {m.name: m.value for m in domain}
    for old, new in RENAMED_VALUES.items():
        if isinstance(new, domain):
            members[old] = strawberry.enum_value(
                old, deprecation_reason=f"Renamed {new.name}; returned under that name only."
            )
    return strawberry.enum(Enum(domain.__name__, members), description=description)  # type: ignore[misc]


def current(value: Enum) -> str:
    """The domain's value for a GraphQL enum argument, old names included."""
    renamed = RENAMED_VALUES.get(value.name)
    return renamed.value if renamed is not None else str(value.value)


OrganisationKind = strawberry.enum(
    _OrganisationKind, description="BUYER: sellers and distributors; SUPPLIER: ships the goods."
)
Role = strawberry.enum(_Role, description="A user's role, in increasing order of power.")
ErrorCode = strawberry.enum(_ErrorCode, description="Why a mutation was refused.")
EventType = renamed_enum(_EventType, description="Kinds of events on the event stream.")
LineSource = renamed_enum(_LineSource)
