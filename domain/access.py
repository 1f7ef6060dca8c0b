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
        _raise(refusal(self, kind=None, role=minimum))


_WRONG_KIND = {
    OrganisationKind.BUYER: "Only a buyer organisation can do this.",
    OrganisationKind.SUPPLIER: "Only a supplier's staff can do this.",
}


def refusal(viewer: Viewer, *, kind: OrganisationKind | None, role: Role) -> DomainError | None:
    """Why ``viewer`` may not act as a member of an organisation of ``kind`` (None: either)
    with ``role`` or higher, or None when they may: the one rule behind the domain's guards and
    the API's declarations (``resolvers.permissions.Requires``)."""
    if kind is not None and viewer.organisation_kind is not kind:
        return DomainError(ErrorCode.FORBIDDEN, _WRONG_KIND[kind])
    if not viewer.has_role(role):
        return DomainError(ErrorCode.FORBIDDEN, f"This needs the {role.value} role or higher.")
    return None


def _raise(error: DomainError | None) -> None:
    if error is not None:
        raise error


def require_supplier_staff(viewer: Viewer) -> None:
    """Supplier staff (STAFF or higher in a SUPPLIER organisation)."""
    _raise(refusal(viewer, kind=OrganisationKind.SUPPLIER, role=Role.STAFF))


def require_buyer(viewer: Viewer, minimum: Role = Role.STAFF) -> None:
    """A member (STAFF or higher by default) of a BUYER organisation."""
    _raise(refusal(viewer, kind=OrganisationKind.BUYER, role=minimum))
