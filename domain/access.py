"""Who is calling: the viewer every service takes, and the rules on roles."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import DomainError, ErrorCode
from domain.organisations.models import OrganisationKind, Role

ROLE_RANK: dict[Role, int] = {Role.VIEWER: 0, Role.STAFF: 1, Role.ADMIN: 2, Role.OWNER: 3}


@dataclass(frozen=True, slots=True)
class Viewer:
    """An authenticated caller: a user of one organisation, acting through one token."""

    user_id: int
    organisation_id: int
    organisation_kind: OrganisationKind
    role: Role
    token_id: int

    def has_role(self, minimum: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]

    def require_role(self, minimum: Role) -> None:
        if not self.has_role(minimum):
            raise DomainError(
                ErrorCode.FORBIDDEN, f"This needs the {minimum.value} role or higher."
            )


def require_supplier_staff(viewer: Viewer) -> None:
    """Supplier staff (STAFF or higher in a SUPPLIER organisation)."""
    if viewer.organisation_kind is not OrganisationKind.SUPPLIER:
        raise DomainError(ErrorCode.FORBIDDEN, "Only a supplier's staff can do this.")
    viewer.require_role(Role.STAFF)


def require_buyer(viewer: Viewer, minimum: Role = Role.STAFF) -> None:
    """A member (STAFF or higher by default) of a BUYER organisation."""
    if viewer.organisation_kind is not OrganisationKind.BUYER:
        raise DomainError(ErrorCode.FORBIDDEN, "Only a buyer organisation can do this.")
    viewer.require_role(minimum)
